/* Part 4 of the SIMD kernel template (see simd_impl.h): short rows, one row
 * per lane: the block transposes, gather_rows / scatter_rows, the lane-wise
 * max / exp / log, and the kernels kl_small_, ce_small_, pl_small_ and
 * mse_small_.  Needs simd_math.h only. */

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
KDV_INLINE __m512i lanes_iota(void)
{
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

/* 1 when the rows' arrays `which` (0 s, 1 t, 2 g) are evenly spaced, lane r
 * at r ld floats from row 0's (ld of either sign, every offset and the
 * row's c floats within int32 reach) and none is NULL; *idx = r ld for r <
 * nrows, 0 past.  The pointers are read by two 8-lane gathers and compared
 * as integers (the rows need not be one array). */
KDV_INLINE int lanes_strided(const kdi_small_row *rows, int nrows, int64_t c, int which,
                             __m512i *idx)
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
        const __m512i ptr =
            _mm512_mask_i32gather_epi64(zero, m, at8, f0 + 8 * h * sizeof(kdi_small_row), 1);
        const __m512i want =
            _mm512_add_epi64(_mm512_set1_epi64(base),
                             _mm512_mullo_epi64(_mm512_add_epi64(r8, _mm512_set1_epi64(8 * h)),
                                                _mm512_set1_epi64(step)));
        ok |= (unsigned)(_mm512_mask_cmpeq_epi64_mask(m, ptr, want) &
                         _mm512_cmpneq_epi64_mask(ptr, zero))
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
    const __m512i at =
        _mm512_mullo_epi32(lanes_iota(), _mm512_set1_epi32((int)(sizeof(kdi_small_row) / 4)));
    const __mmask16 live = lanes_live(nrows);
    const char *r0 = (const char *)rows;
#define KDV_FIELD(f, m)                                                                            \
    (vf) _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, at, r0 + offsetof(kdi_small_row, f), 4)
    const __mmask16 act = _mm512_test_epi32_mask(
        _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, at,
                                    r0 + offsetof(kdi_small_row, lab.active), 4),
        _mm512_set1_epi32(-1));
    p.cs = KDV_FIELD(cs, live);
    p.a = KDV_FIELD(a, live);
    p.lab_sum = KDV_FIELD(lab_sum, live);
    p.on = KDV_FIELD(lab.on, act);
    p.off = KDV_FIELD(lab.off, act);
    p.coef = KDV_FIELD(lab.coef, act);
#undef KDV_FIELD
    p.y = (vi)_mm512_mask_i32gather_epi32(_mm512_set1_epi32(-1), act, at,
                                          r0 + offsetof(kdi_small_row, lab.y), 4);
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

/* Lane r's log sum_j exp(S_j - ms) in double: log1p of the sum without the
 * maximum terms (each exactly 1), so that a confident row (sum = 1 + a
 * small rest, below the float rounding of 1) keeps its small loss.  Used for
 * rows whose float loss is below KDI_SMALL_LOSS only. */
static __attribute__((noinline, cold)) double KDV_FN(lane_logsum_)(const vf *S, const vf *ES, vf ms,
                                                                   int64_t c, int r)
{
    double rest = 0.0;
    int n_max = 0;
    for (int64_t j = 0; j < c; j++) {
        if (S[j][r] == ms[r])
            n_max++;
        else
            rest += ES[j][r];
    }
    return log1p((double)(n_max - 1) + rest);
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
    if (__builtin_expect(vhany(loss < KDI_SMALL_LOSS), 0)) /* ls in double (lane_logsum_) */
        for (int r = 0; r < nrows; r++)
            if (loss[r] < KDI_SMALL_LOSS && ls[r] == ls[r] && qs[r] != 0.0f)
                loss_out[r] = KDV_FN(lane_logsum_)(S, ES, ms, c, r) * qs[r] - qd[r];
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
    if (__builtin_expect(vhany(keep & (loss < KDI_SMALL_LOSS)), 0)) /* ls in double */
        for (int r = 0; r < nrows; r++)
            if (keep[r] && loss[r] < KDI_SMALL_LOSS)
                loss_out[r] = KDV_FN(lane_logsum_)(S, ES, ms, c, r) - (double)(sy[r] - ms[r]);
}

/* One short row of mse_small read in place (no transpose): returns sum_j
 * (s_j - t_j)^2, each square added in double (no float partial sum that
 * could overflow), and with g writes g_j = k (s_j - t_j) + 0 (the lane
 * path's sum with a zero label term, so a row gives the same bits in a
 * block with labels as without).  g may equal s: the tail is read before
 * the full vectors are written. */
KDV_INLINE double sq_row_direct(const float *s, const float *t, float *g, int64_t c, float k)
{
    const vf zero = vset(0.0f);
    const vtail tl = vtail_of(c);
    const vf dt = tl.n ? tload(s, &tl, 0.0f) - tload(t, &tl, 0.0f) : zero;
    vdh lo = {0}, hi = {0};
    for (int64_t j = 0; j + KDV_W <= c; j += KDV_W) {
        const vf d = vload(s + j) - vload(t + j), q = d * d;
        lo += __builtin_convertvector(__builtin_shufflevector(q, q, KDV_LO), vdh);
        hi += __builtin_convertvector(__builtin_shufflevector(q, q, KDV_HI), vdh);
        if (g)
            vstore(g + j, k * d + zero);
    }
    if (tl.n) {
        const vf q = vsel(tl.valid, dt * dt, zero);
        lo += __builtin_convertvector(__builtin_shufflevector(q, q, KDV_LO), vdh);
        hi += __builtin_convertvector(__builtin_shufflevector(q, q, KDV_HI), vdh);
        if (g)
            tstore(g, &tl, k * dt + zero);
    }
    vdh d = lo + hi;
#define KDV_DSTEP(...) d += __builtin_shufflevector(d, d, __VA_ARGS__);
    KDV_DXSTEPS(KDV_DSTEP)
#undef KDV_DSTEP
    return d[0];
}

static void KDV_FN(mse_small_)(const kdi_small_row *rows, int nrows, int64_t c, double *sq_out,
                               double *ce_out)
{
    /* Without a label a row is a plain difference: each row in place (the
     * transposes cost more than the arithmetic).  The squares always come
     * from the rows in place, so a row's sum does not depend on the other
     * rows of its block. */
    const int labels = lanes_any_label(rows, nrows);
    for (int r = 0; r < nrows; r++) {
        sq_out[r] = sq_row_direct(rows[r].s, rows[r].t, labels ? NULL : rows[r].g, c, rows[r].cs);
        ce_out[r] = 0.0;
    }
    if (!labels)
        return;
    vf S[KDV_SMALL_C], T[KDV_SMALL_C], ES[KDV_SMALL_C];
    const small_params p = small_params_of(rows, nrows);
    const vf zero = vset(0.0f);
    gather_rows(rows, nrows, c, 0, S);
    gather_rows(rows, nrows, c, 1, T);
    const vf ms = lanes_max(S, c);
    vf l1, r1;
    lanes_log_inv(lanes_exp(S, c, ms, 1.0f, ES), &l1, &r1);
    /* as mse_row */
    vf ce = zero, G[KDV_SMALL_C];
    for (int64_t j = 0; j < c; j++)
        G[j] = p.cs * (S[j] - T[j]) + lanes_label_step(&p, j, S[j] - ms, ES[j], r1, &ce);
    ce = lanes_label_ce(&p, c, l1, ce);
    scatter_rows(rows, nrows, c, G);
    for (int r = 0; r < nrows; r++)
        ce_out[r] = ce[r];
}
