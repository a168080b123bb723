/* UDA strong/weak consistency (tllib StrongWeakConsistencyLoss):
 *   l = m * KL(P || Q),  P = softmax(t) (weak view, detached, temperature 1),
 *   Q = softmax(s / T) (strong view),  m = [max P > tau]
 * Gradient: d l / d s_j = m (Q_j - P_j) / T.  The MEAN denominator
 * max(sum m, 1) is counted by the driver before this kernel runs. */
#include "losses/loss_internal.h"

void kdi_strong_weak_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int64_t c = h->c;
    const kdi_confident cf = kdi_threshold_row(h, r->t, r->work, r->nthr, NULL);
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
    const kdi_lse ls = kdi_row_lse_ops(h->ops, r->s, c, inv_t);
    const float cs = (float)r->c_soft * inv_t;
    double d = 0.0;
    for (int64_t j = 0; j < c; j++) {
        float lq = kdi_log_softmax(r->s[j], inv_t, ls), lp = kdi_log_softmax(r->t[j], 1.0f, cf.l);
        float p = expf(lp);
        if (p != 0.0f) /* 0 log 0 = 0, as F.kl_div */
            d += (double)p * (lp - lq);
        if (g)
            g[j] = cs * (expf(lq) - p);
    }
    terms[0] = d;
}
