/* Logit matching  l = mean_j (s_j - t_j)^2  (PyTorch MSELoss), gradient
 * 2 (s_j - t_j) / C, plus the optional hard-label cross-entropy term. */
#include "kernels/rowops.h"
#include "kernels/simd.h"
#include "losses/loss_internal.h"

void kdi_logit_mse_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const kdi_onehot oh = kdi_smoothed_onehot(h);
    kdi_simd_label lab = {r->y >= 0, r->y, oh.on, oh.off, (float)r->c_hard};
    double sq = 0.0;
    const double inv_c = 1.0 / (double)h->c; /* as the short rows (kdi_small_plan_of) */
    h->ops->mse_row(r->s, r->t, r->g, h->c, (float)(r->c_soft * (2.0 * inv_c)), &lab, r->work,
                    r->nthr, r->pipe, &sq, &terms[1]);
    terms[0] = sq * inv_c;
}
