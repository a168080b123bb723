/* The generic driver behind kd_loss_forward / _backward / _forward_backward:
 * validates every argument before anything is written, works out which terms
 * each row has and their coefficients, runs the kind's row kernel over the
 * rows in parallel and reduces the per-row values in row order. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "losses/loss_internal.h"

typedef enum { RUN_FORWARD, RUN_BACKWARD, RUN_FUSED } run_mode;

static kdi_row_kernel kernel_of(kd_loss_kind kind)
{
    switch (kind) {
    case KD_LOSS_CROSS_ENTROPY: return kdi_cross_entropy_row;
    case KD_LOSS_KL_DISTILL: return kdi_kl_distill_row;
    default: return kdi_logit_mse_row;
    }
}

/* Byte range [lo, hi) of an n-row matrix. */
typedef struct {
    const char *lo, *hi;
} span;

static span matrix_span(const float *p, int64_t n, int64_t ld, int64_t c)
{
    span s = {(const char *)p, (const char *)p};
    if (p && n > 0)
        s.hi = (const char *)(p + (n - 1) * ld + c);
    return s;
}

static int overlaps(span a, span b) { return a.lo < b.hi && b.lo < a.hi; }

static kd_status check_extent(kd_loss *h, const char *fn, const char *what, int64_t n, int64_t ld)
{
    int64_t e;
    if (n > 0 && (!kdi_mul_ok(n - 1, ld, &e) || e > INT64_MAX / 4 - h->c))
        return kdi_fail(h->err, KD_ERR_SHAPE, "%s: %s extent (n = %lld, ld = %lld) overflows", fn,
                        what, (long long)n, (long long)ld);
    return KD_OK;
}

static kd_status check_finite_matrix(kd_loss *h, const char *fn, const char *what, const float *x,
                                     int64_t n, int64_t ld)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t j;
        if (!kdi_row_all_finite(x + i * ld, h->c, &j))
            return kdi_fail(h->err, KD_ERR_NOT_FINITE, "%s: %s[%lld][%lld] = %g is not finite", fn,
                            what, (long long)i, (long long)j, (double)x[i * ld + j]);
    }
    return KD_OK;
}

static kd_status grow(kd_loss *h, const char *fn, int64_t n, int nthreads)
{
    size_t need_terms = (size_t)n * 2;
    if (need_terms > h->terms_cap) {
        double *p = realloc(h->terms, need_terms * sizeof *p);
        if (!p)
            return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "%s: workspace for n = %lld", fn, (long long)n);
        h->terms = p;
        h->terms_cap = need_terms;
    }
    size_t need_scratch = h->n_teachers > 1 ? (size_t)nthreads * (size_t)h->c : 0;
    if (need_scratch > h->scratch_cap) {
        float *p = realloc(h->scratch, need_scratch * sizeof *p);
        if (!p)
            return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "%s: teacher scratch rows", fn);
        h->scratch = p;
        h->scratch_cap = need_scratch;
    }
    return KD_OK;
}

/* Everything that can fail, before any output is touched.  Returns the
 * number of rows whose label is not ignored in *valid. */
static kd_status validate(kd_loss *h, const char *fn, run_mode mode, int64_t n, const void *io,
                          int64_t *valid)
{
    const int64_t c = h->c;
    if (n < 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, "%s: n = %lld < 0", fn, (long long)n);
    if (!io)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn,
                        mode == RUN_BACKWARD ? "upstream" : "loss");
    if (!h->student)
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: student logits not bound", fn);
    if (h->kind == KD_LOSS_CROSS_ENTROPY) {
        if (h->target && h->n_teachers > 0)
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            "%s: both target probabilities and teacher logits bound; bind one", fn);
        if (!h->labels && !h->target && h->n_teachers == 0)
            return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: no labels, target or teacher bound", fn);
    } else if (h->n_teachers == 0) {
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: teacher logits not bound", fn);
    }
    if (mode != RUN_FORWARD && !h->grad)
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: no gradient output bound", fn);

    kd_status st = check_extent(h, fn, "student", n, h->ld_student);
    for (int32_t k = 0; !st && k < h->n_teachers; k++)
        st = check_extent(h, fn, "teacher", n, h->ld_teachers[k]);
    if (!st && h->target)
        st = check_extent(h, fn, "target", n, h->ld_target);
    if (!st && h->grad && mode != RUN_FORWARD)
        st = check_extent(h, fn, "grad", n, h->ld_grad);
    if (st)
        return st;

    if (h->grad && mode != RUN_FORWARD) {
        span g = matrix_span(h->grad, n, h->ld_grad, c);
        span s = matrix_span(h->student, n, h->ld_student, c);
        if (overlaps(g, s) && !(h->grad == h->student && h->ld_grad == h->ld_student))
            return kdi_fail(h->err, KD_ERR_ALIASING,
                            "%s: gradient overlaps the student logits without being them (in place "
                            "needs the same pointer and ld)", fn);
        for (int32_t k = 0; k < h->n_teachers; k++)
            if (overlaps(g, matrix_span(h->teachers[k], n, h->ld_teachers[k], c)))
                return kdi_fail(h->err, KD_ERR_ALIASING, "%s: gradient overlaps teacher %d", fn, (int)k);
        if (h->target && overlaps(g, matrix_span(h->target, n, h->ld_target, c)))
            return kdi_fail(h->err, KD_ERR_ALIASING, "%s: gradient overlaps the target", fn);
    }

    int64_t count = n;
    if (h->labels) {
        count = 0;
        for (int64_t i = 0; i < n; i++) {
            int32_t y = h->labels[i];
            if (y == h->ignore_index)
                continue;
            if (y < 0 || y >= c)
                return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                                "%s: labels[%lld] = %d outside [0, %lld) and not ignore_index %d", fn,
                                (long long)i, (int)y, (long long)c, (int)h->ignore_index);
            count++;
        }
    }
    *valid = count;
    if (h->weights)
        for (int64_t i = 0; i < n; i++)
            if (!(h->weights[i] >= 0.0f) || isinf(h->weights[i]))
                return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                                "%s: weights[%lld] = %g is not a finite value >= 0", fn, (long long)i,
                                (double)h->weights[i]);
    if (h->check_finite) {
        st = check_finite_matrix(h, fn, "student", h->student, n, h->ld_student);
        for (int32_t k = 0; !st && k < h->n_teachers; k++)
            st = check_finite_matrix(h, fn, "teacher", h->teachers[k], n, h->ld_teachers[k]);
        if (!st && h->target)
            st = check_finite_matrix(h, fn, "target", h->target, n, h->ld_target);
        if (!st && mode == RUN_BACKWARD) {
            const float *up = io;
            int64_t m = h->reduction == KD_REDUCTION_NONE ? n : 1;
            for (int64_t i = 0; i < m; i++)
                if (!isfinite(up[i]))
                    return kdi_fail(h->err, KD_ERR_NOT_FINITE, "%s: upstream[%lld] = %g is not finite",
                                    fn, (long long)i, (double)up[i]);
        }
        if (st)
            return st;
    }
    return KD_OK;
}

static kd_status run(kd_loss *h, const char *fn, run_mode mode, int64_t n, float *loss,
                     const float *upstream)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    int64_t valid = 0;
    kd_status st = validate(h, fn, mode, n, mode == RUN_BACKWARD ? (const void *)upstream : loss, &valid);
    if (st)
        return st;
    int nthreads = kdi_resolve_threads(h->threads);
    if (nthreads > n)
        nthreads = n > 0 ? (int)n : 1;
    st = grow(h, fn, n, nthreads);
    if (st)
        return st;

    const int is_ce = h->kind == KD_LOSS_CROSS_ENTROPY;
    const double sw = is_ce ? 1.0 : h->soft_weight;
    const double hw = is_ce ? 0.0 : h->hard_weight;
    const int soft_skips_ignored = is_ce || h->normalization == KD_NORMALIZE_VALID;
    const int64_t d_soft = (soft_skips_ignored && h->labels) ? valid : n;
    const int red = h->reduction;
    /* 1 / denominator of each term for MEAN (an empty term contributes 0) */
    const double inv_soft = red != KD_REDUCTION_MEAN ? 1.0 : (d_soft > 0 ? 1.0 / (double)d_soft : 0.0);
    const double inv_hard = red != KD_REDUCTION_MEAN ? 1.0 : (valid > 0 ? 1.0 / (double)valid : 0.0);
    const int want_grad = mode != RUN_FORWARD;
    const kdi_row_kernel kernel = kernel_of(h->kind);
    const int64_t c = h->c;

#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const int32_t y = h->labels ? h->labels[i] : -1;
        const int ignored = h->labels && y == h->ignore_index;
        const int soft_on = !(soft_skips_ignored && ignored);
        const int hard_on = !is_ce && h->labels && !ignored && hw != 0.0;
        double *out = h->terms + 2 * i;
        float *g = want_grad ? h->grad + i * h->ld_grad : NULL;
        if (!soft_on) {
            out[0] = out[1] = 0.0;
            if (g)
                for (int64_t j = 0; j < c; j++)
                    g[j] = 0.0f;
            continue;
        }
        const double w = h->weights ? h->weights[i] : 1.0;
        double up = 1.0;
        if (mode == RUN_BACKWARD)
            up = red == KD_REDUCTION_NONE ? upstream[i] : upstream[0];
        kdi_row r;
        r.s = h->student + i * h->ld_student;
        r.q = h->target ? h->target + i * h->ld_target : NULL;
        r.t = NULL;
        if (h->n_teachers == 1) {
            r.t = h->teachers[0] + i * h->ld_teachers[0];
        } else if (h->n_teachers > 1) {
            float *avg = h->scratch + (size_t)omp_get_thread_num() * (size_t)c;
            const float *rows[1024];
            for (int32_t k = 0; k < h->n_teachers; k++)
                rows[k] = h->teachers[k] + i * h->ld_teachers[k];
            kdi_row_average(avg, rows, h->teacher_weights, h->n_teachers, c);
            r.t = avg;
        }
        r.y = is_ce ? (ignored ? -1 : y) : (hard_on ? y : -1);
        r.g = g;
        r.c_soft = up * w * sw * inv_soft;
        r.c_hard = up * w * hw * inv_hard;
        double terms[2];
        kernel(h, &r, terms);
        out[0] = w * sw * terms[0];
        out[1] = hard_on ? w * hw * terms[1] : 0.0;
    }

    if (mode != RUN_BACKWARD) {
        double s_soft = 0.0, s_hard = 0.0;
        for (int64_t i = 0; i < n; i++) {
            float li = (float)(h->terms[2 * i] + h->terms[2 * i + 1]);
            if (h->per_sample)
                h->per_sample[i] = li;
            if (red == KD_REDUCTION_NONE)
                loss[i] = li;
            s_soft += h->terms[2 * i];
            s_hard += h->terms[2 * i + 1];
        }
        if (red != KD_REDUCTION_NONE)
            *loss = (float)(s_soft * inv_soft + s_hard * inv_hard);
    }
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_forward(kd_loss *h, int64_t n, float *loss)
{
    return run(h, "forward", RUN_FORWARD, n, loss, NULL);
}

kd_status kd_loss_backward(kd_loss *h, int64_t n, const float *upstream)
{
    return run(h, "backward", RUN_BACKWARD, n, NULL, upstream);
}

kd_status kd_loss_forward_backward(kd_loss *h, int64_t n, float *loss)
{
    return run(h, "forward_backward", RUN_FUSED, n, loss, NULL);
}
