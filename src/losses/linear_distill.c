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

#define FN "kd_linear_kl_distill"

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

/* The arguments of one call. */
typedef struct {
    int64_t n, d, dt, ld_h, ld_w, ld_th, ld_tw, chunk_rows, ld_gh, ld_gw;
    const float *hidden, *weight, *bias, *th, *tw, *tb;
    float *loss, *gh, *gw, *gb;
} lin_args;

/* The scalar arguments and the teacher's source. */
static kd_status validate_args(kd_loss *h, const lin_args *a)
{
    if (h->kind != KD_LOSS_KL_DISTILL)
        return kdi_fail(h->err, KD_ERR_UNSUPPORTED,
                        FN ": the handle is of kind %d, not KD_LOSS_KL_DISTILL", (int)h->kind);
    const char *null = !a->loss ? "loss" : !a->hidden ? "hidden" : !a->weight ? "weight" : NULL;
    if (null)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, FN ": %s is NULL", null);
    if (a->n < 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, FN ": n = %lld < 0", (long long)a->n);
    if (a->d < 1)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, FN ": d = %lld < 1", (long long)a->d);
    if (a->d > INT32_MAX)
        return kdi_fail(h->err, KD_ERR_SHAPE, FN ": d = %lld exceeds the CBLAS int range",
                        (long long)a->d);
    if (a->chunk_rows < 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, FN ": chunk_rows = %lld < 0",
                        (long long)a->chunk_rows);
    if (!a->th && !a->tw) {
        if (a->tb)
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            FN ": teacher_bias given without teacher_hidden");
        if (h->n_teachers == 0)
            return kdi_fail(h->err, KD_ERR_MISSING_INPUT,
                            FN ": no teacher logits bound and no teacher_hidden given");
        return KD_OK;
    }
    if (!a->th || !a->tw)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, FN ": %s is NULL while %s is given",
                        a->th ? "teacher_weight" : "teacher_hidden",
                        a->th ? "teacher_hidden" : "teacher_weight");
    if (h->n_teachers > 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                        FN ": teacher logits are bound and teacher_hidden is given; use one");
    if (a->dt < 1)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, FN ": d_teacher = %lld < 1",
                        (long long)a->dt);
    if (a->dt > INT32_MAX)
        return kdi_fail(h->err, KD_ERR_SHAPE, FN ": d_teacher = %lld exceeds the CBLAS int range",
                        (long long)a->dt);
    return KD_OK;
}

/* One list for the aliasing check: the inputs, a slot the bound teachers
 * take in turn, the outputs (grad_hidden may be hidden itself). */
static kd_status check_aliasing(kd_loss *h, const operand in[8], const operand out[5])
{
    kdi_buf b[14];
    for (int k = 0; k < 8; k++)
        b[k] = kdi_buf_matrix(in[k].name, -1, in[k].p, in[k].rows, in[k].ld, in[k].cols, 4, 0);
    for (int o = 0; o < 5; o++)
        b[9 + o] =
            kdi_buf_matrix(out[o].name, -1, out[o].p, out[o].rows, out[o].ld, out[o].cols, 4, 1);
    b[9].in_place = 0;
    const int32_t nt = h->n_teachers;
    kd_status st = KD_OK;
    for (int32_t k = 0; !st && k < (nt > 0 ? nt : 1); k++) {
        b[8] = kdi_buf_matrix("teacher", nt > 1 ? (int)k : -1, nt > 0 ? h->teachers[k] : NULL,
                              in[0].rows, nt > 0 ? h->ld_teachers[k] : 0, h->c, 4, 0);
        st = kdi_check_aliasing(h->err, KDI_ERROR_SIZE, FN, b, 14);
    }
    return st;
}

/* Everything that can fail, before any output is touched.  *valid receives
 * the number of rows whose label is not ignored (n without labels). */
static kd_status validate(kd_loss *h, const lin_args *a, int64_t *valid_out)
{
    kd_status st = validate_args(h, a);
    if (st)
        return st;
    const int64_t c = h->c, n = a->n;
    const operand in[8] = {
        {"hidden", a->hidden, n, a->d, a->ld_h},
        {"weight", a->weight, c, a->d, a->ld_w},
        {"bias", a->bias, 1, c, c},
        {"teacher_hidden", a->th, n, a->dt, a->ld_th},
        {"teacher_weight", a->tw, c, a->dt, a->ld_tw},
        {"teacher_bias", a->tb, 1, c, c},
        /* int64 labels span two floats each */
        {"labels", h->labels.l64 ? (const void *)h->labels.l64 : (const void *)h->labels.l32, 1,
         h->labels.l64 ? 2 * n : n, h->labels.l64 ? 2 * n : n},
        {"weights", h->weights, 1, n, n},
    };
    const int64_t n_loss = h->reduction == KD_REDUCTION_NONE ? n : 1;
    const operand out[5] = {
        {"grad_hidden", a->gh, n, a->d, a->ld_gh},
        {"grad_weight", a->gw, c, a->d, a->ld_gw},
        {"grad_bias", a->gb, 1, c, c},
        {"loss", a->loss, 1, n_loss, n_loss},
        {"per-sample output", h->per_sample, 1, n, n},
    };
    /* labels are int32 (one float's bytes) or int64 (two), so the float spans hold */
    for (int k = 0; k < 6 && !st; k++)
        st = check_operand(h, &in[k]);
    for (int k = 0; k < 2 && !st; k++)
        st = check_operand(h, &out[k]);
    for (int32_t k = 0; k < h->n_teachers && !st; k++)
        st = kdi_check_extent(h, FN, "teacher", n, h->ld_teachers[k]);
    if (!st)
        st = check_aliasing(h, in, out);
    int64_t valid = n;
    if (!st)
        st = kdi_check_labels_weights(h, FN, n, &valid);
    for (int k = 0; h->check_finite && k < 6 && !st; k++)
        st = check_finite(h, &in[k]);
    for (int32_t k = 0; h->check_finite && k < h->n_teachers && !st; k++)
        st = kdi_check_finite_matrix(h, FN, "teacher", h->teachers[k], n, h->ld_teachers[k]);
    if (!st)
        *valid_out = valid;
    return st;
}

/* Logits of rows [i0, i0 + m) of a linear layer into out (m x C, ld C). */
static void linear_logits(float *out, int64_t m, int64_t c, int64_t d, const float *x, int64_t ldx,
                          const float *w, int64_t ldw, const float *b)
{
    if (b)
        for (int64_t r = 0; r < m; r++)
            memcpy(out + r * c, b, (size_t)c * sizeof *out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)c, (int)d, 1.0f, x, (int)ldx,
                w, (int)ldw, b ? 1.0f : 0.0f, out, (int)c);
}

/* The layout of one call: chunk size, threads and the workspace. */
typedef struct {
    int64_t chunk;
    int nthreads, want_grad;
    float *s_chunk, *t_chunk; /* student (then gradient) and teacher logits of a chunk */
    double *bias_acc;
    kdi_term_plan tp;
} lin_plan;

static kd_status plan_call(kd_loss *h, const lin_args *a, int64_t valid, lin_plan *p)
{
    const int64_t c = h->c, n = a->n;
    const int teacher_linear = a->th != NULL;
    int64_t chunk = a->chunk_rows > 0 ? a->chunk_rows : kd_linear_default_chunk_rows(c);
    chunk = chunk > n ? (n > 0 ? n : 1) : chunk;
    chunk = chunk > INT32_MAX ? INT32_MAX : chunk;
    int nthreads = kdi_resolve_threads(h->threads);
    nthreads = nthreads > chunk ? (int)chunk : nthreads;

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
    kd_status st = kdi_grow(h, FN, (void **)&h->bf, &h->bf_cap, logits, sizeof(float));
    if (!st)
        st = kdi_grow(h, FN, (void **)&h->terms, &h->terms_cap, terms_need, sizeof(double));
    if (!st)
        st = kdi_grow(h, FN, (void **)&h->scratch, &h->scratch_cap, scratch_need, sizeof(float));
    if (!st && a->gb)
        st = kdi_grow(h, FN, (void **)&h->bd, &h->bd_cap, (size_t)c, sizeof(double));
    if (st)
        return st;
    h->region_threads = nthreads;
    p->chunk = chunk;
    p->nthreads = nthreads;
    p->want_grad = a->gh || a->gw || a->gb;
    p->s_chunk = h->bf;
    p->t_chunk = teacher_linear ? h->bf + chunk_elems : NULL;
    p->bias_acc = h->bd;
    p->tp = kdi_term_plan_of(h, n, valid, nthreads);
    return KD_OK;
}

/* Row r of the chunk starting at row i0: its terms, and its gradient over
 * its logits when one is wanted. */
static void chunk_row(const kd_loss *h, const lin_plan *p, int64_t i0, int64_t r, double *terms)
{
    const int64_t c = h->c, i = i0 + r;
    const int32_t y = kdi_label_at(h->labels, i);
    const int ignored = kdi_labels_bound(h->labels) && y == h->ignore_index;
    float *srow = p->s_chunk + r * c;
    kdi_row_terms rt;
    if (!kdi_term_plan_row(&p->tp, y, ignored, &rt)) {
        terms[2 * r] = terms[2 * r + 1] = 0.0;
        if (p->want_grad)
            memset(srow, 0, (size_t)c * sizeof *srow);
        return;
    }
    const double w = h->weights ? h->weights[i] : 1.0;
    kdi_row row;
    memset(&row, 0, sizeof row);
    row.s = srow;
    row.t = p->t_chunk           ? p->t_chunk + r * c
            : h->n_teachers == 1 ? h->teachers[0] + i * h->ld_teachers[0]
                                 : kdi_teacher_row(h, i);
    row.y = rt.y;
    row.g = p->want_grad ? srow : NULL; /* the gradient replaces the logits */
    row.work = kdi_thread_scratch(h) + c;
    row.nthr = 1;
    kdi_term_plan_coeffs(&p->tp, 1.0, w, &row.c_soft, &row.c_hard);
    double tv[2];
    kdi_kl_distill_row(h, &row, tv);
    kdi_term_plan_store(&p->tp, w, rt.hard_on, tv, terms + 2 * r);
}

/* The chunk's gradient pushed back through the layer. */
static void chunk_grads(const kd_loss *h, const lin_args *a, const lin_plan *p, int64_t i0,
                        int64_t m)
{
    const int64_t c = h->c;
    const float *h_k = a->hidden + i0 * a->ld_h;
    /* grad_weight first: with grad_hidden in place over hidden, H_k is
     * overwritten only by the last product of this chunk */
    if (a->gw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c, (int)a->d, (int)m, 1.0f,
                    p->s_chunk, (int)c, h_k, (int)a->ld_h, i0 == 0 ? 0.0f : 1.0f, a->gw,
                    (int)a->ld_gw);
    for (int64_t r = 0; a->gb && r < m; r++) {
        const float *g = p->s_chunk + r * c;
        for (int64_t j = 0; j < c; j++)
            p->bias_acc[j] += g[j];
    }
    if (a->gh)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)a->d, (int)c, 1.0f,
                    p->s_chunk, (int)c, a->weight, (int)a->ld_w, 0.0f, a->gh + i0 * a->ld_gh,
                    (int)a->ld_gh);
}

static kd_status linear_run(kd_loss *h, const lin_args *a)
{
    int64_t valid = 0;
    lin_plan p;
    kd_status st = validate(h, a, &valid);
    if (!st)
        st = plan_call(h, a, valid, &p);
    if (st)
        return st;
    const int64_t c = h->c, n = a->n;
    for (int64_t j = 0; a->gb && j < c; j++)
        p.bias_acc[j] = 0.0;
    double sums[2] = {0.0, 0.0};
    for (int64_t i0 = 0; i0 < n; i0 += p.chunk) {
        const int64_t m = n - i0 < p.chunk ? n - i0 : p.chunk;
        linear_logits(p.s_chunk, m, c, a->d, a->hidden + i0 * a->ld_h, a->ld_h, a->weight, a->ld_w,
                      a->bias);
        if (p.t_chunk)
            linear_logits(p.t_chunk, m, c, a->dt, a->th + i0 * a->ld_th, a->ld_th, a->tw, a->ld_tw,
                          a->tb);
        double *terms = h->terms;
        KDI_PARALLEL_FOR(p.nthreads, r, m, { chunk_row(h, &p, i0, r, terms); });
        kdi_reduce_rows(terms, m, p.tp.red, h->per_sample ? h->per_sample + i0 : NULL,
                        p.tp.red == KD_REDUCTION_NONE ? a->loss + i0 : NULL, sums);
        if (p.want_grad)
            chunk_grads(h, a, &p, i0, m);
    }
    for (int64_t j = 0; n == 0 && a->gw && j < c; j++)
        memset(a->gw + j * a->ld_gw, 0, (size_t)a->d * sizeof *a->gw);
    for (int64_t j = 0; a->gb && j < c; j++)
        a->gb[j] = (float)p.bias_acc[j];
    if (p.tp.red != KD_REDUCTION_NONE)
        *a->loss = kdi_reduced_loss(&p.tp, sums);
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
    const lin_args a = {n,
                        d,
                        d_teacher,
                        ld_hidden,
                        ld_weight,
                        ld_teacher_hidden,
                        ld_teacher_weight,
                        chunk_rows,
                        ld_grad_hidden,
                        ld_grad_weight,
                        hidden,
                        weight,
                        bias,
                        teacher_hidden,
                        teacher_weight,
                        teacher_bias,
                        loss,
                        grad_hidden,
                        grad_weight,
                        grad_bias};
    KDI_GUARDED(h, linear_run(h, &a));
}
