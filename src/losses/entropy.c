/* Entropy minimisation (Grandvalet & Bengio 2005; tllib's entropy()):
 *   z_j = (s_j - max s) / T,  rest = sum_{j != k} e^{z_j}  (k = first argmax),
 *   p_j = e^{z_j} / (1 + rest),  lse = log1p(rest),  log p_j = z_j - lse,
 *   H = -sum_j p_j log p_j = lse - A,  A = sum_{j != k} p_j z_j  (<= 0).
 * Both parts of H are >= 0, so a confident row (rest tiny, H ~ rest) keeps
 * its relative accuracy: nothing near 1 is subtracted.
 * Gradient: dH/dz_j = -p_j (log p_j + 1) + p_j sum_i p_i (log p_i + 1)
 *                  = -p_j (log p_j + H) = -p_j (z_j - A)   (lse cancels),
 * and dz_j/ds_j = 1/T, so  g_j = c_soft (1/T) p_j (A - z_j);  at the argmax
 * (z_k = 0) g_k = c_soft (1/T) p_k A, again without cancellation.
 * The row runs in double; 0 log 0 = 0 (a class whose e^{z_j} underflows
 * contributes nothing, where PyTorch's p * log_softmax gives 0 * -Inf = NaN
 * for a -Inf logit).  A NaN or +Inf logit gives NaN, as in PyTorch. */
#include "losses/loss_internal.h"

void kdi_entropy_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int64_t c = h->c;
    const float *s = r->s;
    const int64_t k = kdi_row_argmax_torch(s, c);
    const double m = s[k], inv_t = 1.0 / h->temperature;
    double rest = 0.0, az = 0.0; /* sum e^z and sum e^z z over j != k */
    for (int64_t j = 0; j < c; j++) {
        if (j == k)
            continue;
        const double z = ((double)s[j] - m) * inv_t;
        const double e = exp(z);
        rest += e;
        if (e != 0.0) /* 0 log 0 = 0 (z = -Inf or underflow) */
            az += e * z;
    }
    if (m != m || m == INFINITY) /* NaN, +Inf: NaN as PyTorch */
        rest = az = NAN;
    const double inv_z = 1.0 / (1.0 + rest), a = az * inv_z;
    terms[0] = log1p(rest) - a;
    terms[1] = 0.0;
    if (!r->g)
        return;
    const double cs = r->c_soft * inv_t;
    /* g may equal s: every s_j is read before g_j is written, and s_k (m) is kept */
    for (int64_t j = 0; j < c; j++) {
        if (j == k)
            continue;
        const double z = ((double)s[j] - m) * inv_t;
        const double p = exp(z) * inv_z;
        r->g[j] = p == 0.0 ? 0.0f : (float)(cs * p * (a - z)); /* z = -Inf: 0, not 0 * Inf */
    }
    r->g[k] = (float)(cs * inv_z * a);
}
