/* Soft-target cross-entropy  l = -sum_j q_j log softmax(s)_j, with q from
 * labels (smoothed one-hot), given probabilities, teacher logits at
 * temperature T, or a mix w * onehot + (1 - w) * q_src.
 * Gradient: d l / d s_j = softmax(s)_j * sum(q) - q_j (sum(q) = 1 unless the
 * given probabilities do not sum to 1, as PyTorch computes it). */
#include <math.h>

#include "kernels/rowops.h"
#include "losses/loss_internal.h"

typedef struct {
    const float *q;    /* given probabilities, or NULL */
    const float *t;    /* teacher logits, or NULL */
    float inv_t;       /* 1 / T for the teacher */
    kdi_lse lt;        /* teacher log-sum-exp */
    float src_w;       /* weight of the soft source: 1 - label weight */
    float lab_w;       /* weight of the one-hot part */
    kdi_onehot oh;
    int32_t y;
} ce_target;

static inline float target_at(const ce_target *tg, int64_t j)
{
    float v = tg->lab_w * kdi_onehot_at(tg->oh, tg->y, j);
    if (tg->q)
        v += tg->src_w * tg->q[j];
    else if (tg->t)
        v += tg->src_w * expf(kdi_log_softmax(tg->t[j], tg->inv_t, tg->lt));
    return v;
}

void kdi_cross_entropy_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int64_t c = h->c;
    ce_target tg = {0};
    tg.q = r->q;
    tg.t = r->q ? NULL : r->t;
    tg.y = r->y;
    tg.oh = kdi_smoothed_onehot(h);
    int has_src = tg.q || tg.t;
    tg.lab_w = r->y >= 0 ? (has_src ? (float)h->label_weight : 1.0f) : 0.0f;
    tg.src_w = has_src ? (r->y >= 0 ? 1.0f - (float)h->label_weight : 1.0f) : 0.0f;
    if (tg.t) {
        tg.inv_t = (float)(1.0 / h->temperature);
        tg.lt = kdi_row_lse(tg.t, c, tg.inv_t);
    }
    kdi_lse ls = kdi_row_lse(r->s, c, 1.0f);

    double loss = 0.0, sum_q = 0.0;
    for (int64_t j = 0; j < c; j++) {
        float q = target_at(&tg, j);
        if (q != 0.0f) /* 0 * log 0 = 0, also for -Inf logits */
            loss -= (double)q * kdi_log_softmax(r->s[j], 1.0f, ls);
        sum_q += q;
    }
    terms[0] = loss;
    terms[1] = 0.0;
    if (!r->g)
        return;
    const float cs = (float)r->c_soft, sq = (float)sum_q;
    for (int64_t j = 0; j < c; j++) {
        float p = expf(kdi_log_softmax(r->s[j], 1.0f, ls));
        r->g[j] = cs * (p * sq - target_at(&tg, j));
    }
}

kdi_onehot kdi_smoothed_onehot(const kd_loss *h)
{
    kdi_onehot oh;
    float eps = (float)h->label_smoothing;
    if (h->smoothing_mode == KD_SMOOTHING_OTHERS) {
        oh.on = h->c > 1 ? 1.0f - eps : 1.0f;
        oh.off = h->c > 1 ? eps / (float)(h->c - 1) : 0.0f;
    } else {
        oh.off = eps / (float)h->c;
        oh.on = 1.0f - eps + oh.off;
    }
    return oh;
}
