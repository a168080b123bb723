/* The short-row path of the driver (execute.c): for KL distillation
 * (forward KL), cross-entropy, logit matching and pseudo-label with at most
 * small_c classes
 * the driver describes each row directly as a kdi_small_row
 * (kdi_small_row_of, loss_internal.h) and hands blocks of them to the
 * one-row-per-lane kernels (kdi_simd_ops *_small), `lanes` rows per call. */
#include "kernels/simd.h"
#include "losses/loss_internal.h"

int kdi_small_plan_of(const kd_loss *h, kdi_small_plan *p)
{
    p->kind = KDI_SMALL_NONE;
    const kdi_simd_ops *ops = h->ops;
    if (h->n_teachers > 1 || h->c > ops->small_c)
        return 0;
    p->c = h->c;
    p->inv_c = 1.0 / (double)h->c;
    p->mse_k = 2.0 * p->inv_c;
    p->inv_t = (float)(1.0 / h->temperature);
    p->oh = kdi_smoothed_onehot(h);
    p->src_kind = 0;
    switch (h->kd->small) {
    case KDI_SMALL_KL:
        /* forward KL (JSD at beta = 0 is forward KL too) at the temperatures
         * of the float kernels (kdi_kl_fast) */
        if (!kdi_kl_fast(h))
            return 0;
        p->f = h->t2_scaling ? (float)(h->temperature * h->temperature) : 1.0f;
        break;
    case KDI_SMALL_CE:
        p->src_kind = h->target ? 1 : (h->n_teachers ? 2 : 0);
        p->label_weight = (float)h->label_weight;
        break;
    case KDI_SMALL_MSE:
        if (h->c > ops->mse_small_c)
            return 0;
        break;
    case KDI_SMALL_PL:
        break;
    default:
        return 0;
    }
    p->kind = h->kd->small;
    return 1;
}

/* The family's kernel over blocks of `lanes` rows. */
static void small_kernels(const kd_loss *h, const kdi_small_plan *p, const kdi_small_row *sr,
                          int count, double *a, double *b, int32_t *label, int *keep)
{
    const kdi_simd_ops *ops = h->ops;
    for (int k = 0; k < count; k += ops->lanes) {
        const int m = count - k < ops->lanes ? count - k : ops->lanes;
        if (p->kind == KDI_SMALL_KL)
            ops->kl_small(sr + k, m, h->c, p->inv_t, a + k, b + k);
        else if (p->kind == KDI_SMALL_CE)
            ops->ce_small(sr + k, m, h->c, p->src_kind, p->inv_t, a + k);
        else
            ops->pl_small(sr + k, m, h->c, h->class_thresholds, (float)h->threshold,
                          h->threshold_mode == KD_THRESHOLD_INCLUSIVE, a + k, label + k, keep + k);
    }
}

/* Confident CE and pseudo-label rows (kdi_ce_confident_fix). */
static void small_confident_rows(const kd_loss *h, const kdi_small_plan *p, const kdi_small_row *sr,
                                 int count, const double *a, const int32_t *label, const int *keep)
{
    const int pl = p->kind == KDI_SMALL_PL;
    for (int k = 0; k < count; k++) {
        if (!(a[k] < KDI_CONFIDENT_LOSS) || (pl && !keep[k]))
            continue;
        const int32_t y = pl ? label[k] : sr[k].lab.active ? sr[k].lab.y : -1;
        kdi_ce_confident_fix(h, pl ? NULL : sr[k].t, sr[k].g, y, pl ? 1.0f : sr[k].lab_sum);
    }
}

void kdi_small_run(const kd_loss *h, const kdi_small_plan *p, const kdi_small_row *sr, int count,
                   double (*terms)[2], const int64_t *idx, float *mask_out, int32_t *labels_out)
{
    double a[KDI_ROW_BLOCK], b[KDI_ROW_BLOCK];
    if (p->kind == KDI_SMALL_MSE) { /* the kernel and its terms alone: no per-row kind tests */
        const kdi_simd_ops *ops = h->ops;
        for (int k = 0; k < count; k += ops->lanes)
            ops->mse_small(sr + k, count - k < ops->lanes ? count - k : ops->lanes, h->c, a + k,
                           b + k);
        for (int k = 0; k < count; k++) {
            terms[k][0] = a[k] * p->inv_c;
            terms[k][1] = b[k];
        }
        return;
    }
    int32_t label[KDI_ROW_BLOCK];
    int keep[KDI_ROW_BLOCK];
    small_kernels(h, p, sr, count, a, b, label, keep);
    if (p->kind == KDI_SMALL_CE || p->kind == KDI_SMALL_PL)
        small_confident_rows(h, p, sr, count, a, label, keep);
    const int kl = p->kind == KDI_SMALL_KL;
    for (int k = 0; k < count; k++) {
        terms[k][0] = kl ? p->f * kdi_kl_fix(h, sr[k].s, sr[k].t, sr[k].g, a[k]) : a[k];
        terms[k][1] = kl ? b[k] : 0.0;
    }
    if (p->kind != KDI_SMALL_PL)
        return;
    for (int k = 0; mask_out && k < count; k++)
        mask_out[idx[k]] = keep[k] ? 1.0f : 0.0f;
    for (int k = 0; labels_out && k < count; k++)
        labels_out[idx[k]] = label[k];
}
