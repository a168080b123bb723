/* Part 1 of the SIMD kernel template (see simd_impl.h): the vector types,
 * loads, stores and lane masks, the row tail (vtail), double accumulators,
 * horizontal reductions, exp, and the single-pass row max / argmax / sumexp.
 * Needs KDV_W and KDV_SUFFIX defined by the including simd_*.c file. */
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
#define KDV_XSTEPS(STEP)                                                                           \
    STEP(4, 5, 6, 7, 0, 1, 2, 3) STEP(2, 3, 0, 1, 6, 7, 4, 5) STEP(1, 0, 3, 2, 5, 4, 7, 6)
#define KDV_DXSTEPS(STEP) STEP(2, 3, 0, 1) STEP(1, 0, 3, 2)
#elif KDV_W == 16
#define KDV_LO 0, 1, 2, 3, 4, 5, 6, 7
#define KDV_HI 8, 9, 10, 11, 12, 13, 14, 15
#define KDV_XSTEPS(STEP)                                                                           \
    STEP(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)                                     \
    STEP(4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11)                                     \
    STEP(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13)                                     \
    STEP(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14)
#define KDV_DXSTEPS(STEP)                                                                          \
    STEP(4, 5, 6, 7, 0, 1, 2, 3) STEP(2, 3, 0, 1, 6, 7, 4, 5) STEP(1, 0, 3, 2, 5, 4, 7, 6)
#endif

KDV_INLINE vf vload(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

KDV_INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* lanes [0, n) set, n in [0, W]: one unaligned load from a table */
static const int32_t KDV_FN(mask_table_)[2 * KDV_W] = {-1, -1, -1, -1, -1, -1, -1, -1,
#if KDV_W == 16
                                                       -1, -1, -1, -1, -1, -1, -1, -1,
                                                       0,  0,  0,  0,  0,  0,  0,  0,
#endif
                                                       0,  0,  0,  0,  0,  0,  0,  0};

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
    vi valid; /* lanes holding new elements */
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

#define VD_ZERO                                                                                    \
    {                                                                                              \
        {0}, {0}, {0}, 0                                                                           \
    }

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
    r = _mm512_fnmadd_ps(m, _mm512_set1_ps(1.428606765330187045e-06f), r);  /* ln2, the rest */
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
    const __m256 pow2 =
        _mm256_setr_ps(1.0f, 0x1.172b84p+0f, 0x1.306fe0p+0f, 0x1.4bfdaep+0f, 0x1.6a09e6p+0f,
                       0x1.8ace54p+0f, 0x1.ae89fap+0f, 0x1.d5818ep+0f);
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
    /* in unsigned lanes: below lo, (vi)k - 0x49C00000 overflows int (the
     * lanes are masked off anyway; no signed overflow, same instructions) */
    typedef uint32_t vu __attribute__((vector_size(KDV_W * 4)));
    const vi n = (vi)((vu)(vi)k - 0x49C00000u) >> 3;
    const vf v = (vf)p * (vf)(vi)((vu)(n + 127) << 23);
    return (vf)((vi)v & ~(x < lo));
}
#else
KDV_INLINE vf vexp_nonpos(vf x)
{
    typedef uint32_t vu __attribute__((vector_size(KDV_W * 4)));
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
    vf v = p * (vf)(vi)((vu)(ki + 127) << 23); /* ki + 127 >= 0 here; unsigned shift */
    return (vf)((vi)v & ~(x < lo));            /* NaN lanes compare false: stay NaN */
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
        const vi at = lane + (int32_t)(full ? j : tl.off),
                 valid = full ? vmask_first(KDV_W) : tl.valid;
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
