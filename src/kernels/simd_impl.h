/* Template of the SIMD row kernels (see simd.h), written once with GCC/Clang
 * vector extensions.  Included by simd_base.c, simd_avx2.c and simd_avx512.c
 * with KDV_W (lanes) and KDV_SUFFIX (name suffix) defined; each file is
 * compiled for its own instruction set.
 *
 * Every loop handles full vectors, then the remainder of the row as one more
 * vector (see vtail: the row's last W elements again, or for a row shorter
 * than W a padded copy) with a lane mask, so each element goes through
 * exactly the same arithmetic wherever it sits in the row. */
#include <math.h>
#include <stddef.h>
#include <string.h>
#if defined(__AVX__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/simd.h"

#define KDV_CAT2(a, b) a##b
#define KDV_CAT(a, b) KDV_CAT2(a, b)
#define KDV_FN(name) KDV_CAT(name, KDV_SUFFIX)
#define KDV_INLINE static inline __attribute__((always_inline))

typedef float vf __attribute__((vector_size(KDV_W * 4)));
typedef int32_t vi __attribute__((vector_size(KDV_W * 4)));
/* Row sums: each lane adds up to KDV_BLOCK float terms, then the block is
 * added into double lanes (two vectors of W/2 doubles: a single W-double
 * vector makes GCC spill it).  Block error <= KDV_BLOCK ulp, and the row
 * total is exact to double rounding across blocks; widening every vector
 * costs more than the exps. */
#define KDV_BLOCK 16
typedef double vdh __attribute__((vector_size(KDV_W * 4)));
typedef float vfh __attribute__((vector_size(KDV_W * 2)));
typedef struct {
    vdh lo, hi;
    vf part;
    int k;
} vd;
/* Lane permutations for the horizontal reductions by halving: KDV_Xk swaps
 * lanes i and i ^ k of a W-float vector, KDV_DXk of a W/2-double one. */
#if KDV_W == 8
#define KDV_LO 0, 1, 2, 3
#define KDV_HI 4, 5, 6, 7
#define KDV_XSTEPS(STEP) STEP(4, 5, 6, 7, 0, 1, 2, 3) STEP(2, 3, 0, 1, 6, 7, 4, 5) STEP(1, 0, 3, 2, 5, 4, 7, 6)
#define KDV_DXSTEPS(STEP) STEP(2, 3, 0, 1) STEP(1, 0, 3, 2)
#elif KDV_W == 16
#define KDV_LO 0, 1, 2, 3, 4, 5, 6, 7
#define KDV_HI 8, 9, 10, 11, 12, 13, 14, 15
#define KDV_XSTEPS(STEP)                                                                           \
    STEP(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)                                     \
    STEP(4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11)                                     \
    STEP(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13)                                     \
    STEP(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14)
#define KDV_DXSTEPS(STEP) STEP(4, 5, 6, 7, 0, 1, 2, 3) STEP(2, 3, 0, 1, 6, 7, 4, 5) STEP(1, 0, 3, 2, 5, 4, 7, 6)
#endif

KDV_INLINE vf vload(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

KDV_INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* lanes [0, n) set, n in [0, W]: one unaligned load from a table */
static const int32_t KDV_FN(mask_table_)[2 * KDV_W] = {
    -1, -1, -1, -1, -1, -1, -1, -1,
#if KDV_W == 16
    -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0,
#endif
    0, 0, 0, 0, 0, 0, 0, 0};

KDV_INLINE vi vmask_first(int64_t n)
{
    vi m;
    memcpy(&m, KDV_FN(mask_table_) + KDV_W - n, sizeof m);
    return m;
}

/* every lane = a (written out: `x - x + a` would turn Inf lanes into NaN) */
KDV_INLINE vf vset(float a)
{
    vf v = {0};
    return v + a;
}

KDV_INLINE vf vsel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

/* The first n < W lanes from p, the others fill (masked loads where the ISA
 * has them: no copy through memory, no fault past the row's end). */
KDV_INLINE vf vload_part(const float *p, int64_t n, float fill)
{
#if KDV_W == 16 && defined(__AVX512F__)
    return (vf)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), (__mmask16)((1u << n) - 1u), p);
#elif KDV_W == 8 && defined(__AVX2__)
    const vi m = vmask_first(n);
    return vsel(m, (vf)_mm256_maskload_ps(p, (__m256i)m), vset(fill));
#else
    float b[KDV_W];
    for (int i = 0; i < KDV_W; i++)
        b[i] = i < n ? p[i] : fill;
    return vload(b);
#endif
}

/* lanes [0, n) of v to p, n < W */
KDV_INLINE void vstore_part(float *p, vf v, int64_t n)
{
#if KDV_W == 16 && defined(__AVX512F__)
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), (__m512)v);
#elif KDV_W == 8 && defined(__AVX2__)
    _mm256_maskstore_ps(p, (__m256i)vmask_first(n), (__m256)v);
#else
    float b[KDV_W];
    vstore(b, v);
    for (int64_t i = 0; i < n; i++)
        p[i] = b[i];
#endif
}

/* max(a, x) lane by lane, x where x is NaN (the x86 max instruction's rule;
 * one instruction where the ISA has it, a select elsewhere) */
#if KDV_W == 16 && defined(__AVX512F__)
KDV_INLINE vf vmax_keepnan(vf a, vf x) { return (vf)_mm512_max_ps((__m512)a, (__m512)x); }
#elif KDV_W == 8 && defined(__AVX__)
KDV_INLINE vf vmax_keepnan(vf a, vf x) { return (vf)_mm256_max_ps((__m256)a, (__m256)x); }
#else
KDV_INLINE vf vmax_keepnan(vf a, vf x) { return vsel(x < a, a, x); }
#endif

/* The part of a row after its full vectors.  A row with at least one full
 * vector loads its last W elements again (no partial load, whose scalar
 * copies stall store forwarding) and masks out the lanes the main loop
 * already counted; a shorter row loads a padded copy.  Kernels that write
 * their output over their input compute the tail before the main loop and
 * store it after, so the overlap always reads the original input. */
typedef struct {
    int64_t off, n; /* first element loaded, number of new elements */
    int overlap;
    vi valid;       /* lanes holding new elements */
} vtail;

KDV_INLINE vtail vtail_of(int64_t c)
{
    vtail t;
    t.n = c % KDV_W;
    t.overlap = c >= KDV_W;
    t.off = t.overlap ? c - KDV_W : 0;
    t.valid = t.overlap ? ~vmask_first(KDV_W - t.n) : vmask_first(t.n);
    return t;
}

KDV_INLINE vf tload(const float *x, const vtail *t, float fill)
{
    return t->overlap ? vload(x + t->off) : vload_part(x, t->n, fill);
}

KDV_INLINE void tstore(float *x, const vtail *t, vf v)
{
    if (t->overlap)
        vstore(x + t->off, v);
    else
        vstore_part(x, v, t->n);
}

#define VD_ZERO {{0}, {0}, {0}, 0}

KDV_INLINE void vflush(vd *acc)
{
    vfh lo = __builtin_shufflevector(acc->part, acc->part, KDV_LO);
    vfh hi = __builtin_shufflevector(acc->part, acc->part, KDV_HI);
    acc->lo += __builtin_convertvector(lo, vdh);
    acc->hi += __builtin_convertvector(hi, vdh);
    acc->part = vset(0.0f);
    acc->k = 0;
}

/* acc += x */
KDV_INLINE void vacc(vd *acc, vf x)
{
    acc->part += x;
    if (++acc->k == KDV_BLOCK)
        vflush(acc);
}

/* acc + w x in the lanes where w != 0 (a zero weight adds nothing, even
 * where x is infinite) */
KDV_INLINE vf vlanes_nz(vf acc, vf w, vf x)
{
#if KDV_W == 16 && defined(__AVX512F__)
    const __mmask16 m = _mm512_cmp_ps_mask((__m512)w, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    return (vf)_mm512_mask3_fmadd_ps((__m512)w, (__m512)x, (__m512)acc, m);
#else
    return acc + vsel(w != 0.0f, w * x, vset(0.0f));
#endif
}

/* acc += w x in the lanes where w != 0 (and, for a row's tail, valid) */
KDV_INLINE void vacc_nz(vd *acc, vf w, vf x, vi valid, int tail)
{
    acc->part = vlanes_nz(acc->part, tail ? vsel(valid, w, vset(0.0f)) : w, x);
    if (++acc->k == KDV_BLOCK)
        vflush(acc);
}

KDV_INLINE double vdsum(vd v)
{
    vflush(&v);
    vdh d = v.lo + v.hi;
#define KDV_DSTEP(...) d += __builtin_shufflevector(d, d, __VA_ARGS__);
    KDV_DXSTEPS(KDV_DSTEP)
#undef KDV_DSTEP
    return d[0];
}

/* the largest lane of a (no lane NaN) and whether any lane of m is set */
KDV_INLINE float vhmax(vf a)
{
#define KDV_MSTEP(...) a = vmax_keepnan(__builtin_shufflevector(a, a, __VA_ARGS__), a);
    KDV_XSTEPS(KDV_MSTEP)
#undef KDV_MSTEP
    return a[0];
}

KDV_INLINE int vhany(vi m)
{
#define KDV_OSTEP(...) m |= __builtin_shufflevector(m, m, __VA_ARGS__);
    KDV_XSTEPS(KDV_OSTEP)
#undef KDV_OSTEP
    return m[0] != 0;
}

/* bit i set where lane i of m is set */
KDV_INLINE uint32_t vmask_bits(vi m)
{
#if KDV_W == 16 && defined(__AVX512DQ__)
    return (uint32_t)_mm512_movepi32_mask((__m512i)m);
#elif KDV_W == 8 && defined(__AVX__)
    return (uint32_t)_mm256_movemask_ps((__m256)m);
#else
    uint32_t b = 0;
    for (int i = 0; i < KDV_W; i++)
        b |= (uint32_t)(m[i] != 0) << i;
    return b;
#endif
}

/* exp(x) for x <= 0 (or NaN): every exp in kdlib is of a logit minus its row
 * max, times a positive scale.  Below -87.34 (also -Inf) the result is 0;
 * NaN stays NaN.
 * AVX-512: x = (n + i/16) ln2 + r, |r| <= ln2/32 (Cody-Waite split of ln2);
 * e^x = 2^n 2^(i/16) e^r with 2^(i/16) from a 16-entry table held in one
 * register (vpermps takes i from the low bits of the rounded x / ln2), a
 * degree-3 polynomial for e^r (fitted, 1.6e-9 relative error) and 2^n by
 * vscalefps: 10 instructions, max error ~1 ulp.
 * AVX2: the same with an 8-entry table (|r| <= ln2/16), a degree-4
 * polynomial and 2^n from the exponent bits.  Baseline: x = n ln2 + r, |r| <= ln2/2, a degree-6
 * polynomial for e^r and 2^n (n in [-126, 0]) from the exponent bits.  Max
 * errors (every 7th float in [-87.34, 0]): 0.99 / 0.90 / 0.98 ulp for
 * AVX-512 / AVX2 / baseline. */
#if KDV_W == 16 && defined(__AVX512F__)
KDV_INLINE vf vexp_nonpos(vf x)
{
    const float lo = -87.33654f;
    /* 2^(i/16), i = 0..15, rounded to float */
    const __m512 pow2 = _mm512_setr_ps(
        1.0f, 0x1.0b5586p+0f, 0x1.172b84p+0f, 0x1.2387a6p+0f, 0x1.306fe0p+0f, 0x1.3dea64p+0f,
        0x1.4bfdaep+0f, 0x1.5ab07ep+0f, 0x1.6a09e6p+0f, 0x1.7a1148p+0f, 0x1.8ace54p+0f,
        0x1.9c4918p+0f, 0x1.ae89fap+0f, 0x1.c199bep+0f, 0x1.d5818ep+0f, 0x1.ea4afap+0f);
    /* k = x / ln2 rounded to a multiple m of 1/16: adding 1.5 * 2^19 leaves
     * floats 1/16 apart, so i = 16 m mod 16 are k's low four bits and
     * vscalefps, which scales by 2^floor(m), needs no further step.  Explicit
     * FMAs: x - m ln2 must be rounded once. */
    const __m512 xx = (__m512)x, magic = _mm512_set1_ps(786432.0f);
    const __m512 k = _mm512_fmadd_ps(xx, _mm512_set1_ps(1.44269504088896341f), magic);
    const __m512 m = _mm512_sub_ps(k, magic);
    __m512 r = _mm512_fnmadd_ps(m, _mm512_set1_ps(0.693145751953125f), xx); /* ln2, high bits */
    r = _mm512_fnmadd_ps(m, _mm512_set1_ps(1.428606765330187045e-06f), r);   /* ln2, the rest */
    const __m512 t = _mm512_permutexvar_ps(_mm512_castps_si512(k), pow2);
    /* degree 3, fitted for the least relative error on |r| <= ln2/32 */
    __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(0x1.55562cp-3f), _mm512_set1_ps(0x1.00021ep-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_mul_ps(p, r); /* e^r - 1 */
    p = _mm512_fmadd_ps(t, p, t);
    /* times 2^floor(m); zero below lo, where the intermediate values are
     * meaningless (NaN lanes compare unordered: kept, stay NaN) */
    const __mmask16 keep = _mm512_cmp_ps_mask(xx, _mm512_set1_ps(lo), _CMP_NLT_UQ);
    return (vf)_mm512_maskz_scalef_ps(keep, p, m);
}
#elif KDV_W == 8 && defined(__AVX2__) && defined(__FMA__)
KDV_INLINE vf vexp_nonpos(vf x)
{
    const float lo = -87.33654f;
    /* 2^(i/8), i = 0..7, rounded to float */
    const __m256 pow2 = _mm256_setr_ps(1.0f, 0x1.172b84p+0f, 0x1.306fe0p+0f, 0x1.4bfdaep+0f,
                                       0x1.6a09e6p+0f, 0x1.8ace54p+0f, 0x1.ae89fap+0f, 0x1.d5818ep+0f);
    /* k = x / ln2 rounded to a multiple m of 1/8 (1.5 * 2^20 leaves floats
     * 1/8 apart: i = 8 m mod 8 are k's low three bits, and k's bits minus
     * the magic's are 8 m) */
    const __m256 xx = (__m256)x, magic = _mm256_set1_ps(1572864.0f);
    const __m256 k = _mm256_fmadd_ps(xx, _mm256_set1_ps(1.44269504088896341f), magic);
    const __m256 m = _mm256_sub_ps(k, magic);
    __m256 r = _mm256_fnmadd_ps(m, _mm256_set1_ps(0.693145751953125f), xx);
    r = _mm256_fnmadd_ps(m, _mm256_set1_ps(1.428606765330187045e-06f), r);
    const __m256 t = _mm256_permutevar8x32_ps(pow2, _mm256_castps_si256(k));
    /* |r| <= ln2/16: a degree-4 polynomial for e^r - 1 */
    __m256 p = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0f / 24.0f), _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_mul_ps(p, r);
    p = _mm256_fmadd_ps(t, p, t);
    /* times 2^floor(m) as a float 2^n, n = floor(m) >= -126 above lo; zero
     * below lo, where the intermediate values are meaningless (NaN lanes
     * compare false: stay NaN) */
    const vi n = ((vi)k - 0x49C00000) >> 3;
    const vf v = (vf)p * (vf)((n + 127) << 23);
    return (vf)((vi)v & ~(x < lo));
}
#else
KDV_INLINE vf vexp_nonpos(vf x)
{
    const float lo = -87.33654f;
    vf xc = vmax_keepnan(vset(lo), x);
    vf k = xc * 1.44269504088896341f + 12582912.0f; /* round to nearest via 1.5 * 2^23 */
    vi ki = (vi)k - 0x4B400000;
    vf n = k - 12582912.0f;
    vf r = xc - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    vf p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    vf v = p * (vf)((ki + 127) << 23);
    return (vf)((vi)v & ~(x < lo)); /* NaN lanes compare false: stay NaN */
}
#endif

/* max of two rows at once (y may be NULL).  With nan_check, NaN if the row
 * holds a NaN; without, the max of the other elements (the row kernels need
 * no check: a NaN element makes its row's sum of exps NaN, and with it every
 * output of the row, as a NaN max would).  pf (or NULL): a row of c floats
 * prefetched into L2 meanwhile. */
KDV_INLINE void max2(const float *x, const float *y, int64_t c, int nan_check, const float *pf,
                     float *mx, float *my)
{
    vf a = vset(-INFINITY), b = vset(-INFINITY);
    vi nan_a = vmask_first(0), nan_b = vmask_first(0);
    int64_t j = 0;
    for (; j + KDV_W <= c; j += KDV_W) {
        if (pf && !(j & 15)) /* one 64-byte line per 16 floats */
            __builtin_prefetch(pf + j, 0, 2);
        vf u = vload(x + j);
        if (nan_check)
            nan_a |= u != u;
        a = vmax_keepnan(u, a); /* a where u is NaN */
        if (y) {
            vf v = vload(y + j);
            if (nan_check)
                nan_b |= v != v;
            b = vmax_keepnan(v, b);
        }
    }
    const vtail tl = vtail_of(c);
    if (tl.n) { /* overlapping lanes repeat real elements: harmless for a max */
        vf u = tload(x, &tl, -INFINITY);
        if (nan_check)
            nan_a |= u != u;
        a = vmax_keepnan(u, a);
        if (y) {
            vf v = tload(y, &tl, -INFINITY);
            if (nan_check)
                nan_b |= v != v;
            b = vmax_keepnan(v, b);
        }
    }
    *mx = nan_check && vhany(nan_a) ? NAN : vhmax(a);
    if (y)
        *my = nan_check && vhany(nan_b) ? NAN : vhmax(b);
}

static float KDV_FN(row_max_)(const float *x, int64_t c)
{
    float m;
    max2(x, NULL, c, 1, NULL, &m, NULL);
    return m;
}

/* the smallest lane of an int vector */
KDV_INLINE int32_t vhmin_i(vi a)
{
#define KDV_ISTEP(...)                                                                             \
    {                                                                                              \
        const vi b = __builtin_shufflevector(a, a, __VA_ARGS__);                                   \
        a = (vi)vsel(b < a, (vf)b, (vf)a);                                                         \
    }
    KDV_XSTEPS(KDV_ISTEP)
#undef KDV_ISTEP
    return a[0];
}

/* index of the row's largest element, the first on ties; the first NaN if
 * any (torch.argmax); 0 for a row of -Inf.  Each lane keeps its best value
 * and the first index where it saw it; the tail is one more vector (see
 * vtail) whose repeated lanes are masked out. */
/* row_argmax, also prefetching the c floats at pf into L2 (pf may be NULL) */
KDV_INLINE int64_t argmax_pf(const float *x, int64_t c, const float *pf)
{
    vf m = vset(-INFINITY);
    vi idx = vmask_first(0), nan_at = idx - 1, lane;
    for (int i = 0; i < KDV_W; i++)
        lane[i] = i;
    const vtail tl = vtail_of(c);
    /* int32 lane indices: rows of up to 2^31 - 1 classes */
    for (int64_t j = 0; j < c; j += KDV_W) {
        const int full = j + KDV_W <= c;
        if (!full && !tl.n)
            break;
        if (pf)
            __builtin_prefetch(pf + j, 0, 2);
        const vf v = full ? vload(x + j) : tload(x, &tl, -INFINITY);
        const vi at = lane + (int32_t)(full ? j : tl.off), valid = full ? vmask_first(KDV_W) : tl.valid;
        nan_at = (vi)vsel((v != v) & (nan_at < 0) & valid, (vf)at, (vf)nan_at);
        const vi gt = (v > m) & valid;
        idx = (vi)vsel(gt, (vf)at, (vf)idx);
        m = vsel(gt, v, m);
    }
    const vi none = idx - idx + INT32_MAX;
    const int32_t first_nan = vhmin_i((vi)vsel(nan_at >= 0, (vf)nan_at, (vf)none));
    if (first_nan != INT32_MAX)
        return first_nan;
    /* the first index among the lanes holding the max (all 0 for a row of -Inf) */
    return vhmin_i((vi)vsel(m == vhmax(m), (vf)idx, (vf)none));
}

static int64_t KDV_FN(row_argmax_)(const float *x, int64_t c) { return argmax_pf(x, c, NULL); }

/* exp_store_side, and with first, *first = the first index j with x_j == m
 * (-1 if none) */
KDV_INLINE double exp_store_first(const float *x, int64_t c, float m, float scale, float *out,
                                  const float *side, float *side_max, int64_t *first)
{
    vd acc = VD_ZERO;
    vf sm = vset(-INFINITY);
    int64_t j = 0, at = -1;
    for (; j + KDV_W <= c; j += KDV_W) {
        if (side && side_max)
            sm = vmax_keepnan(vload(side + j), sm);
        else if (side && !(j & 15))
            __builtin_prefetch(side + j, 0, 2);
        const vf v = vload(x + j);
        if (first && at < 0) {
            const uint32_t eq = vmask_bits(v == m);
            if (eq)
                at = j + __builtin_ctz(eq);
        }
        vf e = vexp_nonpos((v - m) * scale);
        if (out)
            vstore(out + j, e);
        vacc(&acc, e);
    }
    const vtail tl = vtail_of(c);
    if (tl.n) {
        if (side && side_max)
            sm = vmax_keepnan(tload(side, &tl, -INFINITY), sm);
        const vf v = tload(x, &tl, -INFINITY);
        if (first && at < 0) {
            const uint32_t eq = vmask_bits((v == m) & tl.valid);
            if (eq)
                at = tl.off + __builtin_ctz(eq);
        }
        vf e = vexp_nonpos((v - m) * scale);
        if (out)
            tstore(out, &tl, e);
        vacc(&acc, vsel(tl.valid, e, vset(0.0f)));
    }
    if (side && side_max)
        *side_max = vhmax(sm);
    if (first)
        *first = at;
    return vdsum(acc);
}

/* out_j = exp((x_j - m) * scale) (out may be NULL), returns the row sum;
 * with side, also *side_max = the max of the c elements at side (NaN
 * ignored, as max2 without nan_check), read in the same loop. */
KDV_INLINE double exp_store_side(const float *x, int64_t c, float m, float scale, float *out,
                                 const float *side, float *side_max)
{
    return exp_store_first(x, c, m, scale, out, side, side_max, NULL);
}

KDV_INLINE double exp_store(const float *x, int64_t c, float m, float scale, float *out)
{
    return exp_store_side(x, c, m, scale, out, NULL, NULL);
}

static double KDV_FN(row_sumexp_)(const float *x, int64_t c, float scale, float max)
{
    return exp_store(x, c, max, scale, NULL);
}

/* ---- long rows in segments (see KDI_SEG) ----
 * Each pass over a row runs segment by segment, the segments spread over
 * nthr threads; per-segment partial sums go to the work area and are added
 * in segment order, so the result does not depend on nthr. */

KDV_INLINE int64_t seg_end(int64_t k, int64_t nseg, int64_t c)
{
    return k + 1 == nseg ? c : (k + 1) * KDI_SEG;
}

/* Run the body (the variadic argument) for every segment k < nseg: on the
 * enclosing scope's nthr threads (a variable of that name: the OpenMP clause
 * names it) when there is more than one of each, else in a plain loop (an
 * OpenMP region, even an inactive one, costs about a microsecond per row). */
#define KDV_SEGMENTS(nseg, k, ...)                                                                 \
    do {                                                                                           \
        if (nthr > 1 && (nseg) > 1) {                                                              \
            _Pragma("omp parallel for num_threads(nthr) schedule(static)")                         \
            for (int64_t k = 0; k < (nseg); k++)                                                   \
                __VA_ARGS__                                                                        \
        } else {                                                                                   \
            for (int64_t k = 0; k < (nseg); k++)                                                   \
                __VA_ARGS__                                                                        \
        }                                                                                          \
    } while (0)

/* doubles in the float work area, which need not be 8-byte aligned */
KDV_INLINE void put_d(float *p, double v) { memcpy(p, &v, sizeof v); }
KDV_INLINE double get_d(const float *p)
{
    double v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The row total of sum `slot` (0-2) of each segment, kept as doubles at
 * part + 6 k + 2 slot, added in segment order. */
KDV_INLINE double seg_total(const float *part, int64_t nseg, int slot)
{
    double t = 0.0;
    for (int64_t k = 0; k < nseg; k++)
        t += get_d(part + 6 * k + 2 * slot);
    return t;
}

/* *a = max_k p[2 k], and *b = max_k p[2 k + 1] when b is not NULL, k < n:
 * the row maxima from per-segment maxima (which hold no NaN) */
KDV_INLINE void slot_max2(const float *p, int64_t n, float *a, float *b)
{
    float x = -INFINITY, y = -INFINITY;
    for (int64_t k = 0; k < n; k++) {
        x = p[2 * k] > x ? p[2 * k] : x;
        if (b)
            y = p[2 * k + 1] > y ? p[2 * k + 1] : y;
    }
    *a = x;
    if (b)
        *b = y;
}

/* row maxima of x and of y (y may be NULL), NaN elements ignored (see max2),
 * pf (or NULL) prefetched meanwhile */
KDV_INLINE void seg_max2(const float *x, const float *y, int64_t c, int nthr, float *part,
                         const float *pf, float *mx, float *my)
{
    const int64_t nseg = KDI_NSEG(c);
    if (nseg == 1) {
        max2(x, y, c, 0, pf, mx, my);
        return;
    }
    KDV_SEGMENTS(nseg, k, {
        const int64_t j0 = k * KDI_SEG;
        max2(x + j0, y ? y + j0 : NULL, seg_end(k, nseg, c) - j0, 0, pf ? pf + j0 : NULL, &part[2 * k],
             &part[2 * k + 1]);
    });
    slot_max2(part, nseg, mx, y ? my : NULL);
}

/* e^pw for pw in {2, 4}, e an exp in [0, 1] or NaN: 0 where the power is
 * below 2^-126, as the exp itself is (the factor is zeroed first, so no
 * product is subnormal); NaN stays NaN */
KDV_INLINE vf vpow_flush(vf e, int pw)
{
    /* the smallest floats whose square / fourth power is normal */
    const float lo = pw == 4 ? 0x1.6a09e8p-32f /* above 2^-31.5 */ : 0x1p-63f;
    const vi keep = (e >= lo) | (e != e);
    const vf em = (vf)((vi)e & keep), e2 = em * em;
    return pw == 4 ? e2 * e2 : e2;
}

/* One stream of a row's sums: out_j = exp((x_j - m) scale) (out may be
 * NULL) and its sum; or, with pw != 0, the sum of x_j^pw (vpow_flush) of
 * exps already stored at x (the softmax at T = 1 from the one at T = pw). */
typedef struct {
    const float *x;
    float m, scale;
    float *out;
    int pw;
    const float *side; /* a row of c elements whose max goes to *side_max, or NULL */
    float *side_max;
} kexp;

KDV_INLINE double stream_sum(const kexp *e, int64_t j0, int64_t n)
{
    if (!e->pw)
        return exp_store_side(e->x + j0, n, e->m, e->scale, e->out ? e->out + j0 : NULL,
                              e->side ? e->side + j0 : NULL, e->side_max);
    const float *x = e->x + j0;
    vd acc = VD_ZERO;
    int64_t j = 0;
    for (; j + KDV_W <= n; j += KDV_W)
        vacc(&acc, vpow_flush(vload(x + j), e->pw));
    if (j < n)
        vacc(&acc, vpow_flush(vload_part(x + j, n - j, 0.0f), e->pw));
    return vdsum(acc);
}

/* sum[i] = the row sum of stream i, for ne <= 3 streams in one pass (the
 * side maxima only for a row of one segment: see kdi_pipe) */
KDV_INLINE void seg_exps(const kexp *e, int ne, int64_t c, int nthr, float *part, double *sum)
{
    const int64_t nseg = KDI_NSEG(c);
    if (nseg == 1) {
        for (int i = 0; i < ne; i++)
            sum[i] = stream_sum(&e[i], 0, c);
        return;
    }
    KDV_SEGMENTS(nseg, k, {
        for (int i = 0; i < ne; i++)
            put_d(part + 6 * k + 2 * i, stream_sum(&e[i], k * KDI_SEG, seg_end(k, nseg, c) - k * KDI_SEG));
    });
    for (int i = 0; i < ne; i++)
        sum[i] = seg_total(part, nseg, i);
}

/* The next row, whose maxima a gradient pass takes while it runs (rows of
 * several segments, see pipe_next): *ms = max of s, *mt = max of t (t may
 * be NULL), NaN elements ignored as in max2 without nan_check. */
typedef struct {
    const float *s, *t;
    float *ms, *mt;
    const float *pf; /* a row to prefetch into L2 meanwhile, or NULL */
} kside;

/* The gradient pass of a row kernel over [j0, j1) (last: the segment that
 * holds the row's tail), adding its two sums into out; with sd, also the
 * maxima of sd's rows over [j0, j1). */
typedef void (*kseg_fn)(const void *ctx, int64_t j0, int64_t j1, int last, const kside *sd,
                        double out[2]);

KDV_INLINE void seg_run(kseg_fn fn, const void *ctx, int64_t c, int nthr, float *part,
                        const kside *side, double out[2])
{
    const int64_t nseg = KDI_NSEG(c);
    if (nseg == 1) {
        out[0] = out[1] = 0.0;
        fn(ctx, 0, c, 1, NULL, out);
        return;
    }
    float *slot = part + 6 * nseg; /* the side maxima of segment k at slot + 2 k */
    KDV_SEGMENTS(nseg, k, {
        double o[2] = {0.0, 0.0};
        const kside sk = {side ? side->s : NULL, side ? side->t : NULL, &slot[2 * k], &slot[2 * k + 1],
                          side ? side->pf : NULL};
        fn(ctx, k * KDI_SEG, seg_end(k, nseg, c), k + 1 == nseg, side ? &sk : NULL, o);
        put_d(part + 6 * k, o[0]);
        put_d(part + 6 * k + 2, o[1]);
    });
    out[0] = seg_total(part, nseg, 0);
    out[1] = seg_total(part, nseg, 1);
    if (side)
        slot_max2(slot, nseg, side->ms, side->t ? side->mt : NULL);
}

/* argmax of t with torch's rules (as row_argmax) over the segments of a row
 * (pf: prefetched meanwhile, or NULL): the first NaN wins, else the
 * largest, the first on ties */
KDV_INLINE int64_t seg_argmax(const float *t, int64_t c, float *work, int nthr, const float *pf)
{
    const int64_t nseg = KDI_NSEG(c);
    KDV_SEGMENTS(nseg, k, {
        const int64_t j0 = k * KDI_SEG;
        put_d(work + 2 * k, (double)(j0 + argmax_pf(t + j0, seg_end(k, nseg, c) - j0, pf ? pf + j0 : NULL)));
    });
    int64_t best = (int64_t)get_d(work);
    for (int64_t k = 1; k < nseg && t[best] == t[best]; k++) {
        const int64_t i = (int64_t)get_d(work + 2 * k);
        if (t[i] != t[i] || t[i] > t[best])
            best = i;
    }
    return best;
}

/* argmax of t with torch's rules (as row_argmax) and *sum = sum_j exp(t_j -
 * t_argmax), NaN when t_argmax is not finite: a teacher row's pseudo-label
 * and its confidence 1 / *sum.  work: KDI_SIMD_WORK(c) floats.
 * Two passes: the max m (NaN ignored, as seg_max2; prefetching pf),
 * then the sum of exp(t_j - m) that also finds the first j with t_j = m,
 * the argmax.  A row whose max is not finite or whose sum is NaN (a NaN
 * element) takes seg_argmax instead, and gets a NaN sum. */
static int64_t KDV_FN(row_confidence_)(const float *t, int64_t c, float *work, int nthr,
                                       const float *pf, double *sum)
{
    const int64_t nseg = KDI_NSEG(c);
    float m;
    seg_max2(t, NULL, c, nthr, work, pf, &m, NULL);
    *sum = NAN;
    if (!isfinite(m))
        return seg_argmax(t, c, work, nthr, pf);
    /* the segments' sums at work + 6 k, their first index of m at work + 6 k + 2 */
    KDV_SEGMENTS(nseg, k, {
        const int64_t j0 = k * KDI_SEG;
        int64_t at;
        put_d(work + 6 * k, exp_store_first(t + j0, seg_end(k, nseg, c) - j0, m, 1.0f, NULL, NULL, NULL, &at));
        put_d(work + 6 * k + 2, (double)(at < 0 ? -1 : j0 + at));
    });
    const double total = seg_total(work, nseg, 0);
    if (total != total)
        return seg_argmax(t, c, work, nthr, NULL);
    int64_t best = -1;
    for (int64_t k = 0; k < nseg && best < 0; k++)
        best = (int64_t)get_d(work + 6 * k + 2);
    *sum = total;
    return best;
}

/* The labelled class's share of the hard-label term, after a row pass that
 * spread `off` over every class: returns CE(s, y) from sum_lp = sum_j log p_j
 * and fixes the gradient at y.  s_y was read before an in-place pass. */
KDV_INLINE double label_finish(const kdi_simd_label *lab, float s_y, float ms, float l1,
                               double sum_lp, float *g)
{
    const float extra = lab->on - lab->off;
    double ce = extra != 0.0f ? -(double)extra * ((s_y - ms) - l1) : 0.0; /* 0 log p_y is 0 */
    if (lab->off != 0.0f)
        ce -= (double)lab->off * sum_lp;
    if (g)
        g[lab->y] -= lab->coef * extra;
    return ce;
}

/* The maxima of row s (and t, when t is not NULL): taken from the pipe when
 * the previous row's call computed them (see kdi_pipe), else one pass. */
KDV_INLINE void row_maxima(const kdi_pipe *pp, const float *s, const float *t, int64_t c, int nthr,
                           float *part, float *ms, float *mt)
{
    if (pp && pp->s == s && pp->t == t) {
        *ms = pp->ms;
        if (t)
            *mt = pp->mt;
    } else
        seg_max2(s, t, c, nthr, part, NULL, ms, mt);
}

/* Hand the next row to this row's passes; the pipe then describes the next
 * row.  A row of one segment takes the next row's maxima in the exp passes
 * of streams 0 (s) and 1 (t).  A longer row (up to prefetch_c classes)
 * prefetches the next row into L2 in its exp passes and takes its maxima in
 * its gradient pass, from L2 (reading it from memory there, or in the exp
 * passes, stalls them): *side is then set for seg_run, else side->s is NULL. */
KDV_INLINE void pipe_next(kdi_pipe *pp, int64_t c, kexp *es, kexp *et, kside *side)
{
    *side = (kside){NULL, NULL, NULL, NULL, NULL};
    if (!pp)
        return;
    pp->s = pp->t = NULL;
    if (!pp->ns)
        return;
    const float *nt = et ? pp->nt : NULL;
    if (KDI_NSEG(c) > 1) {
        if (c <= pp->prefetch_c) {
            es->side = pp->ns;
            if (et)
                et->side = nt;
            /* a teacher row this kernel does not read (pseudo-label's, read by
             * the next row's scan before this kernel; logit matching's, read
             * in the gradient pass): prefetched in the gradient pass */
            *side = (kside){pp->ns, nt, &pp->ms, &pp->mt, et ? NULL : pp->nt};
            pp->s = pp->ns;
            pp->t = nt;
        }
        return;
    }
    pp->s = pp->ns;
    pp->t = nt;
    es->side = pp->ns, es->side_max = &pp->ms;
    if (nt)
        et->side = nt, et->side_max = &pp->mt;
}

/* The gradient passes of the row kernels share one loop (KDV_SEG_PASS):
 * a step function STEP(ctx, tl, j, valid, acc) evaluates the vector at j,
 * loading each input p through KDV_AT(p): a plain load at p + j, or the
 * row's tail when tl is not NULL (see vtail).  The tail is evaluated before
 * the main loop and stored after it, so g may equal the student. */
#define KDV_AT(p) (tl ? tload((p), tl, 0.0f) : vload((p) + j))

/* NAME_seg_(ctx, j0, j1, last, out): the gradient pass over [j0, j1) of a
 * row (last: the segment holding the row's tail), out = the two sums of
 * acc.  CTX has the fields g (gradient or NULL) and c (row length). */
#define KDV_SEG_PASS(NAME, CTX, STEP)                                                              \
    static inline void KDV_FN(NAME)(const void *ctx, int64_t j0, int64_t j1, int last,            \
                                    const kside *sd, double out[2])                                \
    {                                                                                              \
        const CTX kc = *(const CTX *)ctx; /* a local copy: stores to g cannot alias it */         \
        vd acc[2] = {VD_ZERO, VD_ZERO};                                                            \
        vf sm[2] = {vset(-INFINITY), vset(-INFINITY)};                                             \
        const vtail tl = vtail_of(kc.c);                                                           \
        const int tail = last && tl.n;                                                             \
        vf gtail = vset(0.0f);                                                                     \
        if (tail)                                                                                  \
            gtail = STEP(&kc, &tl, 0, tl.valid, acc);                                              \
        const vi all = vmask_first(KDV_W);                                                         \
        if (kc.g) {                                                                                \
            for (int64_t j = j0; j + KDV_W <= j1; j += KDV_W) {                                    \
                side_step(sd, NULL, j, sm);                                                        \
                vstore(kc.g + j, STEP(&kc, NULL, j, all, acc));                                    \
            }                                                                                      \
        } else { /* the loss alone: the gradient arithmetic is dead code here */                  \
            for (int64_t j = j0; j + KDV_W <= j1; j += KDV_W) {                                    \
                side_step(sd, NULL, j, sm);                                                        \
                (void)STEP(&kc, NULL, j, all, acc);                                                \
            }                                                                                      \
        }                                                                                          \
        if (tail && kc.g)                                                                          \
            tstore(kc.g, &tl, gtail);                                                              \
        side_finish(sd, tail ? &tl : NULL, sm);                                                    \
        out[0] = vdsum(acc[0]);                                                                    \
        out[1] = vdsum(acc[1]);                                                                    \
    }

/* the side maxima of a gradient pass (see kside): one vector at j, or the
 * row's tail (tl), then the segment's maxima to *sd */
KDV_INLINE void side_step(const kside *sd, const vtail *tl, int64_t j, vf sm[2])
{
    if (!sd)
        return;
    if (sd->pf && !tl && !(j & 15))
        __builtin_prefetch(sd->pf + j, 0, 2);
    sm[0] = vmax_keepnan(tl ? tload(sd->s, tl, -INFINITY) : vload(sd->s + j), sm[0]);
    if (sd->t)
        sm[1] = vmax_keepnan(tl ? tload(sd->t, tl, -INFINITY) : vload(sd->t + j), sm[1]);
}

KDV_INLINE void side_finish(const kside *sd, const vtail *tl, vf sm[2])
{
    if (!sd)
        return;
    if (tl)
        side_step(sd, tl, 0, sm);
    *sd->ms = vhmax(sm[0]);
    if (sd->t)
        *sd->mt = vhmax(sm[1]);
}

typedef struct {
    const float *s, *t, *es, *et, *e1;
    float *g;
    int64_t c;
    float ms, mt, rt, kq, cs, k1, koff;
    int hard, pw; /* pw: e1 = es^pw (vpow_flush), or 0: e1 stored */
} kl_ctx;

/* one vector of kl_row's gradient pass, with ds = s - ms, dt = t - mt and
 * p = et rt the teacher's probabilities: acc[0] = sum p (dt - ds) (KL is
 * inv_t times that plus (ls - lt) sum p), acc[1] = sum ds (for the label
 * term's sum of log p1); g = cs (es rs - p) + coef (e1 r1 - off) */
KDV_INLINE vf kl_step(const kl_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    const vf ds = KDV_AT(k->s) - k->ms, dt = KDV_AT(k->t) - k->mt, es = KDV_AT(k->es);
    const vf p = KDV_AT(k->et) * k->rt;
    vacc_nz(&acc[0], p, dt - ds, valid, tl != NULL);
    vf g = es * k->kq - k->koff; /* koff = 0 without a label */
    g -= p * k->cs;
    if (k->hard) {
        const vf e1 = k->pw ? vpow_flush(es, k->pw) : KDV_AT(k->e1);
        g += e1 * k->k1;
        vacc(&acc[1], tl ? vsel(valid, ds, vset(0.0f)) : ds);
    }
    return g;
}

KDV_SEG_PASS(kl_seg_, kl_ctx, kl_step)

static void KDV_FN(kl_row_)(const float *s, const float *t, float *g, int64_t c, float inv_t,
                            float cs, const kdi_simd_label *lab, float *work, int nthr,
                            kdi_pipe *pipe, double *kl_out, double *ce_out)
{
    kl_ctx k = {0};
    k.hard = lab->active;
    const int sep1 = k.hard && inv_t != 1.0f; /* softmax at T = 1 needs its own exps */
    const float s_y = k.hard ? s[lab->y] : 0.0f;
    float *part = work + 3 * c;
    k.s = s;
    k.t = t;
    k.g = g;
    k.c = c;
    k.es = work;
    k.et = work + c;
    k.e1 = sep1 ? work + 2 * c : k.es;
    /* at T = 2 or 4 the exps at T = 1 are powers of those at T (no third exp) */
    k.pw = sep1 && (inv_t == 0.5f || inv_t == 0.25f) ? (inv_t == 0.5f ? 2 : 4) : 0;
    row_maxima(pipe, s, t, c, nthr, part, &k.ms, &k.mt);
    kexp ex[3] = {{s, k.ms, inv_t, work, 0, NULL, NULL},
                  {t, k.mt, inv_t, work + c, 0, NULL, NULL},
                  k.pw ? (kexp){work, 0.0f, 0.0f, NULL, k.pw, NULL, NULL}
                       : (kexp){s, k.ms, 1.0f, work + 2 * c, 0, NULL, NULL}};
    kside side;
    pipe_next(pipe, c, &ex[0], &ex[1], &side);
    double sum[3];
    seg_exps(ex, sep1 ? 3 : 2, c, nthr, part, sum);
    if (!sep1)
        sum[2] = sum[0];
    const float ls = logf((float)sum[0]), lt = logf((float)sum[1]), l1 = logf((float)sum[2]);
    const float rs = (float)(1.0 / sum[0]), r1 = (float)(1.0 / sum[2]);
    k.rt = (float)(1.0 / sum[1]);
    k.kq = cs * rs;
    k.cs = cs;
    k.k1 = k.hard ? lab->coef * r1 : 0.0f;
    k.koff = k.hard ? lab->coef * lab->off : 0.0f;
    double acc[2];
    seg_run(KDV_FN(kl_seg_), &k, c, nthr, part, side.s ? &side : NULL, acc);
    /* sum p (lp - lq) = inv_t sum p (dt - ds) + (ls - lt) sum p, sum p = rt sum et */
    *kl_out = (double)inv_t * acc[0] + ((double)ls - lt) * ((double)k.rt * sum[1]);
    *ce_out = k.hard ? label_finish(lab, s_y, k.ms, l1, acc[1] - (double)c * l1, g) : 0.0;
}

typedef struct {
    const float *s, *es, *sv;
    float *g;
    int64_t c;
    float ms, ka, off, ks, kg, cs, kq; /* ks = rs sum_q, kg = cs ks, kq = cs ka */
} ce_ctx;

/* one vector of ce_row's gradient pass for a target source of kind `kind`
 * (a constant: see ce_row), with d = s - ms and q the target: acc[0] =
 * sum q d, acc[1] = sum q (sum q log p = acc[0] - ls acc[1]); g = cs (es rs
 * sum_q - q).  Kind 0 (no soft source, q = off everywhere) sums d alone. */
KDV_INLINE vf ce_step(const ce_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc, int kind)
{
    const vf d = KDV_AT(k->s) - k->ms, es = KDV_AT(k->es);
    if (kind == 0) {
        if (k->off != 0.0f)
            vacc(&acc[0], tl ? vsel(valid, d, vset(0.0f)) : d);
        return es * k->kg - k->cs * k->off;
    }
    const vf q = KDV_AT(k->sv) * k->ka + k->off;
    vacc_nz(&acc[0], q, d, valid, tl != NULL);
    vacc(&acc[1], tl ? vsel(valid, q, vset(0.0f)) : q);
    return k->cs * (es * k->ks - q);
}

/* ce_step for a teacher target without a label (q = ka sv, ka != 0, off =
 * 0): acc[0] = sum sv d over sv != 0 (ce_row multiplies it by ka), sum q is
 * ka sum sv = a and not summed; g = es kg - sv (cs ka) */
KDV_INLINE vf ce_step2(const ce_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    const vf d = KDV_AT(k->s) - k->ms, es = KDV_AT(k->es), sv = KDV_AT(k->sv);
    vacc_nz(&acc[0], sv, d, valid, tl != NULL);
    return es * k->kg - sv * k->kq;
}

KDV_INLINE vf ce_step0(const ce_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    return ce_step(k, tl, j, valid, acc, 0);
}
KDV_INLINE vf ce_step1(const ce_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    return ce_step(k, tl, j, valid, acc, 1);
}
KDV_SEG_PASS(ce_seg0_, ce_ctx, ce_step0)
KDV_SEG_PASS(ce_seg1_, ce_ctx, ce_step1)
KDV_SEG_PASS(ce_seg2_, ce_ctx, ce_step2)

static double KDV_FN(ce_row_)(const float *s, const float *src, int src_kind, float *g, int64_t c,
                              float inv_t, float a, const kdi_simd_label *lab, float lab_sum,
                              float cs, float *work, int nthr, kdi_pipe *pipe)
{
    ce_ctx k = {0};
    float mt = 0.0f, *part = work + 3 * c;
    const float s_y = lab->active ? s[lab->y] : 0.0f;
    row_maxima(pipe, s, src_kind == 2 ? src : NULL, c, nthr, part, &k.ms, &mt);
    kexp ex[2] = {{s, k.ms, 1.0f, work, 0, NULL, NULL}, {src, mt, inv_t, work + c, 0, NULL, NULL}};
    kside side;
    pipe_next(pipe, c, &ex[0], src_kind == 2 ? &ex[1] : NULL, &side);
    double sum[2];
    seg_exps(ex, src_kind == 2 ? 2 : 1, c, nthr, part, sum);
    double sum_src = 0.0;
    k.sv = src;
    k.ka = a;
    if (src_kind == 2) {
        sum_src = 1.0;
        k.ka = a * (float)(1.0 / sum[1]);
        k.sv = work + c;
    } else if (src_kind == 1) {
        vd acc = VD_ZERO;
        for (int64_t j = 0; j + KDV_W <= c; j += KDV_W)
            vacc(&acc, vload(src + j));
        const vtail tl = vtail_of(c);
        if (tl.n)
            vacc(&acc, vsel(tl.valid, tload(src, &tl, 0.0f), vset(0.0f)));
        sum_src = vdsum(acc);
    }
    k.s = s;
    k.es = work;
    k.g = g;
    k.c = c;
    const float ls = logf((float)sum[0]);
    k.off = lab->active ? lab->off : 0.0f;
    k.cs = cs;
    k.ks = (float)(1.0 / sum[0]) * (float)(lab_sum + a * sum_src);
    k.kg = cs * k.ks;
    k.kq = cs * k.ka;
    double acc[2];
    const int teacher_only = src_kind == 2 && k.off == 0.0f && k.ka != 0.0f;
    seg_run(teacher_only ? KDV_FN(ce_seg2_) : src_kind ? KDV_FN(ce_seg1_) : KDV_FN(ce_seg0_), &k, c,
            nthr, part, side.s ? &side : NULL, acc);
    if (teacher_only) {
        acc[0] *= k.ka;
        acc[1] = a;
    }
    /* sum q log p = sum q d - ls sum q (kind 0: q = off everywhere).  ls is
     * finite or NaN; where it is NaN the sum is NaN unless every q is 0 (0 log
     * p is 0), which a zero sum q does not tell (q may be of either sign). */
    double sum_qlp = src_kind ? acc[0] - (double)ls * acc[1]
                              : (k.off != 0.0f ? (double)k.off * (acc[0] - (double)c * ls) : 0.0);
    if (src_kind && ls != ls) {
        sum_qlp = 0.0;
        for (int64_t j = 0; j < c && sum_qlp == 0.0; j++)
            if (k.sv[j] * k.ka + k.off != 0.0f)
                sum_qlp = NAN;
    }
    double total = -sum_qlp;
    if (lab->active) {
        const float extra = lab->on - lab->off;
        if (extra != 0.0f) {
            total -= (double)extra * ((s_y - k.ms) - ls);
            if (g)
                g[lab->y] -= cs * extra;
        }
    }
    return total;
}

typedef struct {
    const float *s, *t, *e1;
    float *g;
    int64_t c;
    float k, ms, l1, r1;
    const kdi_simd_label *lab;
} sq_ctx;

/* one vector of mse_row's gradient pass: acc = {sum of squares, sum of log p1} */
KDV_INLINE vf sq_step(const sq_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    const vf zero = vset(0.0f), s = KDV_AT(k->s);
    vf d = s - KDV_AT(k->t);
    vacc(&acc[0], vsel(valid, d * d, zero));
    vf g = k->k * d;
    if (k->lab->active) {
        g += k->lab->coef * (KDV_AT(k->e1) * k->r1 - k->lab->off);
        vacc(&acc[1], vsel(valid, (s - k->ms) - k->l1, zero));
    }
    return g;
}

KDV_SEG_PASS(sq_seg_, sq_ctx, sq_step)

static void KDV_FN(mse_row_)(const float *s, const float *t, float *g, int64_t c, float kk,
                             const kdi_simd_label *lab, float *work, int nthr, kdi_pipe *pipe,
                             double *sq_out, double *ce_out)
{
    sq_ctx k = {0};
    float *part = work + 3 * c;
    const float s_y = lab->active ? s[lab->y] : 0.0f;
    kside side = {NULL, NULL, NULL, NULL, NULL};
    if (lab->active) {
        row_maxima(pipe, s, NULL, c, nthr, part, &k.ms, NULL);
        kexp ex = {s, k.ms, 1.0f, work, 0, NULL, NULL};
        pipe_next(pipe, c, &ex, NULL, &side);
        double s1;
        seg_exps(&ex, 1, c, nthr, part, &s1);
        k.l1 = logf((float)s1);
        k.r1 = (float)(1.0 / s1);
    }
    k.s = s;
    k.t = t;
    k.e1 = lab->active ? work : s; /* e1 is only read when a label is active */
    k.g = g;
    k.c = c;
    k.k = kk;
    k.lab = lab;
    double acc[2];
    seg_run(KDV_FN(sq_seg_), &k, c, nthr, part, side.s ? &side : NULL, acc);
    *sq_out = acc[0];
    *ce_out = lab->active ? label_finish(lab, s_y, k.ms, k.l1, acc[1], g) : 0.0;
}

/* ---- short rows, one row per lane (see KDI_SMALL_C) ---- */

#if KDV_W == 16 && defined(__AVX512F__)
#define KDV_SMALL_C KDI_SMALL_C
#define KDV_MSE_SMALL_C 32
#elif defined(__AVX2__)
#define KDV_SMALL_C 32
#define KDV_MSE_SMALL_C 16
#else
#define KDV_SMALL_C 32
#define KDV_MSE_SMALL_C 8
#endif

/* In-place transpose of a W x W block (x[i] lane l <-> x[l] lane i) in
 * log2 W butterfly stages: stage s pairs x[i] and x[i + s] and swaps their
 * off-diagonal s-lane blocks, two two-source shuffles per pair. */
#define KDV_TSTAGE(s, ...)                                                                         \
    for (int i = 0; i < KDV_W; i++)                                                                \
        if (!(i & (s))) {                                                                          \
            const vf a = x[i], b = x[i + (s)];                                                     \
            const vf u = __builtin_shufflevector(a, b, __VA_ARGS__);                               \
            x[i + (s)] = __builtin_shufflevector(a, b, KDV_THI_##s);                               \
            x[i] = u;                                                                              \
        }
#if KDV_W == 16
#define KDV_THI_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define KDV_THI_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define KDV_THI_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define KDV_THI_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#else
#define KDV_THI_4 4, 5, 6, 7, 12, 13, 14, 15
#define KDV_THI_2 2, 3, 10, 11, 6, 7, 14, 15
#define KDV_THI_1 1, 9, 3, 11, 5, 13, 7, 15
#endif

KDV_INLINE void vtranspose(vf *x)
{
#if KDV_W == 16
    KDV_TSTAGE(8, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
    KDV_TSTAGE(4, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27)
    KDV_TSTAGE(2, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29)
    KDV_TSTAGE(1, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30)
#else
    KDV_TSTAGE(4, 0, 1, 2, 3, 8, 9, 10, 11)
    KDV_TSTAGE(2, 0, 1, 8, 9, 4, 5, 12, 13)
    KDV_TSTAGE(1, 0, 8, 2, 10, 4, 12, 6, 14)
#endif
}

/* x[j] lane r = rows[r].(s or t)[j]; lanes past nrows hold 0.  Full blocks
 * of W columns: W row loads and a transpose; the last c % W columns one by
 * one (below). */
KDV_INLINE void gather_cols(const kdi_small_row *rows, int nrows, int64_t j0, int64_t c, int which,
                            vf *x);

/* the full blocks of gather_rows (kept out of line: inlined, it slows the
 * kernels down for rows shorter than W) */
static __attribute__((noinline)) void KDV_FN(gather_blocks_)(const kdi_small_row *rows, int nrows,
                                                             int64_t full, int which, vf *x)
{
    for (int64_t j0 = 0; j0 < full; j0 += KDV_W) {
        vf *blk = x + j0;
        for (int r = 0; r < KDV_W; r++)
            blk[r] = r < nrows ? vload((which ? rows[r].t : rows[r].s) + j0) : vset(0.0f);
        vtranspose(blk);
    }
}

KDV_INLINE void gather_rows(const kdi_small_row *rows, int nrows, int64_t c, int which, vf *x)
{
    const int64_t full = c - c % KDV_W;
    if (full)
        KDV_FN(gather_blocks_)(rows, nrows, full, which, x);
    if (full < c)
        gather_cols(rows, nrows, full, c, which, x);
}

#if KDV_W == 16 && defined(__AVX512F__)
/* the lanes of the first nrows rows of a short-row block, and the lane numbers */
KDV_INLINE __mmask16 lanes_live(int nrows) { return (__mmask16)((1u << nrows) - 1); }
KDV_INLINE __m512i lanes_iota(void) { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }

/* 1 when the rows' arrays `which` (0 s, 1 t, 2 g) are evenly spaced, lane r
 * at r ld floats from row 0's (ld of either sign, every offset and the
 * row's c floats within int32 reach) and none is NULL; *idx = r ld for r <
 * nrows, 0 past.  The pointers are read by two 8-lane gathers and compared
 * as integers (the rows need not be one array). */
KDV_INLINE int lanes_strided(const kdi_small_row *rows, int nrows, int64_t c, int which, __m512i *idx)
{
    const char *f0 = (const char *)rows + (which == 0   ? offsetof(kdi_small_row, s)
                                           : which == 1 ? offsetof(kdi_small_row, t)
                                                        : offsetof(kdi_small_row, g));
    int64_t base, row1 = 0;
    memcpy(&base, f0, sizeof base);
    if (nrows > 1)
        memcpy(&row1, f0 + sizeof(kdi_small_row), sizeof row1);
    const int64_t step = nrows > 1 ? row1 - base : 0, ld = step / (int64_t)sizeof(float);
    if (!base || step % (int64_t)sizeof(float) || (ld < 0 ? -ld : ld) > (INT32_MAX - c) / KDV_W)
        return 0;
    const __mmask16 live = lanes_live(nrows);
    const __m256i at8 = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32((int)sizeof(kdi_small_row)));
    const __m512i r8 = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), zero = _mm512_setzero_si512();
    unsigned ok = 0;
    for (int h = 0; h < 2; h++) {
        const __mmask8 m = (__mmask8)(live >> (8 * h));
        const __m512i ptr = _mm512_mask_i32gather_epi64(zero, m, at8, f0 + 8 * h * sizeof(kdi_small_row), 1);
        const __m512i want = _mm512_add_epi64(
            _mm512_set1_epi64(base),
            _mm512_mullo_epi64(_mm512_add_epi64(r8, _mm512_set1_epi64(8 * h)), _mm512_set1_epi64(step)));
        ok |= (unsigned)(_mm512_mask_cmpeq_epi64_mask(m, ptr, want) & _mm512_cmpneq_epi64_mask(ptr, zero))
              << (8 * h);
    }
    if (ok != live)
        return 0;
    *idx = _mm512_maskz_mullo_epi32(live, lanes_iota(), _mm512_set1_epi32((int32_t)ld));
    return 1;
}
#endif

/* columns [j0, c) of gather_rows, one vector per column */
KDV_INLINE void gather_cols(const kdi_small_row *rows, int nrows, int64_t j0, int64_t c, int which,
                            vf *x)
{
#if KDV_W == 16 && defined(__AVX512F__)
    /* rows evenly spaced (a matrix): one 16-lane gather per column */
    const float *base = which ? rows[0].t : rows[0].s;
    __m512i idx;
    if (lanes_strided(rows, nrows, c, which, &idx)) {
        const vi live = vmask_first(nrows);
        for (int64_t j = j0; j < c; j++)
            x[j] = (vf)((vi)_mm512_i32gather_ps(idx, base + j, 4) & live);
        return;
    }
    /* else one hardware gather per 8 lanes and column, from the rows'
     * addresses (scalar stores into a buffer read back as vectors stall
     * store forwarding); lanes past nrows read row 0 again and are then
     * cleared */
    int64_t a[KDV_W];
    for (int r = 0; r < KDV_W; r++)
        a[r] = (int64_t)(uintptr_t)(which ? rows[r < nrows ? r : 0].t : rows[r < nrows ? r : 0].s);
    __m512i lo, hi;
    memcpy(&lo, a, sizeof lo);
    memcpy(&hi, a + 8, sizeof hi);
    const vi live = vmask_first(nrows);
    for (int64_t j = j0; j < c; j++) {
        const __m512i off = _mm512_set1_epi64(4 * j);
        const __m256 gl = _mm512_i64gather_ps(_mm512_add_epi64(lo, off), NULL, 1);
        const __m256 gh = _mm512_i64gather_ps(_mm512_add_epi64(hi, off), NULL, 1);
        x[j] = (vf)((vi)_mm512_insertf32x8(_mm512_castps256_ps512(gl), gh, 1) & live);
    }
#else
    float b[KDV_W * KDV_W];
    for (int r = 0; r < KDV_W; r++) {
        const float *src = r < nrows ? (which ? rows[r].t : rows[r].s) : NULL;
        for (int64_t j = j0; j < c; j++)
            b[(j - j0) * KDV_W + r] = src ? src[j] : 0.0f;
    }
    for (int64_t j = j0; j < c; j++)
        x[j] = vload(b + (j - j0) * KDV_W);
#endif
}

/* the full blocks of scatter_rows (out of line, as gather_blocks_) */
static __attribute__((noinline)) void KDV_FN(scatter_blocks_)(const kdi_small_row *rows, int nrows,
                                                              int64_t full, const vf *g)
{
    for (int64_t j0 = 0; j0 < full; j0 += KDV_W) {
        vf blk[KDV_W];
        memcpy(blk, g + j0, sizeof blk);
        vtranspose(blk);
        for (int r = 0; r < nrows; r++)
            if (rows[r].g)
                vstore(rows[r].g + j0, blk[r]);
    }
}

/* rows[r].g[j] = lane r of g[j] for the rows that have a gradient: full
 * blocks of W columns by a transpose and W row stores, the rest through a
 * buffer */
KDV_INLINE void scatter_rows(const kdi_small_row *rows, int nrows, int64_t c, const vf *g)
{
    const int64_t full = c - c % KDV_W;
    if (full)
        KDV_FN(scatter_blocks_)(rows, nrows, full, g);
    if (full == c)
        return;
#if KDV_W == 16 && defined(__AVX512F__)
    __m512i idx;
    if (lanes_strided(rows, nrows, c, 2, &idx)) { /* every row has a gradient, evenly spaced */
        for (int64_t j = full; j < c; j++)
            _mm512_mask_i32scatter_ps(rows[0].g + j, lanes_live(nrows), idx, (__m512)g[j], 4);
        return;
    }
#endif
    float b[KDV_W * KDV_W];
    for (int64_t j = full; j < c; j++)
        vstore(b + (j - full) * KDV_W, g[j]);
    for (int r = 0; r < nrows; r++) {
        float *dst = rows[r].g;
        if (dst)
            for (int64_t j = full; j < c; j++)
                dst[j] = b[(j - full) * KDV_W + r];
    }
}

/* log(x) for x >= 1 (a softmax denominator: the max term alone is 1), NaN
 * stays NaN: x = 2^e m with m in [sqrt(1/2), sqrt(2)), log(m) = log(1 + f)
 * by a degree-9 minimax polynomial in f.  Max error ~1 ulp. */
KDV_INLINE vf vlog_ge1(vf x)
{
    vi bits = (vi)x;
    vi e = ((bits >> 23) & 0xff) - 127;
    vf m = (vf)((bits & 0x007fffff) | 0x3f800000); /* [1, 2) */
    vi big = m > 1.41421356f;
    m = vsel(big, m * 0.5f, m);
    e = e + (big & 1);
    vf f = m - 1.0f, z = f * f;
    vf y = f * 7.0376836292e-2f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    vf ef = __builtin_convertvector(e, vf);
    y = y + ef * -2.12194440e-4f - 0.5f * z;
    vf r = f + y + ef * 0.693359375f;
    return vsel(x == x, r, x);
}

/* per-lane max over the c vectors, NaN elements ignored (as max2 without
 * nan_check: every caller takes exps of x - max next, so a NaN element
 * still makes its lane's sum, and every output of that row, NaN) */
KDV_INLINE vf lanes_max(const vf *x, int64_t c)
{
    /* four chains: one would wait for each max in turn */
    vf m[4] = {vset(-INFINITY), vset(-INFINITY), vset(-INFINITY), vset(-INFINITY)};
    int64_t j = 0;
    for (; j + 4 <= c; j += 4)
        for (int u = 0; u < 4; u++)
            m[u] = vmax_keepnan(x[j + u], m[u]); /* m where x is NaN */
    for (; j < c; j++)
        m[0] = vmax_keepnan(x[j], m[0]);
    return vmax_keepnan(vmax_keepnan(m[3], m[2]), vmax_keepnan(m[1], m[0]));
}

/* e[j] = exp((x[j] - m) * scale), returns the per-lane sum */
KDV_INLINE vf lanes_exp(const vf *x, int64_t c, vf m, float scale, vf *e)
{
    vf sum = vset(0.0f);
    for (int64_t j = 0; j < c; j++) {
        e[j] = vexp_nonpos((x[j] - m) * scale);
        sum += e[j];
    }
    return sum;
}

/* per-lane log and reciprocal of a softmax denominator (>= 1) */
KDV_INLINE void lanes_log_inv(vf sum, vf *lg, vf *inv)
{
    *lg = vlog_ge1(sum);
    *inv = 1.0f / sum;
}

typedef struct {
    vf on, off, coef, cs, a, lab_sum;
    vi y;
} small_params;

KDV_INLINE small_params small_params_of(const kdi_small_row *rows, int nrows)
{
    small_params p;
#if KDV_W == 16 && defined(__AVX512F__)
    /* each field of the rows by one gather (a vector filled lane by lane
     * would wait for its 16 stores) */
    _Static_assert(sizeof(kdi_small_row) % 4 == 0, "kdi_small_row in 4-byte units");
    const __m512i at = _mm512_mullo_epi32(lanes_iota(), _mm512_set1_epi32((int)(sizeof(kdi_small_row) / 4)));
    const __mmask16 live = lanes_live(nrows);
    const char *r0 = (const char *)rows;
#define KDV_FIELD(f, m) (vf) _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, at, r0 + offsetof(kdi_small_row, f), 4)
    const __mmask16 act = _mm512_test_epi32_mask(
        _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, at, r0 + offsetof(kdi_small_row, lab.active), 4),
        _mm512_set1_epi32(-1));
    p.cs = KDV_FIELD(cs, live);
    p.a = KDV_FIELD(a, live);
    p.lab_sum = KDV_FIELD(lab_sum, live);
    p.on = KDV_FIELD(lab.on, act);
    p.off = KDV_FIELD(lab.off, act);
    p.coef = KDV_FIELD(lab.coef, act);
#undef KDV_FIELD
    p.y = (vi)_mm512_mask_i32gather_epi32(_mm512_set1_epi32(-1), act, at, r0 + offsetof(kdi_small_row, lab.y), 4);
#else
    for (int r = 0; r < KDV_W; r++) {
        const kdi_small_row *w = r < nrows ? &rows[r] : NULL;
        int act = w && w->lab.active;
        p.on[r] = act ? w->lab.on : 0.0f;
        p.off[r] = act ? w->lab.off : 0.0f;
        p.coef[r] = act ? w->lab.coef : 0.0f;
        p.y[r] = act ? w->lab.y : -1;
        p.cs[r] = w ? w->cs : 0.0f;
        p.a[r] = w ? w->a : 0.0f;
        p.lab_sum[r] = w ? w->lab_sum : 0.0f;
    }
#endif
    return p;
}

/* whether any of the rows has a hard label (the softmax at T = 1 matters
 * only then) */
KDV_INLINE int lanes_any_label(const kdi_small_row *rows, int nrows)
{
    int any = 0;
    for (int r = 0; r < nrows; r++)
        any |= rows[r].lab.active;
    return any;
}

/* Column j of the hard-label term of short rows (kl_small, mse_small), as
 * label_finish: *ce += oh_j ds_j where oh_j != 0 (oh the smoothed one-hot,
 * ds = s - ms); returns the gradient's share coef (e1_j r1 - oh_j), 0 in the
 * lanes without a label (a row without one may hold +Inf, whose softmax is
 * NaN). */
KDV_INLINE vf lanes_label_step(const small_params *p, int64_t j, vf ds, vf e1, vf r1, vf *ce)
{
    const vf oh = vsel(p->y == (int32_t)j, p->on, p->off);
    *ce = vlanes_nz(*ce, oh, ds);
    return vsel(p->y >= 0, p->coef * (e1 * r1 - oh), vset(0.0f));
}

/* the hard-label CE from lanes_label_step's sum: l1 sum_j oh_j - sum oh ds,
 * 0 in the lanes without a label */
KDV_INLINE vf lanes_label_ce(const small_params *p, int64_t c, vf l1, vf ce)
{
    return vsel(p->y >= 0, l1 * (p->on + (float)(c - 1) * p->off) - ce, vset(0.0f));
}

static void KDV_FN(kl_small_)(const kdi_small_row *rows, int nrows, int64_t c, float inv_t,
                              double *kl_out, double *ce_out)
{
    vf S[KDV_SMALL_C], T[KDV_SMALL_C], ES[KDV_SMALL_C], ET[KDV_SMALL_C], E1[KDV_SMALL_C];
    const small_params p = small_params_of(rows, nrows);
    gather_rows(rows, nrows, c, 0, S);
    gather_rows(rows, nrows, c, 1, T);
    const vf ms = lanes_max(S, c), mt = lanes_max(T, c);
    vf ls, lt, l1, rs, rt, r1;
    lanes_log_inv(lanes_exp(S, c, ms, inv_t, ES), &ls, &rs);
    const vf st = lanes_exp(T, c, mt, inv_t, ET);
    lanes_log_inv(st, &lt, &rt);
    const vf *e1 = ES;
    l1 = ls;
    r1 = rs;
    const int labels = lanes_any_label(rows, nrows);
    if (inv_t != 1.0f && labels) {
        const int pw = inv_t == 0.5f ? 2 : inv_t == 0.25f ? 4 : 0;
        if (pw) { /* powers of the exps at T, as kl_row */
            vf sum = vset(0.0f);
            for (int64_t j = 0; j < c; j++)
                sum += E1[j] = vpow_flush(ES[j], pw);
            lanes_log_inv(sum, &l1, &r1);
        } else {
            lanes_log_inv(lanes_exp(S, c, ms, 1.0f, E1), &l1, &r1);
        }
        e1 = E1;
    }
    /* as kl_step: KL = inv_t sum pt (dt - ds) + (ls - lt) sum pt */
    const vf zero = vset(0.0f), kq = p.cs * rs;
    vf kl = zero, ce = zero, G[KDV_SMALL_C];
    for (int64_t j = 0; j < c; j++) {
        const vf ds = S[j] - ms, pt = ET[j] * rt;
        kl = vlanes_nz(kl, pt, (T[j] - mt) - ds);
        vf g = ES[j] * kq - pt * p.cs;
        if (labels)
            g += lanes_label_step(&p, j, ds, e1[j], r1, &ce);
        G[j] = g;
    }
    kl = kl * inv_t + (ls - lt) * (rt * st);
    ce = lanes_label_ce(&p, c, l1, ce);
    scatter_rows(rows, nrows, c, G);
    for (int r = 0; r < nrows; r++) {
        kl_out[r] = kl[r];
        ce_out[r] = ce[r];
    }
}

/* column j of ce_small's target q (smoothed one-hot, plus ka Q with a source) */
KDV_INLINE vf ce_lanes_q(const small_params *p, int64_t j, int src_kind, vf ka, const vf *Q)
{
    const vf q = vsel(p->y == (int32_t)j, p->on, p->off);
    return src_kind ? q + ka * Q[j] : q;
}

static void KDV_FN(ce_small_)(const kdi_small_row *rows, int nrows, int64_t c, int src_kind,
                              float inv_t, double *loss_out)
{
    vf S[KDV_SMALL_C], Q[KDV_SMALL_C], ES[KDV_SMALL_C];
    const small_params p = small_params_of(rows, nrows);
    const vf zero = vset(0.0f);
    gather_rows(rows, nrows, c, 0, S);
    const vf ms = lanes_max(S, c);
    vf ls, rs, sum_src = zero, ka = p.a;
    lanes_log_inv(lanes_exp(S, c, ms, 1.0f, ES), &ls, &rs);
    if (src_kind) {
        gather_rows(rows, nrows, c, 1, Q);
        if (src_kind == 2) { /* teacher logits: q_src = Q rt = softmax(t / T) */
            vf lt, rt;
            lanes_log_inv(lanes_exp(Q, c, lanes_max(Q, c), inv_t, Q), &lt, &rt);
            ka = p.a * rt;
            sum_src = vset(1.0f);
        } else {
            for (int64_t j = 0; j < c; j++)
                sum_src += Q[j];
        }
    }
    /* as ce_step: sum q log p = sum q d - ls sum q, g = cs (es rs sum_q - q) */
    const vf ks = rs * (p.lab_sum + p.a * sum_src);
    vf qd = zero, qs = zero, G[KDV_SMALL_C];
    if (src_kind == 2 && !lanes_any_label(rows, nrows)) {
        /* q = ka Q alone: sum q = a, sum q d = ka sum Q d over Q != 0 (0 in
         * the lanes where ka = 0, whose every q is 0) */
        const vf kg = p.cs * ks, kq = p.cs * ka;
        for (int64_t j = 0; j < c; j++) {
            qd = vlanes_nz(qd, Q[j], S[j] - ms);
            G[j] = ES[j] * kg - Q[j] * kq;
        }
        qd = vsel(ka != 0.0f, qd * ka, zero);
        qs = p.a;
    } else {
        for (int64_t j = 0; j < c; j++) {
            const vf q = ce_lanes_q(&p, j, src_kind, ka, Q);
            qd = vlanes_nz(qd, q, S[j] - ms);
            qs += q;
            G[j] = p.cs * (ES[j] * ks - q);
        }
    }
    vf loss = ls * qs - qd;
    if (vhany(ls != ls)) /* as ce_row: NaN unless every q of the row is 0 */
        for (int r = 0; r < nrows; r++)
            if (ls[r] != ls[r]) {
                loss[r] = 0.0f;
                for (int64_t j = 0; j < c && loss[r] == 0.0f; j++)
                    if (ce_lanes_q(&p, j, src_kind, ka, Q)[r] != 0.0f)
                        loss[r] = NAN;
            }
    scatter_rows(rows, nrows, c, G);
    for (int r = 0; r < nrows; r++)
        loss_out[r] = loss[r];
}

static void KDV_FN(pl_small_)(const kdi_small_row *rows, int nrows, int64_t c,
                              const float *class_thr, float tau, int inclusive, double *loss_out,
                              int32_t *label_out, int *keep_out)
{
    vf S[KDV_SMALL_C], T[KDV_SMALL_C], ES[KDV_SMALL_C];
    const small_params p = small_params_of(rows, nrows);
    const vf zero = vset(0.0f);
    gather_rows(rows, nrows, c, 0, S);
    gather_rows(rows, nrows, c, 1, T);
    /* argmax of the teacher with torch's rules: the first index of the max
     * (0 for a row of -Inf), or the first NaN if any.  The max m ignores NaN
     * elements; the first index is found backwards (no chain of compares) */
    const vf m = lanes_max(T, c);
    vi idx = vmask_first(0);
    for (int64_t j = c - 1; j >= 0; j--)
        idx = (vi)vsel(T[j] == m, (vf)(idx - idx + (int32_t)j), (vf)idx);
    /* confidence = max softmax(t) = 1 / sum_j exp(t_j - m): NaN for a row
     * holding a NaN (not kept), whose label is then its first NaN */
    vf ET[KDV_SMALL_C];
    const vf sum_t = lanes_exp(T, c, m, 1.0f, ET), conf = 1.0f / sum_t;
    if (vhany(sum_t != sum_t)) {
        vi nan_idx = idx - idx - 1;
        for (int64_t j = c - 1; j >= 0; j--)
            nan_idx = (vi)vsel(T[j] != T[j], (vf)(idx - idx + (int32_t)j), (vf)nan_idx);
        idx = (vi)vsel(nan_idx >= 0, (vf)nan_idx, (vf)idx);
    }
    vf thr = vset(tau);
    if (class_thr)
        for (int r = 0; r < KDV_W; r++)
            thr[r] = class_thr[idx[r] >= 0 && idx[r] < c ? idx[r] : 0];
    const vi keep = inclusive ? conf >= thr : conf > thr;
    /* kept rows: CE(s, label) = ls - (s_label - ms), g = cs (softmax(s) - onehot) */
    const vf ms = lanes_max(S, c);
    vf ls, rs;
    lanes_log_inv(lanes_exp(S, c, ms, 1.0f, ES), &ls, &rs);
    const vf kk = p.cs * rs;
    vf sy = zero, G[KDV_SMALL_C];
    for (int64_t j = 0; j < c; j++) { /* masked rows: exactly 0, even for a NaN student */
        const vi is_y = idx == (int32_t)j;
        sy = vsel(is_y, S[j], sy);
        G[j] = vsel(keep, ES[j] * kk - (vf)(is_y & (vi)p.cs), zero);
    }
    const vf loss = vsel(keep, ls - (sy - ms), zero);
    scatter_rows(rows, nrows, c, G);
    for (int r = 0; r < nrows; r++) {
        loss_out[r] = loss[r];
        label_out[r] = idx[r];
        keep_out[r] = keep[r] != 0;
    }
}

static void KDV_FN(mse_small_)(const kdi_small_row *rows, int nrows, int64_t c, double *sq_out,
                               double *ce_out)
{
    vf S[KDV_SMALL_C], T[KDV_SMALL_C], ES[KDV_SMALL_C];
    const small_params p = small_params_of(rows, nrows);
    const vf zero = vset(0.0f);
    gather_rows(rows, nrows, c, 0, S);
    gather_rows(rows, nrows, c, 1, T);
    const int labels = lanes_any_label(rows, nrows);
    vf ms = zero, l1 = zero, r1 = zero;
    if (labels) {
        ms = lanes_max(S, c);
        lanes_log_inv(lanes_exp(S, c, ms, 1.0f, ES), &l1, &r1);
    }
    /* as mse_row */
    vd sq = VD_ZERO; /* per lane: float partial sums of 16 squares, then double, as mse_row */
    vf ce = zero, G[KDV_SMALL_C];
    for (int64_t j = 0; j < c; j++) {
        const vf d = S[j] - T[j];
        vacc(&sq, d * d);
        vf g = p.cs * d;
        if (labels)
            g += lanes_label_step(&p, j, S[j] - ms, ES[j], r1, &ce);
        G[j] = g;
    }
    ce = lanes_label_ce(&p, c, l1, ce);
    vflush(&sq);
    scatter_rows(rows, nrows, c, G);
    for (int r = 0; r < nrows; r++) {
        sq_out[r] = r < KDV_W / 2 ? sq.lo[r] : sq.hi[r - KDV_W / 2];
        ce_out[r] = ce[r];
    }
}

static const kdi_simd_ops KDV_FN(ops_) = {
    KDV_ISA,
    KDV_NAME,
    KDV_W,
    KDV_SMALL_C,
    KDV_MSE_SMALL_C,
    KDV_FN(row_max_),
    KDV_FN(row_sumexp_),
    KDV_FN(row_argmax_),
    KDV_FN(row_confidence_),
    KDV_FN(kl_row_),
    KDV_FN(ce_row_),
    KDV_FN(mse_row_),
    KDV_FN(kl_small_),
    KDV_FN(ce_small_),
    KDV_FN(pl_small_),
    KDV_FN(mse_small_),
};
