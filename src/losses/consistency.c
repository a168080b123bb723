/* Pi-model consistency (tllib ConsistencyLoss):  l = D(p1, p2) with p1 from
 * the student rows and p2 from the second input, both logits (p = softmax) or
 * probabilities.  Gradients with respect to the probabilities:
 *   L2  D = sum (p1 - p2)^2                 dD/dp1 = 2 (p1 - p2),  dD/dp2 = -dD/dp1
 *   KL  D = sum p2 (log p2 - log p1)        dD/dp1 = -p2 / p1,     dD/dp2 = log p2 - log p1 + 1
 *   JS  D = (KL(p1||M) + KL(p2||M)) / 2     dD/dpk = (log pk - log M) / 2
 * (terms with a zero probability in front of a log are 0, and so is their
 * gradient); with logits they go through the softmax:
 *   dD/ds_j = p_j (v_j - sum_k p_k v_k),  v = dD/dp,
 * whose row totals come from the loss pass, so the gradient pass is the second
 * pass over the inputs (the first computes the log-sum-exps). */
#include <math.h>

#include "losses/loss_internal.h"

typedef struct {
    const float *x1, *x2;
    int logits;
    kdi_lse l1, l2;
} cons_rows;

typedef struct {
    float p1, lp1, p2, lp2;
} cons_at;

static inline cons_at at(const cons_rows *r, int64_t j)
{
    cons_at a;
    if (r->logits) {
        a.lp1 = kdi_log_softmax(r->x1[j], 1.0f, r->l1);
        a.lp2 = kdi_log_softmax(r->x2[j], 1.0f, r->l2);
        a.p1 = expf(a.lp1);
        a.p2 = expf(a.lp2);
    } else {
        a.p1 = r->x1[j];
        a.p2 = r->x2[j];
        a.lp1 = logf(a.p1);
        a.lp2 = logf(a.p2);
    }
    return a;
}

#define LOG_HALF (-0.69314718055994531f)

void kdi_consistency_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int64_t c = h->c;
    const int logits = h->input_type == KD_INPUT_LOGITS;
    /* logits (every distance) and L2 of probabilities: the SIMD row
     * (cons_row, simd.h); KL and JS of probabilities need a log per element
     * and keep the scalar row below */
    if (logits || h->distance == KD_DISTANCE_L2) {
        terms[0] = h->ops->cons_row(r->s, r->t, c, logits, h->distance, (float)r->c_soft, r->g,
                                    r->g2, r->work);
        terms[1] = 0.0;
        return;
    }
    cons_rows rw = {r->s, r->t, h->input_type == KD_INPUT_LOGITS, {0, 0}, {0, 0}};
    if (rw.logits) {
        rw.l1 = kdi_row_lse_ops(h->ops, r->s, c, 1.0f);
        rw.l2 = kdi_row_lse_ops(h->ops, r->t, c, 1.0f);
    }
    const int dist = h->distance;
    /* d: the distance; a1, a2: sum_k p_k v_k of each input (the softmax
     * backward's row totals); for KL a2 is sum p2 */
    double d = 0.0, a1 = 0.0, a2 = 0.0, d1 = 0.0, d2 = 0.0;
    for (int64_t j = 0; j < c; j++) {
        cons_at a = at(&rw, j);
        if (dist == KD_DISTANCE_L2) {
            float diff = a.p1 - a.p2;
            d += (double)diff * diff;
            a1 += 2.0 * (double)a.p1 * diff;
            a2 -= 2.0 * (double)a.p2 * diff;
        } else if (dist == KD_DISTANCE_KL) {
            if (a.p2 != 0.0f)
                d += (double)a.p2 * (a.lp2 - a.lp1);
            a2 += a.p2;
        } else {
            float lm = kdi_log_mix(LOG_HALF, a.lp1, LOG_HALF, a.lp2);
            if (a.p1 != 0.0f)
                d1 += (double)a.p1 * (a.lp1 - lm);
            if (a.p2 != 0.0f)
                d2 += (double)a.p2 * (a.lp2 - lm);
        }
    }
    if (dist == KD_DISTANCE_JS) {
        d = 0.5 * (d1 + d2);
        a1 = 0.5 * d1;
        a2 = 0.5 * d2;
    }
    terms[0] = d;
    terms[1] = 0.0;
    float *g1 = r->g, *g2 = r->g2;
    if (!g1 && !g2)
        return;
    const float cs = (float)r->c_soft;
    const float t1 = (float)a1, t2 = (float)a2, fd = (float)d;
    for (int64_t j = 0; j < c; j++) {
        cons_at a = at(&rw, j); /* reads both inputs before either gradient is written */
        float v1, v2;           /* dD/dp1_j, dD/dp2_j */
        if (dist == KD_DISTANCE_L2) {
            v1 = 2.0f * (a.p1 - a.p2);
            v2 = -v1;
        } else if (dist == KD_DISTANCE_KL) {
            v1 = a.p2 != 0.0f ? -a.p2 / a.p1 : 0.0f;
            v2 = a.p2 != 0.0f ? a.lp2 - a.lp1 + 1.0f : 0.0f;
        } else {
            float lm = kdi_log_mix(LOG_HALF, a.lp1, LOG_HALF, a.lp2);
            v1 = a.p1 != 0.0f ? 0.5f * (a.lp1 - lm) : 0.0f;
            v2 = a.p2 != 0.0f ? 0.5f * (a.lp2 - lm) : 0.0f;
        }
        float o1 = v1, o2 = v2;
        if (rw.logits) {
            if (dist == KD_DISTANCE_KL) {
                o1 = a.p1 * t2 - a.p2; /* p1 v1 = -p2 exactly, also where p1 underflows */
                o2 = a.p2 != 0.0f ? a.p2 * ((a.lp2 - a.lp1) - fd + (1.0f - t2)) : 0.0f;
            } else {
                o1 = a.p1 != 0.0f ? a.p1 * (v1 - t1) : 0.0f;
                o2 = a.p2 != 0.0f ? a.p2 * (v2 - t2) : 0.0f;
            }
        }
        if (g1)
            g1[j] = cs * o1;
        if (g2)
            g2[j] = cs * o2;
    }
}
