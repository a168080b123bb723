/* Soft-target cross-entropy  l = -sum_j q_j log softmax(s)_j, with q from
 * labels (smoothed one-hot), given probabilities, teacher logits at
 * temperature T, or a mix w * onehot + (1 - w) * q_src.
 * Gradient: d l / d s_j = softmax(s)_j * sum(q) - q_j (sum(q) = 1 unless the
 * given probabilities do not sum to 1, as PyTorch computes it).
 * The row pass itself is the SIMD kernel ce_row (src/kernels/simd_rows.h; rows of
 * at most small_c classes: ce_small in simd_short.h). */
#include <math.h>

#include "kernels/rowops.h"
#include "kernels/simd.h"
#include "losses/loss_internal.h"

void kdi_cross_entropy_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int32_t y = r->y;
    const int src_kind = r->q ? 1 : (r->t ? 2 : 0);
    /* q = lab_w * smoothed onehot(y) + src_w * q_src */
    const float lab_w = y >= 0 ? (src_kind ? (float)h->label_weight : 1.0f) : 0.0f;
    const float src_w = src_kind ? (y >= 0 ? 1.0f - (float)h->label_weight : 1.0f) : 0.0f;
    const kdi_onehot oh = kdi_smoothed_onehot(h);
    kdi_simd_label lab = {y >= 0, y, lab_w * oh.on, lab_w * oh.off, 0.0f};
    terms[0] = h->ops->ce_row(r->s, r->q ? r->q : r->t, src_kind, r->g, h->c,
                              (float)(1.0 / h->temperature), src_w, &lab, lab_w, (float)r->c_soft,
                              r->work, r->nthr, r->pipe);
    terms[1] = 0.0;
    if (terms[0] < KDI_CONFIDENT_LOSS)
        kdi_ce_confident_fix(h, r->q ? r->q : r->t, r->g, y, lab_w);
}

void kdi_ce_confident_fix(const kd_loss *h, const float *src, float *g, int32_t y, float lab_w)
{
    const int64_t c = h->c;
    const int64_t k = y >= 0 && lab_w >= 0.5f ? y : src ? h->ops->row_argmax(src, c) : -1;
    if (k < 0)
        return;
    if (g) { /* g_k = -sum_{j != k} g_j */
        double rest = 0.0;
        for (int64_t j = 0; j < c; j++)
            rest += j == k ? 0.0 : (double)g[j];
        g[k] = (float)-rest;
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
