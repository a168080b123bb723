/* UDA strong/weak consistency (tllib StrongWeakConsistencyLoss):
 *   l = m * KL(P || Q),  P = softmax(t) (weak view, detached, temperature 1),
 *   Q = softmax(s / T) (strong view),  m = [max P > tau]
 * Gradient: d l / d s_j = m (Q_j - P_j) / T.  The MEAN denominator
 * max(sum m, 1) is counted by the driver before this kernel runs.
 * The row is computed in double as KL distillation's double row
 * (kl_distill.c): KL = sum of p w - (p - q) >= 0, w = log p - log q, and
 * Q - P = -q expm1(w), so that a confident row (P and Q near one-hot on the
 * same class, KL tiny) keeps its accuracy: in float the gradient at the
 * argmax was a difference of two numbers near 1. */
#include <math.h>

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
    const double inv_t = 1.0 / h->temperature;
    const float *s = r->s, *t = r->t;
    const float ms = h->ops->row_max(s, c), mt = t[cf.label]; /* the teacher's max */
    double ss = 0.0, st = 0.0; /* in double: cf.sum rounds 1 + a small rest */
    for (int64_t j = 0; j < c; j++) {
        ss += exp(((double)s[j] - ms) * inv_t);
        st += exp((double)t[j] - mt);
    }
    const double lss = log(ss), lst = log(st);
    const float cs = (float)r->c_soft * (float)inv_t;
    double d = 0.0;
    for (int64_t j = 0; j < c; j++) {
        const double lq = ((double)s[j] - ms) * inv_t - lss, lp = ((double)t[j] - mt) - lst;
        const kdi_kl_pq x = kdi_kl_pq_of(lp, lq, lp - lq);
        d += kdi_kl_term(x, lp - lq); /* 0 log 0 = 0, as F.kl_div */
        if (g)
            g[j] = (float)(cs * -x.pq);
    }
    terms[0] = d < 0.0 ? 0.0 : d; /* last guard (keeps NaN) */
}
