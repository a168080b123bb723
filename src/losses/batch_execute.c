/* Execution path of the batch losses (class balance, MCC), whose value
 * depends on the whole batch: validate everything, then
 *   statistics  (additive over rows: what a distributed caller all-reduces)
 *   finish      (loss and the gradient's coefficients from the statistics)
 *   gradient    (one pass over the rows)
 * in the handle's workspace, which grows only when n or C grows.  Outputs are
 * written only after the finish has accepted the statistics. */
#include <omp.h>

#include "losses/loss_internal.h"

static kd_status validate(kd_loss *h, const char *fn, kdi_mode mode, int64_t n, const void *io)
{
    if (n < 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, "%s: n = %lld < 0", fn, (long long)n);
    if (!io)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn,
                        mode == KDI_BACKWARD ? "upstream" : "loss");
    if (!h->student)
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: student logits not bound", fn);
    if (mode != KDI_FORWARD && !h->grad)
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: no gradient output bound", fn);
    if (h->kind == KD_LOSS_MCC && n > INT32_MAX)
        return kdi_fail(h->err, KD_ERR_SHAPE, "%s: n = %lld exceeds the BLAS int range", fn,
                        (long long)n);
    kd_status st = kdi_check_extent(h, fn, "student", n, h->ld_student);
    if (!st && mode != KDI_FORWARD)
        st = kdi_check_extent(h, fn, "grad", n, h->ld_grad);
    if (st)
        return st;
    if (mode != KDI_FORWARD) {
        kdi_span g = kdi_matrix_span(h->grad, n, h->ld_grad, h->c);
        if (kdi_overlaps(g, kdi_matrix_span(h->student, n, h->ld_student, h->c)) &&
            !(h->grad == h->student && h->ld_grad == h->ld_student))
            return kdi_fail(h->err, KD_ERR_ALIASING,
                            "%s: gradient overlaps the student logits without being them (in place "
                            "needs the same pointer and ld)", fn);
    }
    if (h->check_finite) {
        st = kdi_check_finite_matrix(h, fn, "student", h->student, n, h->ld_student);
        if (!st && mode == KDI_BACKWARD)
            st = kdi_check_finite_upstream(h, fn, io, 1);
    }
    return st;
}

/* Lay out the workspace for n rows (grows h->bf and h->bd). */
static kd_status workspace(kd_loss *h, const char *fn, int64_t n, kdi_batch *b)
{
    const size_t c = (size_t)h->c, rows = (size_t)n;
    const int mcc = h->kind == KD_LOSS_MCC;
    if (mcc && (c > SIZE_MAX / 8 / c || (rows > 0 && c > SIZE_MAX / 16 / rows)))
        return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "%s: workspace for n = %lld", fn, (long long)n);
    size_t nf = 2 * rows + (mcc ? 2 * rows * c + c * c : c);
    size_t nd = mcc ? 2 + rows + 2 * c : c;
    kd_status st = kdi_grow(h, fn, (void **)&h->bf, &h->bf_cap, nf, sizeof(float));
    if (!st)
        st = kdi_grow(h, fn, (void **)&h->bd, &h->bd_cap, nd, sizeof(double));
    if (st)
        return st;
    b->n = n;
    b->count = (double)n;
    b->lse = (kdi_lse *)h->bf;
    float *f = h->bf + 2 * rows;
    if (mcc) {
        b->probs = f;
        b->work = f + rows * c;
        b->mat = f + 2 * rows * c;
        b->stats = h->bd;
        b->coef = h->bd + 1;
        b->ew = h->bd + 2;
        b->rsum = h->bd + 2 + rows;
    } else {
        b->vec = f;
        b->stats = h->bd;
    }
    return KD_OK;
}

kd_status kdi_batch_run(kd_loss *h, const char *fn, kdi_mode mode, int64_t n, float *loss,
                        const float *upstream)
{
    kd_status st = validate(h, fn, mode, n, mode == KDI_BACKWARD ? (const void *)upstream : loss);
    if (st)
        return st;
    kdi_batch b = {0};
    st = workspace(h, fn, n, &b);
    if (st)
        return st;
    int nthreads = kdi_resolve_threads(h->threads);
    b.nthreads = nthreads > n ? (n > 0 ? (int)n : 1) : nthreads;

    double value = 0.0; /* an empty batch gives 0 and writes no gradient row */
    const int mcc = h->kind == KD_LOSS_MCC;
    if (n > 0) {
        if (mcc) {
            kdi_mcc_stats(h, &b);
            kdi_mcc_finish(h, &b, &value);
        } else {
            kdi_class_balance_stats(h, &b);
            st = kdi_class_balance_finish(h, fn, &b, &value);
            if (st)
                return st;
        }
        if (mode != KDI_FORWARD) {
            const float up = mode == KDI_BACKWARD ? upstream[0] : 1.0f;
            if (mcc)
                kdi_mcc_grad(h, &b, up);
            else
                kdi_class_balance_grad(h, &b, up);
        }
    }
    if (mode != KDI_BACKWARD)
        *loss = (float)value;
    kdi_clear_error(h->err);
    return KD_OK;
}
