/* Part 5 of the SIMD kernel template (see simd_impl.h): the consistency
 * row (cons_row_, see simd.h; the math in src/losses/consistency.c).
 * Needs simd_math.h and vlog_ge1 of simd_short.h.
 *
 * Logits: the max pass over both rows, one exp pass per row storing
 * e_j = exp(x_j - max) into work, then p_j = e_j / sum (a multiply by the
 * reciprocal) and log p_j = (x_j - max) - log(sum) as kdi_log_softmax.  The
 * distance pass adds the row sums; the gradient pass reads p again from
 * work and the logits only for log p (KL), so g may equal x: every vector
 * of x is read before the same vector of g is written, and the row's tail
 * (see vtail) is computed before the full vectors and stored after them. */

typedef struct {
    const float *x1, *x2, *e1, *e2;
    float m1, m2, l1, l2, r1, r2;
    int logits, dist; /* dist: 0 L2, 1 KL, 2 JS (KL and JS: logits only) */
} cons_ctx;

/* log(e^u + e^v) for the JS mixture log M = log(p1 / 2 + p2 / 2), as
 * kdi_log_mix: the larger plus log1p(e^(smaller - larger)); log1p(z) is
 * log(1 + z) with the rounding of 1 + z corrected to first order (z in
 * [0, 1]); -Inf where both are -Inf, NaN stays NaN */
KDV_INLINE vf vlog_mix_half(vf lp1, vf lp2)
{
    const float lh = -0.69314718055994531f;
    const vf u = lp1 + lh, v = lp2 + lh;
    const vi ugt = u > v;
    const vf m = vsel(ugt, u, v), lo = vsel(ugt, v, u);
    const vf z = vexp_nonpos(lo - m), w = 1.0f + z;
    const vf l1p = vlog_ge1(w) + (z - (w - 1.0f)) / w;
    return vsel(m == -INFINITY, m, m + l1p);
}

/* p1, p2 (and, for KL, w = log p2 - log p1; for JS, w = log p1 - log M and
 * w2 = log p2 - log M) of the vector at j (tail: the row's tail vector) */
KDV_INLINE void cons_at(const cons_ctx *k, const vtail *tl, int64_t j, vf *p1, vf *p2, vf *w,
                        vf *w2)
{
    if (k->logits) {
        const vf e1 = tl ? tload(k->e1, tl, 0.0f) : vload(k->e1 + j);
        const vf e2 = tl ? tload(k->e2, tl, 0.0f) : vload(k->e2 + j);
        *p1 = e1 * k->r1;
        *p2 = e2 * k->r2;
        if (k->dist) {
            const vf x1 = tl ? tload(k->x1, tl, 0.0f) : vload(k->x1 + j);
            const vf x2 = tl ? tload(k->x2, tl, 0.0f) : vload(k->x2 + j);
            const vf lp1 = (x1 - k->m1) - k->l1, lp2 = (x2 - k->m2) - k->l2;
            if (k->dist == 1) {
                *w = lp2 - lp1;
            } else {
                const vf lm = vlog_mix_half(lp1, lp2);
                *w = lp1 - lm;
                *w2 = lp2 - lm;
            }
        }
    } else {
        *p1 = tl ? tload(k->x1, tl, 0.0f) : vload(k->x1 + j);
        *p2 = tl ? tload(k->x2, tl, 0.0f) : vload(k->x2 + j);
    }
}

/* acc[0] = D's terms (JS: p1 (log p1 - log M)), acc[1], acc[2] = the
 * softmax backward's row totals (JS: acc[2] = p2 (log p2 - log M)) */
KDV_INLINE void cons_sum_step(const cons_ctx *k, const vtail *tl, int64_t j, vd *acc)
{
    const vf zero = vset(0.0f);
    const vi valid = tl ? tl->valid : vmask_first(KDV_W);
    vf p1, p2, w = zero, w2 = zero;
    cons_at(k, tl, j, &p1, &p2, &w, &w2);
    if (k->dist == 1) { /* p2 w where p2 != 0; sum p2 */
        vacc_nz(&acc[0], p2, w, valid, tl != NULL);
        vacc(&acc[2], vsel(valid, p2, zero));
    } else if (k->dist == 2) { /* each where its p != 0 */
        vacc_nz(&acc[0], p1, w, valid, tl != NULL);
        vacc_nz(&acc[2], p2, w2, valid, tl != NULL);
    } else {
        const vf d = p1 - p2;
        vacc(&acc[0], vsel(valid, d * d, zero));
        if (k->logits) {
            vacc(&acc[1], vsel(valid, p1 * d, zero));
            vacc(&acc[2], vsel(valid, p2 * d, zero));
        }
    }
}

/* the gradients' vectors at j (as consistency.c's scalar formulas) */
KDV_INLINE void cons_grad_step(const cons_ctx *k, const vtail *tl, int64_t j, float t1, float t2,
                               float fd, float cs, vf *o1, vf *o2)
{
    const vf zero = vset(0.0f);
    vf p1, p2, w = zero, w2 = zero;
    cons_at(k, tl, j, &p1, &p2, &w, &w2);
    if (k->dist == 1) { /* logits only */
        *o1 = cs * (p1 * t2 - p2);
        *o2 = cs * vsel(p2 != 0.0f, p2 * (w - fd + (1.0f - t2)), zero);
        return;
    }
    vf v1, v2;
    if (k->dist == 2) {
        v1 = vsel(p1 != 0.0f, 0.5f * w, zero);
        v2 = vsel(p2 != 0.0f, 0.5f * w2, zero);
    } else {
        v1 = 2.0f * (p1 - p2);
        v2 = -v1;
    }
    if (k->logits) {
        *o1 = cs * vsel(p1 != 0.0f, p1 * (v1 - t1), zero);
        *o2 = cs * vsel(p2 != 0.0f, p2 * (v2 - t2), zero);
    } else {
        *o1 = cs * v1;
        *o2 = cs * v2;
    }
}

static double KDV_FN(cons_row_)(const float *x1, const float *x2, int64_t c, int logits, int dist,
                                float cs, float *g1, float *g2, float *work)
{
    cons_ctx k = {x1, x2, work, work + c, 0, 0, 0, 0, 1, 1, logits, logits ? dist : 0};
    if (logits) {
        /* kdi_row_lse_ops of each row: a NaN or +Inf max, or a row of -Inf,
         * gives a NaN log-sum and so NaN everywhere */
        max2(x1, x2, c, 1, NULL, &k.m1, &k.m2);
        const double s1 = exp_store(x1, c, k.m1, 1.0f, work);
        const double s2 = exp_store(x2, c, k.m2, 1.0f, work + c);
        k.l1 = isfinite(k.m1) ? (float)log(s1) : NAN;
        k.l2 = isfinite(k.m2) ? (float)log(s2) : NAN;
        k.r1 = isfinite(k.m1) ? (float)(1.0 / s1) : NAN;
        k.r2 = isfinite(k.m2) ? (float)(1.0 / s2) : NAN;
    }
    const vtail tl = vtail_of(c);
    vd acc[3] = {VD_ZERO, VD_ZERO, VD_ZERO};
    int64_t j = 0;
    for (; j + KDV_W <= c; j += KDV_W)
        cons_sum_step(&k, NULL, j, acc);
    if (tl.n)
        cons_sum_step(&k, &tl, 0, acc);
    double d = vdsum(acc[0]);
    double a1 = 2.0 * vdsum(acc[1]), a2 = k.dist == 1 ? vdsum(acc[2]) : -2.0 * vdsum(acc[2]);
    if (k.dist == 2) { /* D = (d1 + d2) / 2, the totals d1 / 2 and d2 / 2 */
        const double d2 = vdsum(acc[2]);
        a1 = 0.5 * d;
        a2 = 0.5 * d2;
        d = 0.5 * (d + d2);
    }
    if (!g1 && !g2)
        return d;
    /* the row totals sum_k p_k v_k: L2 2 sum p1 (p1 - p2), -2 sum p2 (p1 - p2);
     * KL sum p2 */
    const float t1 = (float)a1, t2 = (float)a2;
    const float fd = (float)d;
    vf o1t = vset(0.0f), o2t = o1t;
    if (tl.n)
        cons_grad_step(&k, &tl, 0, t1, t2, fd, cs, &o1t, &o2t);
    for (j = 0; j + KDV_W <= c; j += KDV_W) {
        vf o1, o2;
        cons_grad_step(&k, NULL, j, t1, t2, fd, cs, &o1, &o2);
        if (g1)
            vstore(g1 + j, o1);
        if (g2)
            vstore(g2 + j, o2);
    }
    if (tl.n) {
        if (g1)
            tstore(g1, &tl, o1t);
        if (g2)
            tstore(g2, &tl, o2t);
    }
    return d;
}
