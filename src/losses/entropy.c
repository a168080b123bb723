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
 * The sums are in double, over float terms (double terms for a confident
 * row, see entropy_sums); 0 log 0 = 0 (a class whose e^{z_j} underflows
 * contributes nothing, where PyTorch's p * log_softmax gives 0 * -Inf = NaN
 * for a -Inf logit).  A NaN or +Inf logit gives NaN, as in PyTorch. */
#include "losses/loss_internal.h"

#define KDI_ENTROPY_CONFIDENT 0.0101 /* rest below it: max p = 1 / (1 + rest) > 0.99 */

/* The sums of the row's non-argmax classes: rest = sum e^z, az = sum e^z z,
 * e[j] = e^{z_j} as float (0 at k).  Float z and expf (wide): each term's
 * relative error is the absolute error of its z, about 6e-8 |z|, harmless
 * unless the row is confident (H tiny, made of terms with z ~ -60); double
 * otherwise.  The sums are of terms of one sign: no cancellation. */
static void entropy_sums(const float *s, int64_t c, int64_t k, double m, double inv_t, int wide,
                         float *e, double *rest, double *az)
{
    double r = 0.0, a = 0.0;
    if (!wide) {
        const float fm = (float)m, fi = (float)inv_t;
        for (int64_t j = 0; j < c; j++) {
            const float z = (s[j] - fm) * fi;
            e[j] = expf(z);
            r += e[j];
            a += e[j] != 0.0f ? (double)(e[j] * z) : 0.0; /* 0 log 0 = 0 */
        }
        r -= e[k]; /* the argmax: e = 1, z = 0 */
        e[k] = 0.0f;
    } else {
        for (int64_t j = 0; j < c; j++) {
            const double z = ((double)s[j] - m) * inv_t;
            const double ez = j == k ? 0.0 : exp(z);
            e[j] = (float)ez;
            r += ez;
            a += ez != 0.0 ? ez * z : 0.0;
        }
    }
    *rest = r;
    *az = a;
}

void kdi_entropy_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int64_t c = h->c;
    const float *s = r->s;
    float *e = r->work; /* e^{z_j} of this row as float, kept for the gradient pass */
    const int64_t k = h->ops->row_argmax(s, c);
    const double m = s[k], inv_t = 1.0 / h->temperature;
    double rest, az;
    entropy_sums(s, c, k, m, inv_t, 0, e, &rest, &az);
    if (rest < KDI_ENTROPY_CONFIDENT) /* max p > 0.99: again in double */
        entropy_sums(s, c, k, m, inv_t, 1, e, &rest, &az);
    const int bad = m != m || m == INFINITY; /* NaN, +Inf: NaN as PyTorch */
    if (bad)
        rest = az = NAN;
    const double inv_z = 1.0 / (1.0 + rest), a = az * inv_z;
    terms[0] = log1p(rest) - a;
    terms[1] = 0.0;
    if (!r->g)
        return;
    const double cs = r->c_soft * inv_t;
    const float fc = (float)(cs * inv_z), fm = (float)m, fi = (float)inv_t, fa = (float)a;
    /* g may equal s: s_j is read before g_j is written, and s_k is kept in m;
     * a - z_j in float: g_j is written as float, and e_j carries the size */
    for (int64_t j = 0; j < c; j++) {
        const float z = (s[j] - fm) * fi;
        r->g[j] = bad ? NAN : e[j] == 0.0f ? 0.0f : fc * e[j] * (fa - z);
    }
    r->g[k] = (float)(cs * inv_z * a);
}
