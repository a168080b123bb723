/* Fused linear layer + KL distillation (include/kdlib/linear.h): the student
 * logits are produced chunk by chunk by cblas_sgemm, turned into their
 * gradient in place by the KL row kernel with the batch's global
 * denominators, and pushed back through the layer by two more sgemms, so the
 * n x C logits never exist.  The per-row work mirrors the generic driver
 * (execute.c) for KD_LOSS_KL_DISTILL; the per-row values are reduced in row
 * order across chunks, so the loss is the driver's for the same logits. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kdlib/linear.h"
#include "losses/loss_internal.h"

#define FN "linear_kl_distill"

/* At least 256 rows: each chunk streams the C x d weight (twice), the
 * teacher's weight and grad_weight (read and written) once, so few rows per
 * chunk make the run weight-bandwidth bound; at N = 4096, d = 1024,
 * C = 32000 chunks of 65 rows cost 1.35x the CPU time of materialising the
 * logits and chunks of >= 256 rows cost no more (docs/losses.md).  Small
 * vocabularies get more rows, up to 8 MiB of logits. */
int64_t kd_linear_default_chunk_rows(int64_t num_classes)
{
    const int64_t min_rows = 256, budget = (int64_t)1 << 21; /* floats: 8 MiB of logits */
    int64_t r = num_classes >= 1 ? budget / num_classes : min_rows;
    return r > min_rows ? r : min_rows;
}

/* One matrix argument: rows x cols at p with row stride ld. */
typedef struct {
    const char *name;
    const void *p;
    int64_t rows, cols, ld;
} operand;

/* ld >= cols, ld within CBLAS's int, and the extent fits in memory sizes. */
static kd_status check_operand(kd_loss *h, const operand *o)
{
    if (!o->p)
        return KD_OK;
    if (o->ld < o->cols)
        return kdi_fail(h->err, KD_ERR_SHAPE, FN ": %s ld = %lld < %lld", o->name, (long long)o->ld,
                        (long long)o->cols);
    if (o->ld > INT32_MAX)
        return kdi_fail(h->err, KD_ERR_SHAPE, FN ": %s ld = %lld exceeds the CBLAS int range",
                        o->name, (long long)o->ld);
    int64_t e;
    if (o->rows > 0 && (!kdi_mul_ok(o->rows - 1, o->ld, &e) || e > INT64_MAX / 4 - o->cols))
        return kdi_fail(h->err, KD_ERR_SHAPE, FN ": %s extent (rows = %lld, ld = %lld) overflows",
                        o->name, (long long)o->rows, (long long)o->ld);
    return KD_OK;
}

static kd_status check_finite(kd_loss *h, const operand *o)
{
    if (!o->p)
        return KD_OK;
    for (int64_t i = 0; i < o->rows; i++) {
        const float *row = (const float *)o->p + i * o->ld;
        int64_t j;
        if (!kdi_row_all_finite(row, o->cols, &j))
            return kdi_fail(h->err, KD_ERR_NOT_FINITE, FN ": %s[%lld][%lld] = %g is not finite",
                            o->name, (long long)i, (long long)j, (double)row[j]);
    }
    return KD_OK;
}

/* Everything that can fail, before any output is touched.  *valid receives
 * the number of rows whose label is not ignored (n without labels). */
static kd_status validate(kd_loss *h, int64_t n, int64_t d, const float *hidden, int64_t ld_h,
                          const float *weight, int64_t ld_w, const float *bias, int64_t dt,
                          const float *th, int64_t ld_th, const float *tw, int64_t ld_tw,
                          const float *tb, int64_t chunk_rows, float *loss, float *gh,
                          int64_t ld_gh, float *gw, int64_t ld_gw, float *gb, int64_t *valid_out)
{
    const int64_t c = h->c;
    if (h->kind != KD_LOSS_KL_DISTILL)
        return kdi_fail(h->err, KD_ERR_UNSUPPORTED,
                        FN ": the handle is of kind %d, not KD_LOSS_KL_DISTILL", (int)h->kind);
    if (!loss)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, FN ": loss is NULL");
    if (!hidden)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, FN ": hidden is NULL");
    if (!weight)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, FN ": weight is NULL");
    if (n < 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, FN ": n = %lld < 0", (long long)n);
    if (d < 1)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, FN ": d = %lld < 1", (long long)d);
    if (d > INT32_MAX)
        return kdi_fail(h->err, KD_ERR_SHAPE, FN ": d = %lld exceeds the CBLAS int range",
                        (long long)d);
    if (chunk_rows < 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, FN ": chunk_rows = %lld < 0",
                        (long long)chunk_rows);
    const int teacher_linear = th || tw;
    if (teacher_linear) {
        if (!th || !tw)
            return kdi_fail(h->err, KD_ERR_NULL_POINTER, FN ": %s is NULL while %s is given",
                            th ? "teacher_weight" : "teacher_hidden",
                            th ? "teacher_hidden" : "teacher_weight");
        if (h->n_teachers > 0)
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            FN ": teacher logits are bound and teacher_hidden is given; use one");
        if (dt < 1)
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, FN ": d_teacher = %lld < 1",
                            (long long)dt);
        if (dt > INT32_MAX)
            return kdi_fail(h->err, KD_ERR_SHAPE, FN ": d_teacher = %lld exceeds the CBLAS int range",
                            (long long)dt);
    } else {
        if (tb)
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            FN ": teacher_bias given without teacher_hidden");
        if (h->n_teachers == 0)
            return kdi_fail(h->err, KD_ERR_MISSING_INPUT,
                            FN ": no teacher logits bound and no teacher_hidden given");
    }

    operand in[8] = {
        {"hidden", hidden, n, d, ld_h},
        {"weight", weight, c, d, ld_w},
        {"bias", bias, 1, c, c},
        {"teacher_hidden", th, n, dt, ld_th},
        {"teacher_weight", tw, c, dt, ld_tw},
        {"teacher_bias", tb, 1, c, c},
        {"labels", h->labels, 1, n, n},
        {"weights", h->weights, 1, n, n},
    };
    const int64_t n_loss = h->reduction == KD_REDUCTION_NONE ? n : 1;
    operand out[5] = {
        {"grad_hidden", gh, n, d, ld_gh},
        {"grad_weight", gw, c, d, ld_gw},
        {"grad_bias", gb, 1, c, c},
        {"loss", loss, 1, n_loss, n_loss},
        {"per-sample output", h->per_sample, 1, n, n},
    };
    /* labels are int32: same byte size as a float, so the float spans hold */
    kd_status st = KD_OK;
    for (int k = 0; k < 6 && !st; k++)
        st = check_operand(h, &in[k]);
    for (int k = 0; k < 2 && !st; k++)
        st = check_operand(h, &out[k]);
    for (int32_t k = 0; k < h->n_teachers && !st; k++)
        st = kdi_check_extent(h, FN, "teacher", n, h->ld_teachers[k]);
    if (st)
        return st;

    /* one list for the aliasing check: the inputs, a slot the bound teachers
     * take in turn, the outputs (grad_hidden may be hidden itself) */
    kdi_buf b[14];
    for (int k = 0; k < 8; k++)
        b[k] = kdi_buf_matrix(in[k].name, -1, in[k].p, in[k].rows, in[k].ld, in[k].cols, 4, 0);
    for (int o = 0; o < 5; o++)
        b[9 + o] = kdi_buf_matrix(out[o].name, -1, out[o].p, out[o].rows, out[o].ld, out[o].cols, 4, 1);
    b[9].in_place = 0;
    const int32_t nt = h->n_teachers;
    for (int32_t k = 0; !st && k < (nt > 0 ? nt : 1); k++) {
        b[8] = kdi_buf_matrix("teacher", nt > 1 ? (int)k : -1, nt > 0 ? h->teachers[k] : NULL, n,
                              nt > 0 ? h->ld_teachers[k] : 0, c, 4, 0);
        st = kdi_check_aliasing(h->err, KDI_ERROR_SIZE, FN, b, 14);
    }
    if (st)
        return st;

    int64_t valid = n;
    if ((st = kdi_check_labels_weights(h, FN, n, &valid)))
        return st;
    if (h->check_finite) {
        for (int k = 0; k < 6 && !st; k++)
            st = check_finite(h, &in[k]);
        for (int32_t k = 0; k < h->n_teachers && !st; k++)
            st = kdi_check_finite_matrix(h, FN, "teacher", h->teachers[k], n, h->ld_teachers[k]);
        if (st)
            return st;
    }
    *valid_out = valid;
    return KD_OK;
}

/* Logits of rows [i0, i0 + m) of a linear layer into out (m x C, ld C). */
static void linear_logits(float *out, int64_t m, int64_t c, int64_t d, const float *x, int64_t ldx,
                          const float *w, int64_t ldw, const float *b)
{
    if (b)
        for (int64_t r = 0; r < m; r++)
            memcpy(out + r * c, b, (size_t)c * sizeof *out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)c, (int)d, 1.0f, x, (int)ldx, w,
                (int)ldw, b ? 1.0f : 0.0f, out, (int)c);
}

static kd_status linear_kl_distill_locked(kd_loss *h, int64_t n, int64_t d, const float *hidden,
                                          int64_t ld_hidden, const float *weight, int64_t ld_weight,
                                          const float *bias, int64_t d_teacher, const float *teacher_hidden,
                                          int64_t ld_teacher_hidden, const float *teacher_weight,
                                          int64_t ld_teacher_weight, const float *teacher_bias,
                                          int64_t chunk_rows, float *loss, float *grad_hidden,
                                          int64_t ld_grad_hidden, float *grad_weight, int64_t ld_grad_weight,
                                          float *grad_bias)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    int64_t valid = 0;
    kd_status st = validate(h, n, d, hidden, ld_hidden, weight, ld_weight, bias, d_teacher,
                            teacher_hidden, ld_teacher_hidden, teacher_weight, ld_teacher_weight,
                            teacher_bias, chunk_rows, loss, grad_hidden, ld_grad_hidden, grad_weight,
                            ld_grad_weight, grad_bias, &valid);
    if (st)
        return st;

    const int64_t c = h->c;
    const int teacher_linear = teacher_hidden != NULL;
    int64_t chunk = chunk_rows > 0 ? chunk_rows : kd_linear_default_chunk_rows(c);
    if (chunk > n)
        chunk = n > 0 ? n : 1;
    if (chunk > INT32_MAX)
        chunk = INT32_MAX;
    int nthreads = kdi_resolve_threads(h->threads);
    if (nthreads > chunk)
        nthreads = (int)chunk;

    /* workspace, all grown before the first write: logits (+ teacher
     * logits) of one chunk, the chunk's per-row terms, the kernels' per-thread
     * scratch and the bias-gradient accumulator */
    size_t chunk_elems, logits, terms_need, scratch_need;
    if (!kdi_size_mul((size_t)chunk, (size_t)c, &chunk_elems) ||
        !kdi_size_mul(chunk_elems, teacher_linear ? 2 : 1, &logits) ||
        !kdi_size_mul((size_t)chunk, 2, &terms_need) ||
        !kdi_size_mul((size_t)nthreads, KDI_SCRATCH_STRIDE(c), &scratch_need))
        return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, FN ": workspace of %lld x %lld",
                        (long long)chunk, (long long)c);
    st = kdi_grow(h, FN, (void **)&h->bf, &h->bf_cap, logits, sizeof(float));
    if (!st)
        st = kdi_grow(h, FN, (void **)&h->terms, &h->terms_cap, terms_need, sizeof(double));
    if (!st)
        st = kdi_grow(h, FN, (void **)&h->scratch, &h->scratch_cap, scratch_need, sizeof(float));
    if (!st && grad_bias)
        st = kdi_grow(h, FN, (void **)&h->bd, &h->bd_cap, (size_t)c, sizeof(double));
    if (st)
        return st;

    h->region_threads = nthreads;
    const kdi_term_plan tp = kdi_term_plan_of(h, n, valid, nthreads);
    const int want_grad = grad_hidden || grad_weight || grad_bias;
    float *s_chunk = h->bf;
    float *t_chunk = teacher_linear ? h->bf + chunk_elems : NULL;
    double *bias_acc = h->bd;
    if (grad_bias)
        for (int64_t j = 0; j < c; j++)
            bias_acc[j] = 0.0;

    double sums[2] = {0.0, 0.0};
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
        const int64_t m = n - i0 < chunk ? n - i0 : chunk;
        const float *h_k = hidden + i0 * ld_hidden;
        linear_logits(s_chunk, m, c, d, h_k, ld_hidden, weight, ld_weight, bias);
        if (teacher_linear)
            linear_logits(t_chunk, m, c, d_teacher, teacher_hidden + i0 * ld_teacher_hidden,
                          ld_teacher_hidden, teacher_weight, ld_teacher_weight, teacher_bias);
        double *terms = h->terms;

        KDI_PARALLEL_FOR(nthreads, r, m, {
            const int64_t i = i0 + r;
            const int32_t y = h->labels ? h->labels[i] : -1;
            const int ignored = h->labels && y == h->ignore_index;
            float *srow = s_chunk + r * c;
            kdi_row_terms rt;
            if (!kdi_term_plan_row(&tp, y, ignored, &rt)) {
                terms[2 * r] = terms[2 * r + 1] = 0.0;
                if (want_grad)
                    memset(srow, 0, (size_t)c * sizeof *srow);
                continue;
            }
            const double w = h->weights ? h->weights[i] : 1.0;
            kdi_row row;
            memset(&row, 0, sizeof row);
            row.s = srow;
            row.t = teacher_linear ? t_chunk + r * c
                    : h->n_teachers == 1 ? h->teachers[0] + i * h->ld_teachers[0]
                                         : kdi_teacher_row(h, i);
            row.y = rt.y;
            row.g = want_grad ? srow : NULL; /* the gradient replaces the logits */
            row.work = kdi_thread_scratch(h) + c;
            row.nthr = 1;
            kdi_term_plan_coeffs(&tp, 1.0, w, &row.c_soft, &row.c_hard);
            double tv[2];
            kdi_kl_distill_row(h, &row, tv);
            kdi_term_plan_store(&tp, w, rt.hard_on, tv, terms + 2 * r);
        });
        kdi_reduce_rows(terms, m, tp.red, h->per_sample ? h->per_sample + i0 : NULL,
                        tp.red == KD_REDUCTION_NONE ? loss + i0 : NULL, sums);
        if (!want_grad)
            continue;

        /* grad_weight first: with grad_hidden in place over hidden, H_k is
         * overwritten only by the last product of this chunk */
        if (grad_weight)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c, (int)d, (int)m, 1.0f,
                        s_chunk, (int)c, h_k, (int)ld_hidden, i0 == 0 ? 0.0f : 1.0f, grad_weight,
                        (int)ld_grad_weight);
        if (grad_bias)
            for (int64_t r = 0; r < m; r++) {
                const float *g = s_chunk + r * c;
                for (int64_t j = 0; j < c; j++)
                    bias_acc[j] += g[j];
            }
        if (grad_hidden)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)d, (int)c, 1.0f,
                        s_chunk, (int)c, weight, (int)ld_weight, 0.0f, grad_hidden + i0 * ld_grad_hidden,
                        (int)ld_grad_hidden);
    }

    if (n == 0 && grad_weight)
        for (int64_t j = 0; j < c; j++)
            memset(grad_weight + j * ld_grad_weight, 0, (size_t)d * sizeof *grad_weight);
    if (grad_bias)
        for (int64_t j = 0; j < c; j++)
            grad_bias[j] = (float)bias_acc[j];
    if (tp.red != KD_REDUCTION_NONE)
        *loss = kdi_reduced_loss(&tp, sums);
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_linear_kl_distill(kd_loss *h, int64_t n, int64_t d, const float *hidden,
                               int64_t ld_hidden, const float *weight, int64_t ld_weight,
                               const float *bias, int64_t d_teacher, const float *teacher_hidden,
                               int64_t ld_teacher_hidden, const float *teacher_weight,
                               int64_t ld_teacher_weight, const float *teacher_bias,
                               int64_t chunk_rows, float *loss, float *grad_hidden,
                               int64_t ld_grad_hidden, float *grad_weight, int64_t ld_grad_weight,
                               float *grad_bias)
{
    KDI_GUARDED(h, linear_kl_distill_locked(h, n, d, hidden, ld_hidden, weight, ld_weight, bias,
                                            d_teacher, teacher_hidden, ld_teacher_hidden,
                                            teacher_weight, ld_teacher_weight, teacher_bias,
                                            chunk_rows, loss, grad_hidden, ld_grad_hidden,
                                            grad_weight, ld_grad_weight, grad_bias));
}
