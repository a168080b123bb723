/* Soft-target cross-entropy  l = -sum_j q_j log softmax(s)_j, with q from
 * labels (smoothed one-hot), given probabilities, teacher logits at
 * temperature T, or a mix w * onehot + (1 - w) * q_src.
 * Gradient: d l / d s_j = softmax(s)_j * sum(q) - q_j (sum(q) = 1 unless the
 * given probabilities do not sum to 1, as PyTorch computes it).
 * The row pass itself is the SIMD kernel ce_row (src/kernels/simd_impl.h). */
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
    terms[0] = kdi_simd(KDI_ISA_AUTO)->ce_row(r->s, r->q ? r->q : r->t, src_kind, r->g, h->c,
                                              (float)(1.0 / h->temperature), src_w, &lab, lab_w,
                                              (float)r->c_soft, r->work, r->nthr, r->pipe);
    terms[1] = 0.0;
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

/* Describe one cross-entropy row for the short-row kernel (see ce_row). */
kdi_small_row kdi_cross_entropy_small_row(const kd_loss *h, const kdi_row *r, int src_kind,
                                          kdi_onehot oh)
{
    const int32_t y = r->y;
    const float lab_w = y >= 0 ? (src_kind ? (float)h->label_weight : 1.0f) : 0.0f;
    const float src_w = src_kind ? (y >= 0 ? 1.0f - (float)h->label_weight : 1.0f) : 0.0f;
    kdi_small_row x = {r->s, r->q ? r->q : r->t, r->g, (float)r->c_soft, src_w, lab_w,
                       {y >= 0, y, lab_w * oh.on, lab_w * oh.off, 0.0f}};
    return x;
}

/* Run the short-row kernel over count prepared rows, lanes rows per call. */
void kdi_ce_small_rows(const kdi_small_row *sr, int count, int64_t c, int src_kind, float inv_t,
                       double *loss)
{
    const kdi_simd_ops *ops = kdi_simd(KDI_ISA_AUTO);
    for (int k = 0; k < count; k += ops->lanes) {
        int m = count - k < ops->lanes ? count - k : ops->lanes;
        ops->ce_small(sr + k, m, c, src_kind, inv_t, loss + k);
    }
}

int kdi_cross_entropy_rows_small(const kd_loss *h, const kdi_row *rows, int count, double (*terms)[2])
{
    if (h->c > kdi_simd(KDI_ISA_AUTO)->small_c || count < 1)
        return 0;
    const int src_kind = rows[0].q ? 1 : (rows[0].t ? 2 : 0);
    const kdi_onehot oh = kdi_smoothed_onehot(h);
    kdi_small_row sr[KDI_ROW_BLOCK];
    double loss[KDI_ROW_BLOCK];
    for (int k = 0; k < count; k++)
        sr[k] = kdi_cross_entropy_small_row(h, &rows[k], src_kind, oh);
    kdi_ce_small_rows(sr, count, h->c, src_kind, (float)(1.0 / h->temperature), loss);
    for (int k = 0; k < count; k++) {
        terms[k][0] = loss[k];
        terms[k][1] = 0.0;
    }
    return 1;
}
