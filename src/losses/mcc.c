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
 * G + G^T = a 1^T + 1 a^T - 2 diag(b) with b_k = 1 / (C r_k) and
 * a_k = b_k - u_k = (r_k - sum_{j != k} A_jk) / (C r_k^2), so with the rows of
 * P summing to 1, D_ij / w_i = s_i + a_j - 2 P_ij b_j (s_i = sum_k P_ik a_k)
 * and the gradient needs no second C x C product:
 *   dL/dz_ij = (w_i / T) P_ij (a_j - s_i + 2 q_i - 2 P_ij b_j),
 *   q_i = sum_k P_ik^2 b_k.
 * a and b are kept in double: for a class of tiny mass, 1 / r_k does not fit
 * in float (while every P_ij b_j <= 1 / (C w_i) does), which made the
 * float G + G^T overflow and the gradient NaN where the loss is finite.
 * Statistics (additive over rows, so sums over ranks give the global
 * batch's): Ahat = sum_i e_i P_i^T P_i, S and the row count N; the finish
 * scales A = (N / S) Ahat as tllib's weights do.  Row i's gradient needs only
 * its own P_i, e_i and the global a, b, N, S. */
#include <cblas.h>
#include <math.h>
#include <omp.h>

#include "core/parallel.h"
#include "losses/loss_internal.h"

typedef double kd2 __attribute__((vector_size(16)));

/* -sum_j p_j lg_j in two chains of two lanes of doubles (a fixed order) */
static double entropy(const float *p, const float *lg, int64_t c)
{
    kd2 a0 = {0, 0}, a1 = {0, 0};
    int64_t j = 0;
    for (; j + 4 <= c; j += 4) {
        a0 += (kd2){p[j], p[j + 1]} * (kd2){lg[j], lg[j + 1]};
        a1 += (kd2){p[j + 2], p[j + 3]} * (kd2){lg[j + 2], lg[j + 3]};
    }
    a0 += a1;
    double s = a0[0] + a0[1];
    for (; j < c; j++)
        s += (double)p[j] * lg[j];
    return -s;
}

void kdi_mcc_rows(const kd_loss *h, kdi_batch *b)
{
    const int64_t n = b->n, c = h->c;
    const float inv_t = (float)(1.0 / h->temperature);
    KDI_PARALLEL_FOR(b->nthreads, i, n, {
        const float *z = h->student + i * h->ld_student;
        float *p = b->probs + i * c, *wp = b->work + i * c;
        /* d = inv_t (z - max) (exact differences near the max, no overflow),
         * then P = softmax(d) */
        float *work = kdi_batch_scratch(b, omp_get_thread_num()), *d = work + KDI_SIMD_WORK(c);
        const float mx = h->ops->row_max(z, c);
        for (int64_t j = 0; j < c; j++)
            d[j] = inv_t * (z[j] - mx);
        kdi_batch_softmax(d, p, c, work);
        for (int64_t j = 0; j < c; j++) /* wp: a row of scratch until X is written */
            wp[j] = logf(p[j] + 1e-5f);
        const double e = 1.0 + exp(-entropy(p, wp, c));
        const float se = (float)sqrt(e); /* X = sqrt(e) o P: X^T X = (e o P)^T P */
        for (int64_t j = 0; j < c; j++)
            wp[j] = se * p[j];
        b->ew[i] = e;
    });
}

/* out = [Ahat (C x C, row-major), S, n].  Ahat = X^T X with X = sqrt(e) o P
 * (e_i >= 1), one triangle by cblas_ssyrk (half the products of a general
 * sgemm), mirrored and widened to double so that the sum over ranks adds no
 * float rounding; exactly symmetric. */
#define TILE 64
void kdi_mcc_stats(const kd_loss *h, kdi_batch *b, double *out)
{
    const int64_t n = b->n, c = h->c;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += b->ew[i];
    if (n > 0)
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)c, (int)n, 1.0f, b->work, (int)c,
                    0.0f, b->mat, (int)c);
    /* out[x][y] = out[y][x] = mat[x][y] (x <= y), tile by tile */
    for (int64_t x0 = 0; x0 < c; x0 += TILE)
        for (int64_t y0 = x0; y0 < c; y0 += TILE) {
            const int64_t x1 = x0 + TILE < c ? x0 + TILE : c, y1 = y0 + TILE < c ? y0 + TILE : c;
            for (int64_t x = x0; x < x1; x++)
                for (int64_t y = y0 > x ? y0 : x; y < y1; y++) {
                    const double v = n > 0 ? (double)b->mat[x * c + y] : 0.0;
                    out[x * c + y] = v;
                    out[y * c + x] = v;
                }
        }
    out[c * c] = s;
    out[c * c + 1] = (double)n;
}

void kdi_mcc_finish(const kd_loss *h, kdi_batch *b, const double *stats, double *loss)
{
    const int64_t c = h->c;
    const double scale = b->count / stats[c * c], inv_c = 1.0 / (double)c;
    double *ra = b->rsum, *cb = b->rsum + c; /* row sums r, then a; column sums, then b */
    for (int64_t k = 0; k < c; k++)
        cb[k] = 0.0;
    /* one row-major pass over Ahat: row sums, and column sums without the
     * diagonal (r_x = scale sum_m Ahat_xm, off_k = scale sum_{j != k} Ahat_jk) */
    for (int64_t x = 0; x < c; x++) {
        const double *row = stats + x * c;
        kd2 acc[2] = {{0, 0}, {0, 0}};
        int64_t k = 0;
        for (; k + 4 <= c; k += 4) {
            acc[0] += (kd2){row[k], row[k + 1]};
            acc[1] += (kd2){row[k + 2], row[k + 3]};
        }
        acc[0] += acc[1];
        double rx = acc[0][0] + acc[0][1];
        for (; k < c; k++)
            rx += row[k];
        for (k = 0; k < x; k++)
            cb[k] += row[k];
        for (k = x + 1; k < c; k++)
            cb[k] += row[k];
        ra[x] = scale * rx;
    }
    for (int64_t k = 0; k < c; k++)
        cb[k] *= scale;
    double total = 0.0;
    for (int64_t k = 0; k < c; k++) {
        const double r = ra[k], off = cb[k];
        const double inv_r = r != 0.0 ? 1.0 / r : 0.0; /* zero-mass class: 0 */
        total += off * inv_r;
        /* r - off = A_kk + sum_{m != k} (A_km - A_mk): in double its error is
         * ~1e-16 r, i.e. ~1e-16 b_k in a_k */
        ra[k] = (r - off) * inv_r * inv_r * inv_c;
        cb[k] = inv_r * inv_c;
    }
    *loss = total * inv_c;
    b->coef[0] = scale;
}

/* s = sum_k p_k a_k and q = sum_k p_k^2 b_k of one row, in two lanes of
 * doubles (a fixed order: the same bits for every thread count) */

static void row_sums(const float *p, const double *a, const double *bb, int64_t c, double *s,
                     double *q)
{
    kd2 vs = {0, 0}, vq = {0, 0};
    int64_t j = 0;
    for (; j + 2 <= c; j += 2) {
        const kd2 pj = {p[j], p[j + 1]};
        vs += pj * (kd2){a[j], a[j + 1]};
        vq += pj * (pj * (kd2){bb[j], bb[j + 1]});
    }
    double ss = vs[0] + vs[1], qq = vq[0] + vq[1];
    if (j < c) {
        ss += (double)p[j] * a[j];
        qq += (double)p[j] * ((double)p[j] * bb[j]);
    }
    *s = ss;
    *q = qq;
}

void kdi_mcc_grad(const kd_loss *h, kdi_batch *b, float up)
{
    const int64_t n = b->n, c = h->c;
    const double inv_t = 1.0 / h->temperature, scale = b->coef[0];
    const double *a = b->rsum, *bb = b->rsum + c;
    KDI_PARALLEL_FOR(b->nthreads, i, n, {
        const float *p = b->probs + i * c;
        float *g = h->grad + i * h->ld_grad;
        double s, q;
        row_sums(p, a, bb, c, &s, &q);
        const double coef = (double)up * inv_t * scale * b->ew[i], k = 2.0 * q - s;
        for (int64_t j = 0; j < c; j++) {
            const double pj = p[j];
            g[j] = (float)(coef * pj * ((a[j] + k) - 2.0 * (pj * bb[j])));
        }
    });
}
