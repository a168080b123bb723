/* Logit matching  l = mean_j (s_j - t_j)^2  (PyTorch MSELoss), gradient
 * 2 (s_j - t_j) / C, plus the optional hard-label cross-entropy term. */
#include "kernels/rowops.h"
#include "losses/loss_internal.h"

void kdi_logit_mse_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int64_t c = h->c;
    const kdi_hard hd = kdi_hard_begin(h, r);
    const float k = (float)(2.0 * r->c_soft / (double)c);
    double sq = 0.0, ce = 0.0;
    for (int64_t j = 0; j < c; j++) {
        float sj = r->s[j], diff = sj - r->t[j];
        sq += (double)diff * diff;
        if (hd.active)
            ce += kdi_hard_loss_at(&hd, sj, j);
        if (r->g)
            r->g[j] = k * diff + (hd.active ? kdi_hard_grad_at(&hd, sj, j) : 0.0f);
    }
    terms[0] = sq / (double)c;
    terms[1] = ce;
}
