/* FreeMatch self-adaptive fairness (USB's entropy_loss), a batch loss over
 * the selected rows (weight w_i > 0) of the student logits:
 *   p_i = softmax(s_i),  k_i = argmax p_i,
 *   P_c = sum_i w_i p_ic,  K_c = sum_i w_i [k_i = c],
 *   q_c = pm_c r_c / Z,  Z = sum_k pm_k r_k,  r_c = 1 / lh_c (0 where lh_c = 0),
 *   u_c = P_c / K_c (0 where K_c = 0),  U = sum_k u_k,  m_c = u_c / U,
 *   L = sum_c q_c log(m_c + 1e-12).
 * USB's mean(p) / hist_s is (P_c / N) (N / K_c) = u_c: the row count cancels.
 * r and 1 / K_c are detached (USB), so with a_c = q_c / (m_c + 1e-12):
 *   dL/du_k = (a_k - sum_c a_c m_c) / U,
 *   dL/dp_ik = w_i v_k,  v_k = dL/du_k / K_k (0 where K_k = 0),
 * and row i's gradient is the softmax backward of w_i v (the shared
 * kdi_batch_softmax_grad).  Statistics (additive over rows, so sums over
 * ranks give the global batch's): P, K and the row count.  The rows pass
 * keeps the softmax of each selected row; the statistics are summed in row
 * order (the same bits for every thread count). */
#include <math.h>
#include <omp.h>

#include "core/parallel.h"
#include "losses/loss_internal.h"

#define FAIR_EPS 1e-12 /* USB's log(m + 1e-12) */

static inline float weight_of(const kd_loss *h, int64_t i)
{
    return h->weights ? h->weights[i] : 1.0f;
}

void kdi_fairness_rows(const kd_loss *h, kdi_batch *b)
{
    const int64_t n = b->n, c = h->c;
    KDI_PARALLEL_FOR(b->nthreads, i, n, {
        if (weight_of(h, i) != 0.0f) /* a dropped row is not read */
            kdi_batch_softmax(h->student + i * h->ld_student, b->probs + i * c, c,
                              kdi_batch_scratch(b, omp_get_thread_num()));
    });
}

void kdi_fairness_stats(const kd_loss *h, kdi_batch *b, double *out)
{
    const int64_t n = b->n, c = h->c;
    double *sum_p = out, *hist = out + c;
    for (int64_t j = 0; j < 2 * c; j++)
        out[j] = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double w = weight_of(h, i);
        if (w == 0.0)
            continue;
        const float *p = b->probs + i * c;
        hist[kdi_row_argmax_torch(p, c)] += w;
        for (int64_t j = 0; j < c; j++)
            sum_p[j] += w * p[j];
    }
    out[2 * c] = (double)n;
}

/* r_c = 1 / lh_c, 0 where lh_c = 0 (USB replaces 1/0 = Inf by 0) */
static inline double inv_or_zero(double x) { return x != 0.0 ? 1.0 / x : 0.0; }

kd_status kdi_fairness_check_vectors(kd_loss *h, const char *fn)
{
    const int64_t c = h->c;
    if (!h->class_probs || !h->label_hist)
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: %s not bound", fn,
                        h->class_probs ? "the label histogram (KD_ARG_LABEL_HISTOGRAM)"
                                       : "the class probabilities (KD_ARG_CLASS_PROBS)");
    double z = 0.0;
    for (int64_t j = 0; j < c; j++) {
        const float pm = h->class_probs[j], lh = h->label_hist[j];
        if (!(pm >= 0.0f) || isinf(pm))
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            "%s: class_probs[%lld] = %g is not a finite value >= 0", fn,
                            (long long)j, (double)pm);
        if (!(lh >= 0.0f) || isinf(lh))
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            "%s: label_histogram[%lld] = %g is not a finite value >= 0", fn,
                            (long long)j, (double)lh);
        z += pm * inv_or_zero(lh);
    }
    if (!(z > 0.0))
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                        "%s: class_probs / label_histogram sums to 0 over the classes (no class "
                        "with both > 0): the target distribution is undefined",
                        fn);
    return KD_OK;
}

/* class j's target q_j and batch distribution m_j */
static inline void class_terms(const kd_loss *h, const double *stats, int64_t j, double inv_z,
                               double inv_u, double *q, double *m)
{
    *q = (double)h->class_probs[j] * inv_or_zero(h->label_hist[j]) * inv_z;
    *m = stats[j] * inv_or_zero(stats[h->c + j]) * inv_u;
}

kd_status kdi_fairness_finish(kd_loss *h, const char *fn, kdi_batch *b, const double *stats,
                              double *loss)
{
    const int64_t c = h->c;
    const double *sum_p = stats, *hist = stats + c;
    double selected = 0.0, u_sum = 0.0, z = 0.0;
    for (int64_t j = 0; j < c; j++) {
        if (sum_p[j] < 0.0 || hist[j] < 0.0)
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            "%s: global_stats[%lld] = %g or [%lld] = %g is negative (not a sum of "
                            "kd_loss_local_stats buffers)",
                            fn, (long long)j, sum_p[j], (long long)(c + j), hist[j]);
        selected += hist[j];
        u_sum += sum_p[j] * inv_or_zero(hist[j]);
        z += (double)h->class_probs[j] * inv_or_zero(h->label_hist[j]);
    }
    b->coef[0] = 0.0;
    *loss = 0.0;
    if (selected == 0.0) /* no selected row: USB skips the term */
        return KD_OK;
    if (u_sum == 0.0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                        "%s: the selected classes' P_c / K_c sum to 0 (not a sum of "
                        "kd_loss_local_stats buffers)",
                        fn);
    const double inv_u = 1.0 / u_sum, inv_z = 1.0 / z;
    double total = 0.0, am = 0.0;
    for (int64_t j = 0; j < c; j++) {
        double q, m;
        class_terms(h, stats, j, inv_z, inv_u, &q, &m);
        if (q != 0.0) {
            total += q * log(m + FAIR_EPS);
            am += q * m / (m + FAIR_EPS);
        }
    }
    for (int64_t j = 0; j < c; j++) {
        double q, m;
        class_terms(h, stats, j, inv_z, inv_u, &q, &m);
        const double a = q != 0.0 ? q / (m + FAIR_EPS) : 0.0;
        b->vec[j] = (float)((a - am) * inv_u * inv_or_zero(hist[j]));
    }
    *loss = total;
    b->coef[0] = 1.0;
    return KD_OK;
}

void kdi_fairness_grad(const kd_loss *h, const kdi_batch *b, float up)
{
    const int64_t n = b->n, c = h->c;
    const int any = b->coef[0] != 0.0;
    KDI_PARALLEL_FOR(b->nthreads, i, n, {
        float *g = h->grad + i * h->ld_grad;
        const float w = weight_of(h, i);
        if (any && w != 0.0f) {
            kdi_batch_softmax_grad(g, b->probs + i * c, b->vec, up * w, c);
        } else {
            for (int64_t j = 0; j < c; j++)
                g[j] = 0.0f;
        }
    });
}
