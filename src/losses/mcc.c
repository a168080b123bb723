/* Minimum class confusion (tllib MinimumClassConfusionLoss), a batch loss.
 *   P = softmax(z / T),  e_i = 1 + exp(-H_i),  H_i = -sum_c P_ic log(P_ic + 1e-5)
 *   w_i = n e_i / S,  S = sum_j e_j            (constants: no gradient)
 *   A = (w o P)^T P,  r_k = sum_m A_km,  L = (1/C) sum_k sum_{j != k} A_jk / r_k
 * (tllib's A / A.sum(dim=1) divides column k by row sum k; a class with
 * r_k = 0 contributes 0 and no gradient instead of tllib's NaN).
 * Gradient, with u_k = (1/C) sum_{j != k} A_jk / r_k^2 (from r's dependence on A):
 *   dL/dA_ab = G_ab = [a != b] / (C r_b) - u_a
 *   dL/dP    = diag(w) P (G + G^T)           (A is bilinear in P)
 *   dL/dz_ij = (1/T) P_ij (D_ij - sum_k P_ik D_ik),  D = dL/dP
 * Statistics (additive over rows, so sums over ranks give the global
 * batch's): Ahat = sum_i e_i P_i^T P_i, S and the row count N; the finish
 * scales A = (N / S) Ahat as tllib's weights do.  Row i's gradient needs only
 * its own P_i, e_i and the global G, N, S. */
#include <cblas.h>
#include <math.h>

#include "losses/loss_internal.h"

void kdi_mcc_rows(const kd_loss *h, kdi_batch *b)
{
    const int64_t n = b->n, c = h->c;
    const float inv_t = (float)(1.0 / h->temperature);
    KDI_PARALLEL_FOR(b->nthreads, i, n, {
        const float *z = h->student + i * h->ld_student;
        float *p = b->probs + i * c, *wp = b->work + i * c;
        const kdi_lse l = kdi_row_lse(z, c, inv_t);
        double ent = 0.0;
        for (int64_t j = 0; j < c; j++) {
            p[j] = expf(kdi_log_softmax(z[j], inv_t, l));
            ent -= (double)p[j] * log((double)p[j] + 1e-5);
        }
        const double e = 1.0 + exp(-ent);
        for (int64_t j = 0; j < c; j++)
            wp[j] = (float)e * p[j];
        b->lse[i] = l;
        b->ew[i] = e;
    });
}

/* out = [Ahat (C x C, row-major), S, n]; Ahat in float32 from cblas_sgemm,
 * widened to double so that the sum over ranks adds no float rounding. */
void kdi_mcc_stats(const kd_loss *h, kdi_batch *b, double *out)
{
    const int64_t n = b->n, c = h->c;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += b->ew[i];
    if (n > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c, (int)c, (int)n, 1.0f, b->work,
                    (int)c, b->probs, (int)c, 0.0f, b->mat, (int)c);
    else
        for (int64_t k = 0; k < c * c; k++)
            b->mat[k] = 0.0f;
    for (int64_t k = 0; k < c * c; k++)
        out[k] = b->mat[k];
    out[c * c] = s;
    out[c * c + 1] = (double)n;
}

void kdi_mcc_finish(const kd_loss *h, kdi_batch *b, const double *stats, double *loss)
{
    const int64_t c = h->c;
    const double scale = b->count / stats[c * c];
    float *a = b->mat;
    double *r = b->rsum, *u = b->rsum + c;
    for (int64_t k = 0; k < c * c; k++)
        a[k] = (float)(scale * stats[k]);
    for (int64_t k = 0; k < c; k++) {
        double rk = 0.0;
        for (int64_t m = 0; m < c; m++)
            rk += a[k * c + m];
        r[k] = rk;
    }
    double total = 0.0;
    for (int64_t k = 0; k < c; k++) {
        double off = 0.0; /* sum_{j != k} A_jk, summed directly: no sum - trace cancellation */
        for (int64_t j = 0; j < c; j++)
            off += j == k ? 0.0 : a[j * c + k];
        const double inv_r = r[k] != 0.0 ? 1.0 / r[k] : 0.0; /* zero-mass class: 0 */
        total += off * inv_r;
        u[k] = off * inv_r * inv_r / (double)c;
        r[k] = inv_r; /* r now holds 1 / r */
    }
    *loss = total / (double)c;
    /* A is no longer needed: overwrite it with G + G^T */
    const double inv_c = 1.0 / (double)c;
    for (int64_t x = 0; x < c; x++)
        for (int64_t y = 0; y < c; y++)
            a[x * c + y] = (float)((x != y ? inv_c * (r[y] + r[x]) : 0.0) - u[x] - u[y]);
    b->coef[0] = scale;
}

void kdi_mcc_grad(const kd_loss *h, kdi_batch *b, float up)
{
    const int64_t n = b->n, c = h->c;
    const float inv_t = (float)(1.0 / h->temperature);
    /* D / w = P (G + G^T) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)c, (int)c, 1.0f, b->probs,
                (int)c, b->mat, (int)c, 0.0f, b->work, (int)c);
    const double scale = b->coef[0];
    KDI_PARALLEL_FOR(b->nthreads, i, n, {
        const float coef = (float)(up * inv_t * scale * b->ew[i]);
        kdi_softmax_backward(h->grad + i * h->ld_grad, h->student + i * h->ld_student, b->lse[i],
                             inv_t, b->work + i * c, coef, c);
    });
}
