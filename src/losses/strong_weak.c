/* UDA strong/weak consistency (tllib StrongWeakConsistencyLoss):
 *   l = m * KL(P || Q),  P = softmax(t) (weak view, detached, temperature 1),
 *   Q = softmax(s / T) (strong view),  m = [max P > tau]
 * Gradient: d l / d s_j = m (Q_j - P_j) / T.  The MEAN denominator
 * max(sum m, 1) is counted by the driver before this kernel runs.
 * A kept row goes through the float SIMD row of KL distillation (kl_row,
 * the teacher at temperature 1).  A confident row (max P > KDI_SW_CONFIDENT:
 * P and Q near one-hot on the same class, KL tiny) is computed in double
 * as KL distillation's double row (kl_distill.c): KL = sum of p w - (p - q)
 * >= 0, w = log p - log q, and Q - P = -q expm1(w); in float the gradient
 * at the argmax is a difference of two numbers near 1. */
#include <math.h>

#include "losses/loss_internal.h"

#define KDI_SW_CONFIDENT 0.99 /* as KDI_CONFIDENT_LOSS: p > 0.99 */

/* the row in double; g (NULL: the divergence alone) = cs (Q - P) */
static double sw_double_row(const kd_loss *h, const float *s, const float *t, int32_t k, float cs,
                            float *g)
{
    const int64_t c = h->c;
    const double inv_t = 1.0 / h->temperature;
    const float ms = h->ops->row_max(s, c), mt = t[k]; /* k: the teacher's argmax */
    double ss = 0.0, st = 0.0; /* in double: a float sum rounds 1 + a small rest */
    for (int64_t j = 0; j < c; j++) {
        ss += exp(((double)s[j] - ms) * inv_t);
        st += exp((double)t[j] - mt);
    }
    const double lss = log(ss), lst = log(st);
    double d = 0.0;
    for (int64_t j = 0; j < c; j++) {
        const double lq = ((double)s[j] - ms) * inv_t - lss, lp = ((double)t[j] - mt) - lst;
        const kdi_kl_pq x = kdi_kl_pq_of(lp, lq, lp - lq);
        d += kdi_kl_term(x, lp - lq); /* 0 log 0 = 0, as F.kl_div */
        if (g)                        /* the only pass: s_j is read before g_j is written */
            g[j] = (float)(cs * -x.pq);
    }
    return d;
}

void kdi_strong_weak_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int64_t c = h->c;
    /* the student row is prefetched during the teacher's scan when the last
     * row was kept (a masked row does not read it) */
    const kdi_confident cf =
        kdi_threshold_row(h, r->t, r->work, r->nthr, !r->pipe || r->pipe->kept ? r->s : NULL);
    if (r->pipe)
        r->pipe->kept = cf.keep;
    if (r->mask)
        *r->mask = cf.keep ? 1.0f : 0.0f;
    if (r->label)
        *r->label = cf.label;
    terms[0] = terms[1] = 0.0;
    float *g = r->g;
    if (!cf.keep) {
        if (g)
            for (int64_t j = 0; j < c; j++)
                g[j] = 0.0f;
        return;
    }
    const float inv_t = (float)(1.0 / h->temperature);
    const float cs = (float)r->c_soft * inv_t;
    double d;
    /* max P = 1 / sum exp(t - max) = exp(-logsum) */
    if (cf.l.logsum < (float)-log(KDI_SW_CONFIDENT)) {
        d = sw_double_row(h, r->s, r->t, cf.label, cs, g);
    } else {
        const kdi_simd_label none = {0};
        double ce;
        h->ops->kl_row(r->s, r->t, g, c, inv_t, 1.0f, cs, &none, r->work, r->nthr, r->pipe, &d,
                       &ce);
        /* the float pass overflows (+Inf) where the student row spans more
         * than FLT_MAX: the value again in double while the row is there */
        if (d == INFINITY && g != r->s && isfinite(h->ops->row_max(r->s, c)))
            d = sw_double_row(h, r->s, r->t, cf.label, cs, NULL);
    }
    terms[0] = d < 0.0 ? 0.0 : d; /* last guard (keeps NaN) */
}
