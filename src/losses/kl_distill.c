/* Distillation by divergence at temperature T between the teacher's
 * P = softmax(t/T) and the student's Q = softmax(s/T), plus the optional
 * hard-label cross-entropy term.  With f = T^2 (or 1):
 *   forward KL  D = sum P (log P - log Q)         dD/ds = (Q - P) / T
 *   reverse KL  D = sum Q (log Q - log P)         dD/ds = Q (d - D) / T, d = log Q - log P
 *   JSD(beta)   D = beta KL(P||M) + (1-beta) KL(Q||M), M = beta P + (1-beta) Q
 *               dD/ds = Q (g - sum Q g) / T,  g = (1-beta)(log Q - log M)
 * (Liger-Kernel's generalized JSD: beta = 0 is forward KL, beta = 1 reverse.) */
#include <math.h>

#include "kernels/rowops.h"
#include "kernels/simd.h"
#include "losses/loss_internal.h"

kdi_hard kdi_hard_begin(const kd_loss *h, const kdi_row *r)
{
    kdi_hard hd = {0};
    hd.active = r->y >= 0;
    if (!hd.active)
        return hd;
    hd.l = kdi_row_lse_ops(h->ops, r->s, h->c, 1.0f);
    hd.oh = kdi_smoothed_onehot(h);
    hd.y = r->y;
    hd.coef = (float)r->c_hard;
    return hd;
}

/* log(a e^x + b e^y) for weights a, b in (0, 1), exact for far-apart x, y. */
static inline float log_mix(float la, float x, float lb, float y)
{
    float u = la + x, v = lb + y;
    float m = u > v ? u : v;
    if (m == -INFINITY)
        return -INFINITY;
    return m + log1pf(expf((u > v ? v : u) - m));
}

void kdi_kl_distill_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int64_t c = h->c;
    const float *s = r->s, *t = r->t;
    const float inv_t = (float)(1.0 / h->temperature);
    const float f = h->t2_scaling ? (float)(h->temperature * h->temperature) : 1.0f;
    const float cs = (float)r->c_soft * f * inv_t;
    float *g = r->g;

    int div = h->divergence;
    double beta = h->jsd_beta;
    if (div == KD_DIVERGENCE_JSD && beta == 0.0)
        div = KD_DIVERGENCE_FORWARD_KL;
    else if (div == KD_DIVERGENCE_JSD && beta == 1.0)
        div = KD_DIVERGENCE_REVERSE_KL;

    double d = 0.0, ce = 0.0;
    if (div == KD_DIVERGENCE_FORWARD_KL) {
        /* the gradient needs no row total: one vectorised row kernel */
        const kdi_onehot oh = kdi_smoothed_onehot(h);
        kdi_simd_label lab = {r->y >= 0, r->y, oh.on, oh.off, (float)r->c_hard};
        h->ops->kl_row(s, t, g, c, inv_t, cs, &lab, r->work, r->nthr, r->pipe, &d, &ce);
        terms[0] = f * d;
        terms[1] = ce;
        return;
    }

    /* reverse KL and JSD: the gradient needs the row's total first */
    const kdi_lse ls = kdi_row_lse_ops(h->ops, s, c, inv_t), lt = kdi_row_lse_ops(h->ops, t, c, inv_t);
    const kdi_hard hd = kdi_hard_begin(h, r);
    const float lb = (float)log(beta), l1b = (float)log1p(-beta);
    double dp = 0.0, dq = 0.0; /* JSD's two halves; reverse KL uses dq */
    for (int64_t j = 0; j < c; j++) {
        float lq = kdi_log_softmax(s[j], inv_t, ls), lp = kdi_log_softmax(t[j], inv_t, lt);
        float q = expf(lq);
        if (hd.active)
            ce += kdi_hard_loss_at(&hd, s[j], j);
        if (div == KD_DIVERGENCE_REVERSE_KL) {
            if (q != 0.0f)
                dq += (double)q * (lq - lp);
        } else {
            float lm = log_mix(lb, lp, l1b, lq), p = expf(lp);
            if (p != 0.0f)
                dp += (double)p * (lp - lm);
            if (q != 0.0f)
                dq += (double)q * (lq - lm);
        }
    }
    double w = div == KD_DIVERGENCE_REVERSE_KL ? 1.0 : 1.0 - beta;
    d = div == KD_DIVERGENCE_REVERSE_KL ? dq : beta * dp + (1.0 - beta) * dq;
    terms[0] = f * d;
    terms[1] = ce;
    if (!g)
        return;
    const float mean_g = (float)(w * dq), wf = (float)w;
    for (int64_t j = 0; j < c; j++) {
        float sj = s[j];
        float lq = kdi_log_softmax(sj, inv_t, ls), lp = kdi_log_softmax(t[j], inv_t, lt);
        float q = expf(lq);
        float other = div == KD_DIVERGENCE_REVERSE_KL ? lp : log_mix(lb, lp, l1b, lq);
        float gj = q != 0.0f ? cs * q * (wf * (lq - other) - mean_g) : 0.0f;
        g[j] = gj + (hd.active ? kdi_hard_grad_at(&hd, sj, j) : 0.0f);
    }
}
