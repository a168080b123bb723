/* Part 2 of the SIMD kernel template (see simd_impl.h): long rows in
 * segments (KDV_SEGMENTS, the per-segment sums in the work area), the
 * streams of exps (kexp), the gradient pass driver (seg_run), argmax and
 * confidence by segments, the hard-label share, and the pipe that hands a
 * row's maxima to the row before it.  Needs simd_math.h. */

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
            _Pragma("omp parallel for num_threads(nthr) schedule(static)") for (int64_t k = 0;     \
                                                                                k < (nseg); k++)   \
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
        max2(x + j0, y ? y + j0 : NULL, seg_end(k, nseg, c) - j0, 0, pf ? pf + j0 : NULL,
             &part[2 * k], &part[2 * k + 1]);
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
            put_d(part + 6 * k + 2 * i,
                  stream_sum(&e[i], k * KDI_SEG, seg_end(k, nseg, c) - k * KDI_SEG));
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
        const kside sk = {side ? side->s : NULL, side ? side->t : NULL, &slot[2 * k],
                          &slot[2 * k + 1], side ? side->pf : NULL};
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
        put_d(work + 2 * k,
              (double)(j0 + argmax_pf(t + j0, seg_end(k, nseg, c) - j0, pf ? pf + j0 : NULL)));
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
        put_d(work + 6 * k,
              exp_store_first(t + j0, seg_end(k, nseg, c) - j0, m, 1.0f, NULL, NULL, NULL, &at));
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
