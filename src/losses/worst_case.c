/* DST worst-case estimation (tllib WorstCaseEstimationLoss), two batches:
 *   labeled row    a_i = eta' * CE(la_i, y_i),  y_i = argmax lm_i
 *   unlabeled row  b_u = -log(min(q_u + 1e-6, 1)),  q_u = 1 - softmax(ua_u)[k_u],
 *                  k_u = argmax um_u
 * q is summed from the classes other than k relative to the row maximum, so
 * it keeps its precision when softmax[k] is near 1 (1 - p in float32 is 0
 * there).  Gradients (main heads detached):
 *   d a_i / d la_ij = eta' (p_ij - [j = y_i])
 *   d b_u / d ua_uj = p_k ([j = k] q - [j != k] p_j) / (q + 1e-6),  0 where clamped
 * MEAN divides each batch by its own row count (F.cross_entropy, F.nll_loss). */
#include <math.h>

#include "losses/loss_internal.h"

enum { LM, LA, UM, UA };
static const char *const NAMES[4] = {"labeled_main", "labeled_adv", "unlabeled_main",
                                     "unlabeled_adv"};

static kd_status validate(kd_loss *h, const char *fn, kdi_mode mode, int64_t n, int64_t nu,
                          const void *io)
{
    if (n < 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, "%s: n = %lld < 0", fn, (long long)n);
    if (!io)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn,
                        mode == KDI_BACKWARD ? "upstream" : "loss");
    const int64_t rows[4] = {n, n, nu, nu};
    for (int k = 0; k < 4; k++)
        if (!h->wc_in[k])
            return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: %s logits not bound", fn, NAMES[k]);
    const int grads = mode != KDI_FORWARD;
    if (grads && !h->wc_grad[0] && !h->wc_grad[1])
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: no gradient output bound", fn);
    kd_status st = KD_OK;
    for (int k = 0; !st && k < 4; k++)
        st = kdi_check_extent(h, fn, NAMES[k], rows[k], h->wc_ld[k]);
    for (int k = 0; !st && grads && k < 2; k++)
        if (h->wc_grad[k])
            st = kdi_check_extent(h, fn, k ? "grad_unlabeled_adv" : "grad_labeled_adv", rows[2 * k],
                                  h->wc_ld_grad[k]);
    if (st)
        return st;
    /* the aliasing check (core/bufcheck.h): a gradient may be its own input */
    kdi_buf b[8];
    for (int k = 0; k < 4; k++)
        b[k] = kdi_buf_matrix(NAMES[k], -1, h->wc_in[k], rows[k], h->wc_ld[k], h->c, 4, 0);
    b[4] = kdi_buf_vector("upstream", -1, mode == KDI_BACKWARD ? io : NULL, 1, 4, 0);
    for (int k = 0; k < 2; k++) {
        b[5 + k] =
            kdi_buf_matrix(k ? "grad_unlabeled_adv" : "grad_labeled_adv", -1,
                           grads ? h->wc_grad[k] : NULL, rows[2 * k], h->wc_ld_grad[k], h->c, 4, 1);
        b[5 + k].in_place = k ? UA : LA;
    }
    b[7] = kdi_buf_vector("loss", -1, mode == KDI_BACKWARD ? NULL : io, 1, 4, 1);
    if ((st = kdi_check_aliasing(h->err, KDI_ERROR_SIZE, fn, b, 8)))
        return st;
    for (int k = 0; h->check_finite && k < 4; k++)
        if ((st = kdi_check_finite_matrix(h, fn, NAMES[k], h->wc_in[k], rows[k], h->wc_ld[k])))
            return st;
    if (h->check_finite && mode == KDI_BACKWARD)
        return kdi_check_finite_upstream(h, fn, io, 1);
    return KD_OK;
}

static double labeled_row(const kd_loss *h, int64_t i, float *g, float coef)
{
    const int64_t c = h->c;
    const float *a = h->wc_in[LA] + i * h->wc_ld[LA];
    const int64_t y = kdi_row_argmax_torch(h->wc_in[LM] + i * h->wc_ld[LM], c);
    const kdi_lse l = kdi_row_lse_ops(h->ops, a, c, 1.0f);
    const double v = -(double)kdi_log_softmax(a[y], 1.0f, l);
    for (int64_t j = 0; g && j < c; j++) {
        float p = expf(kdi_log_softmax(a[j], 1.0f, l));
        g[j] = coef * (j == y ? p - 1.0f : p);
    }
    return v;
}

static double unlabeled_row(const kd_loss *h, int64_t i, float *g, float coef)
{
    const int64_t c = h->c;
    const float *b = h->wc_in[UA] + i * h->wc_ld[UA];
    const int64_t k = kdi_row_argmax_torch(h->wc_in[UM] + i * h->wc_ld[UM], c);
    const kdi_lse l = kdi_row_lse_ops(h->ops, b, c, 1.0f);
    double q = 0.0;
    for (int64_t j = 0; j < c; j++)
        q += j == k ? 0.0 : (double)expf(kdi_log_softmax(b[j], 1.0f, l));
    const double v = q + 1e-6;
    const int clamped = v > 1.0; /* min(., 1): value log 1 = 0, no gradient */
    if (g) {
        const float pk = expf(kdi_log_softmax(b[k], 1.0f, l));
        const float f = clamped ? 0.0f : (float)(coef * pk / v), qf = (float)q;
        for (int64_t j = 0; j < c; j++) {
            float pj = expf(kdi_log_softmax(b[j], 1.0f, l));
            g[j] = f * (j == k ? qf : -pj);
        }
    }
    return clamped ? 0.0 : -log(v);
}

kd_status kdi_worst_case_run(kd_loss *h, const char *fn, kdi_mode mode, int64_t n, float *loss,
                             const float *upstream)
{
    const int64_t nu = h->unlabeled_rows < 0 ? n : h->unlabeled_rows;
    kd_status st =
        validate(h, fn, mode, n, nu, mode == KDI_BACKWARD ? (const void *)upstream : loss);
    if (st)
        return st;
    size_t rows;
    if (!kdi_size_add((size_t)n, (size_t)nu, &rows))
        return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "%s: workspace for %lld + %lld rows", fn,
                        (long long)n, (long long)nu);
    st = kdi_grow(h, fn, (void **)&h->terms, &h->terms_cap, rows, sizeof(double));
    if (st)
        return st;
    const int mean = h->reduction == KD_REDUCTION_MEAN;
    const double inv_l = mean ? (n > 0 ? 1.0 / (double)n : 0.0) : 1.0;
    const double inv_u = mean ? (nu > 0 ? 1.0 / (double)nu : 0.0) : 1.0;
    const double up = mode == KDI_BACKWARD ? upstream[0] : 1.0;
    const float coef_l = (float)(up * h->eta_prime * inv_l), coef_u = (float)(up * inv_u);
    const int grads = mode != KDI_FORWARD;
    int nthreads = kdi_resolve_threads(h->threads);
    if (nthreads > n + nu)
        nthreads = n + nu > 0 ? (int)(n + nu) : 1;

    KDI_PARALLEL_FOR(nthreads, r, n + nu, {
        if (r < n) {
            float *g = grads && h->wc_grad[0] ? h->wc_grad[0] + r * h->wc_ld_grad[0] : NULL;
            h->terms[r] = labeled_row(h, r, g, coef_l);
        } else {
            const int64_t i = r - n;
            float *g = grads && h->wc_grad[1] ? h->wc_grad[1] + i * h->wc_ld_grad[1] : NULL;
            h->terms[r] = unlabeled_row(h, i, g, coef_u);
        }
    });
    if (mode != KDI_BACKWARD) {
        double sl = 0.0, su = 0.0;
        for (int64_t r = 0; r < n; r++)
            sl += h->terms[r];
        for (int64_t r = n; r < n + nu; r++)
            su += h->terms[r];
        *loss = (float)(h->eta_prime * sl * inv_l + su * inv_u);
    }
    kdi_clear_error(h->err);
    return KD_OK;
}
