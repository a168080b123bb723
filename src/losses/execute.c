/* The generic driver behind kd_loss_forward / _backward / _forward_backward:
 * validates every argument before anything is written, works out which terms
 * each row has and their coefficients, runs the kind's row kernel over the
 * rows in parallel and reduces the per-row values in row order.  Batch losses
 * (class balance, MCC) and the two-batch worst-case loss have their own
 * paths (batch_execute.c, worst_case.c). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "losses/loss_internal.h"

void kdi_run_rows(const kd_loss *h, kdi_row *rows, int count, double (*terms)[2])
{
    const kdi_row_kernel kernel = h->kd->row;
    kdi_pipe pipe = {NULL, NULL, 0.0f, 0.0f, NULL, NULL, 1, h->prefetch_c};
    for (int k = 0; k < count; k++) {
        pipe.ns = k + 1 < count ? rows[k + 1].s : NULL;
        pipe.nt = k + 1 < count ? rows[k + 1].t : NULL;
        rows[k].pipe = &pipe;
        kernel(h, &rows[k], terms[k]);
    }
}

/* Rows of at least KDI_SPLIT_C classes are split over the threads when
 * there are fewer rows than threads: below it, waking the other threads
 * costs more than they save (measured: n = 1 on 2 threads, C = 2^17 about
 * even, C = 2^18 25-34% faster). */
#define KDI_SPLIT_C ((int64_t)1 << 18)

/* kinds whose row kernel runs a row's segments on several threads */
static int splits_rows(const kd_loss *h)
{
    const unsigned f = h->kd->flags;
    return (f & KDI_F_SPLITS) ||
           ((f & KDI_F_SPLITS_FORWARD_KL) && h->divergence == KD_DIVERGENCE_FORWARD_KL);
}

static int is_thresholded(const kd_loss *h) { return (h->kd->roles & KDI_R_THRESH) != 0; }

float *kdi_thread_scratch(const kd_loss *h)
{
    /* without a region of its own the call runs on the calling thread, whose
     * number in the caller's OpenMP team (if any) is not a scratch index */
    const int t = h->region_threads > 1 ? omp_get_thread_num() : 0;
    return h->scratch + (size_t)t * KDI_SCRATCH_STRIDE(h->c);
}

const float *kdi_teacher_row(const kd_loss *h, int64_t i)
{
    if (h->n_teachers == 1)
        return h->teachers[0] + i * h->ld_teachers[0];
    const float *rows[1024];
    for (int32_t k = 0; k < h->n_teachers; k++)
        rows[k] = h->teachers[k] + i * h->ld_teachers[k];
    float *avg = kdi_thread_scratch(h);
    kdi_row_average(avg, rows, h->teacher_weights, h->n_teachers, h->c);
    return avg;
}

/* Per-row terms (2 n doubles) and per-thread scratch rows; every size is
 * overflow-checked (n = 2^60 + 1 rows of one class pass the extent check,
 * and 2 n doubles do not fit in size_t). */
static kd_status grow(kd_loss *h, const char *fn, int64_t n, int nthreads)
{
    size_t need_terms, need_scratch;
    if (!kdi_size_mul((size_t)n, 2, &need_terms) ||
        !kdi_size_mul((size_t)nthreads, KDI_SCRATCH_STRIDE(h->c), &need_scratch))
        return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "%s: workspace for n = %lld overflows", fn,
                        (long long)n);
    if (kdi_grow(h, fn, (void **)&h->terms, &h->terms_cap, need_terms, sizeof *h->terms))
        return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "%s: workspace for n = %lld", fn,
                        (long long)n);
    return kdi_grow(h, fn, (void **)&h->scratch, &h->scratch_cap, need_scratch, sizeof *h->scratch);
}

/* Checks of the self-training kinds that run through this driver: the
 * second input's gradient (its extent) and the per-class thresholds. */
static kd_status validate_self_training(kd_loss *h, const char *fn, kdi_mode mode, int64_t n)
{
    const int64_t c = h->c;
    if ((h->kd->roles & KDI_R_GRAD_TEACHER) && h->n_teachers != 1)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                        "%s: consistency takes exactly one second input; %d teachers bound", fn,
                        (int)h->n_teachers);
    if (h->class_thresholds && is_thresholded(h))
        for (int64_t j = 0; j < c; j++) {
            float v = h->class_thresholds[j];
            if (!(v >= 0.0f && v <= 1.0f))
                return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                                "%s: class_thresholds[%lld] = %g outside [0, 1]", fn, (long long)j,
                                (double)v);
        }
    if (mode != KDI_FORWARD && h->grad_teacher)
        return kdi_check_extent(h, fn, "grad_teacher", n, h->ld_grad_teacher);
    return KD_OK;
}

/* The inputs a call needs: n, the loss or upstream pointer, the student, the
 * teacher / target / labels the kind requires, a gradient output. */
static kd_status validate_bound(kd_loss *h, const char *fn, kdi_mode mode, int64_t n,
                                const void *io)
{
    if (n < 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, "%s: n = %lld < 0", fn, (long long)n);
    if (!io)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn,
                        mode == KDI_BACKWARD ? "upstream" : "loss");
    if (!h->student)
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: student logits not bound", fn);
    if (h->kd->roles & KDI_R_TARGET) {
        if (h->target && h->n_teachers > 0)
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            "%s: both target probabilities and teacher logits bound; bind one", fn);
        if (!kdi_labels_bound(h->labels) && !h->target && h->n_teachers == 0)
            return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: no labels, target or teacher bound",
                            fn);
    } else if ((h->kd->roles & KDI_R_TEACHER) && h->n_teachers == 0) {
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: teacher logits not bound", fn);
    }
    if (mode != KDI_FORWARD && !h->grad &&
        !((h->kd->roles & KDI_R_GRAD_TEACHER) && h->grad_teacher))
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: no gradient output bound", fn);
    kd_status st = kdi_check_extent(h, fn, "student", n, h->ld_student);
    for (int32_t k = 0; !st && k < h->n_teachers; k++)
        st = kdi_check_extent(h, fn, "teacher", n, h->ld_teachers[k]);
    if (!st && h->target)
        st = kdi_check_extent(h, fn, "target", n, h->ld_target);
    if (!st && h->grad && mode != KDI_FORWARD)
        st = kdi_check_extent(h, fn, "grad", n, h->ld_grad);
    return st;
}

/* Every buffer the call reads or writes, in one list for the aliasing check:
 * each output against every other buffer; the gradients may be written in
 * place over the input they differentiate. */
static kd_status validate_aliasing(kd_loss *h, const char *fn, kdi_mode mode, int64_t n,
                                   const void *io)
{
    const int64_t c = h->c;
    const int grads = mode != KDI_FORWARD, fwd = mode != KDI_BACKWARD;
    const int64_t n_io = h->reduction == KD_REDUCTION_NONE ? n : 1;
    kdi_buf b[16];
    int k = 0;
    const int student = k;
    b[k++] = kdi_buf_matrix("the student logits", -1, h->student, n, h->ld_student, c, 4, 0);
    const int teacher = k++; /* the teachers take this slot in turn */
    b[k++] = kdi_buf_matrix("the target", -1, h->target, n, h->ld_target, c, 4, 0);
    b[k++] = h->labels.l64 ? kdi_buf_vector("the labels", -1, h->labels.l64, n, 8, 0)
                           : kdi_buf_vector("the labels", -1, h->labels.l32, n, 4, 0);
    b[k++] = kdi_buf_vector("the weights", -1, h->weights, n, 4, 0);
    if (is_thresholded(h))
        b[k++] = kdi_buf_vector("the class thresholds", -1, h->class_thresholds, c, 4, 0);
    if (!fwd)
        b[k++] = kdi_buf_vector("the upstream vector", -1, io, n_io, 4, 0);
    if (grads) {
        b[k] = kdi_buf_matrix("the gradient", -1, h->grad, n, h->ld_grad, c, 4, 1);
        b[k++].in_place = student;
        if (h->kd->roles & KDI_R_GRAD_TEACHER) {
            b[k] =
                kdi_buf_matrix("grad_teacher", -1, h->grad_teacher, n, h->ld_grad_teacher, c, 4, 1);
            b[k++].in_place = h->n_teachers == 1 ? teacher : -1;
        }
    }
    if (fwd) {
        b[k++] = kdi_buf_vector(h->reduction == KD_REDUCTION_NONE ? "the loss vector" : "the loss",
                                -1, io, n_io, 4, 1);
        b[k++] = kdi_buf_vector("the per-sample output", -1, h->per_sample, n, 4, 1);
        if (is_thresholded(h)) {
            b[k++] = kdi_buf_vector("the mask output", -1, h->mask_out, n, 4, 1);
            b[k++] = kdi_buf_vector("the pseudo_labels output", -1, h->labels_out, n, 4, 1);
        }
    }
    const int32_t nt = h->n_teachers;
    kd_status st = KD_OK;
    for (int32_t t = 0; !st && t < (nt > 0 ? nt : 1); t++) {
        b[teacher] = kdi_buf_matrix(nt > 1 ? "teacher" : "the teacher", nt > 1 ? (int)t : -1,
                                    nt > 0 ? h->teachers[t] : NULL, n,
                                    nt > 0 ? h->ld_teachers[t] : 0, c, 4, 0);
        st = kdi_check_aliasing(h->err, KDI_ERROR_SIZE, fn, b, k);
    }
    return st;
}

static kd_status validate_finite(kd_loss *h, const char *fn, kdi_mode mode, int64_t n,
                                 const void *io)
{
    kd_status st = kdi_check_finite_matrix(h, fn, "student", h->student, n, h->ld_student);
    for (int32_t k = 0; !st && k < h->n_teachers; k++)
        st = kdi_check_finite_matrix(h, fn, "teacher", h->teachers[k], n, h->ld_teachers[k]);
    if (!st && h->target)
        st = kdi_check_finite_matrix(h, fn, "target", h->target, n, h->ld_target);
    if (!st && mode == KDI_BACKWARD)
        st = kdi_check_finite_upstream(h, fn, io, h->reduction == KD_REDUCTION_NONE ? n : 1);
    return st;
}

/* Everything that can fail, before any output is touched.  Returns the
 * number of rows whose label is not ignored in *valid. */
static kd_status validate(kd_loss *h, const char *fn, kdi_mode mode, int64_t n, const void *io,
                          int64_t *valid)
{
    kd_status st = validate_bound(h, fn, mode, n, io);
    if (!st && (h->kd->flags & KDI_F_SELF_TRAINING))
        st = validate_self_training(h, fn, mode, n);
    if (!st)
        st = validate_aliasing(h, fn, mode, n, io);
    if (!st)
        st = kdi_check_labels_weights(h, fn, n, valid);
    if (!st && h->check_finite)
        st = validate_finite(h, fn, mode, n, io);
    return st;
}

/* What the row loop reads: the term plan and the handle's fields. */
typedef struct {
    kdi_term_plan tp;
    kdi_mode mode;
    int row_thr, is_small;
    int64_t n, c, block;
    const float *upstream;
    kdi_labels labels;
    int32_t ignore_index;
    const float *student, *target, *weights, *teacher;
    int64_t ld_student, ld_target, ld_teacher, ld_grad, ld_grad2;
    int many_teachers;
    float *grad, *grad2, *mask_out;
    int32_t *labels_out;
    double *all_terms;
    kdi_small_plan small;
} row_loop;

/* A row's label, gradient row, weight and coefficients; 0 when the row has
 * no term (its outputs are zeroed here). */
typedef struct {
    kdi_row_terms rt;
    float *g;
    double w, c_soft, c_hard;
} row_coeffs;

static inline int row_coeffs_of(const row_loop *x, const kdi_term_plan *tp, int64_t i,
                                row_coeffs *rc)
{
    const int32_t y = kdi_label_at(x->labels, i);
    const int ignored = kdi_labels_bound(x->labels) && y == x->ignore_index;
    float *g = x->grad ? x->grad + i * x->ld_grad : NULL;
    if (!kdi_term_plan_row(tp, y, ignored, &rc->rt)) {
        x->all_terms[2 * i] = x->all_terms[2 * i + 1] = 0.0;
        if (g)
            for (int64_t j = 0; j < x->c; j++)
                g[j] = 0.0f;
        return 0;
    }
    const double w = x->weights ? x->weights[i] : 1.0;
    double up = 1.0;
    if (x->mode == KDI_BACKWARD)
        up = tp->red == KD_REDUCTION_NONE ? x->upstream[i] : x->upstream[0];
    rc->g = g;
    rc->w = w;
    kdi_term_plan_coeffs(tp, up, w, &rc->c_soft, &rc->c_hard);
    return 1;
}

/* A block's rows that have terms: their index, weight, hard flag, terms. */
typedef struct {
    double terms[KDI_ROW_BLOCK][2], w[KDI_ROW_BLOCK];
    int64_t idx[KDI_ROW_BLOCK];
    int hard[KDI_ROW_BLOCK], cnt;
} block_rows;

static inline void block_add(block_rows *br, const row_coeffs *rc, int64_t i)
{
    br->w[br->cnt] = rc->w;
    br->hard[br->cnt] = rc->rt.hard_on;
    br->idx[br->cnt++] = i;
}

static inline void block_store(const kdi_term_plan *tp, const block_rows *br, double *all_terms)
{
    for (int k = 0; k < br->cnt; k++)
        kdi_term_plan_store(tp, br->w[k], br->hard[k], br->terms[k], all_terms + 2 * br->idx[k]);
}

static inline int64_t block_end(const row_loop *x, int64_t b)
{
    return (b + 1) * x->block < x->n ? (b + 1) * x->block : x->n;
}

/* Rows [b * block, (b + 1) * block) through the short-row kernels. */
static void small_block(const kd_loss *h, const row_loop *px, int64_t b)
{
    const row_loop x = *px;
    const kdi_term_plan tp = x.tp;
    kdi_small_row sr[KDI_ROW_BLOCK];
    block_rows br;
    br.cnt = 0;
    for (int64_t i = b * x.block, end = block_end(&x, b); i < end; i++) {
        row_coeffs rc;
        if (!row_coeffs_of(&x, &tp, i, &rc))
            continue;
        const float *si = x.student + i * x.ld_student;
        const float *qi = x.target ? x.target + i * x.ld_target : NULL;
        const float *ti = x.teacher ? x.teacher + i * x.ld_teacher : NULL;
        sr[br.cnt] = kdi_small_row_of(&x.small, si, ti, qi, rc.g, rc.rt.y, rc.c_soft, rc.c_hard);
        block_add(&br, &rc, i);
    }
    if (br.cnt == 0)
        return;
    kdi_small_run(h, &px->small, sr, br.cnt, br.terms, br.idx, x.mask_out, x.labels_out);
    block_store(&tp, &br, x.all_terms);
}

/* Rows [b * block, (b + 1) * block) through the kind's row kernel. */
static void long_block(const kd_loss *h, const row_loop *px, int64_t b)
{
    const row_loop x = *px;
    const kdi_term_plan tp = x.tp;
    kdi_row rows[KDI_ROW_BLOCK];
    block_rows br;
    br.cnt = 0;
    float *work = kdi_thread_scratch(h) + x.c;
    for (int64_t i = b * x.block, end = block_end(&x, b); i < end; i++) {
        row_coeffs rc;
        if (!row_coeffs_of(&x, &tp, i, &rc))
            continue;
        kdi_row *r = &rows[br.cnt];
        r->s = x.student + i * x.ld_student;
        r->q = x.target ? x.target + i * x.ld_target : NULL;
        r->t = x.teacher ? x.teacher + i * x.ld_teacher
                         : (x.many_teachers ? kdi_teacher_row(h, i) : NULL);
        r->y = rc.rt.y;
        r->g = rc.g;
        r->work = work;
        r->nthr = x.row_thr;
        r->pipe = NULL; /* set by kdi_run_rows */
        r->c_soft = rc.c_soft;
        r->c_hard = rc.c_hard;
        r->g2 = x.grad2 ? x.grad2 + i * x.ld_grad2 : NULL;
        r->mask = x.mask_out ? x.mask_out + i : NULL;
        r->label = x.labels_out ? x.labels_out + i : NULL;
        block_add(&br, &rc, i);
    }
    kdi_run_rows(h, rows, br.cnt, br.terms);
    block_store(&tp, &br, x.all_terms);
}

/* The bound buffers and the per-call settings of one row loop. */
static void row_loop_init(row_loop *x, kd_loss *h, kdi_mode mode, int64_t n, int row_thr,
                          const float *upstream)
{
    const int want_grad = mode != KDI_FORWARD;
    const int want_aux = mode != KDI_BACKWARD && is_thresholded(h);
    const int one_teacher = h->n_teachers == 1;
    x->mode = mode;
    x->row_thr = row_thr;
    x->n = n;
    x->c = h->c;
    /* averaged teachers live in one scratch row per thread: one row per block then */
    x->block = h->n_teachers > 1 ? 1 : KDI_ROW_BLOCK;
    x->upstream = upstream;
    x->labels = h->labels;
    x->ignore_index = h->ignore_index;
    x->student = h->student;
    x->target = h->target;
    x->weights = h->weights;
    x->ld_student = h->ld_student;
    x->ld_target = h->ld_target;
    x->teacher = one_teacher ? h->teachers[0] : NULL;
    x->ld_teacher = one_teacher ? h->ld_teachers[0] : 0;
    x->many_teachers = h->n_teachers > 1;
    x->grad = want_grad ? h->grad : NULL;
    x->grad2 = want_grad ? h->grad_teacher : NULL;
    x->ld_grad = h->ld_grad;
    x->ld_grad2 = h->ld_grad_teacher;
    x->mask_out = want_aux ? h->mask_out : NULL;
    x->labels_out = want_aux ? h->labels_out : NULL;
    x->all_terms = h->terms;
    x->is_small = kdi_small_plan_of(h, &x->small);
}

static kd_status run(kd_loss *h, const char *fn, kdi_mode mode, int64_t n, float *loss,
                     const float *upstream)
{
    if (!h)
        return KD_ERR_NULL_POINTER;
    if (kdi_is_batch_kind(h))
        return kdi_batch_run(h, fn, mode, n, loss, upstream);
    if (h->kd->path == KDI_PATH_TWO_BATCH)
        return kdi_worst_case_run(h, fn, mode, n, loss, upstream);
    int64_t valid = 0;
    kd_status st =
        validate(h, fn, mode, n, mode == KDI_BACKWARD ? (const void *)upstream : loss, &valid);
    if (st)
        return st;
    const int want = kdi_resolve_threads(h->threads);
    int nthreads = want;
    if (nthreads > n)
        nthreads = n > 0 ? (int)n : 1;
    /* fewer rows than threads: the rows run one after another, each one's
     * segments on all the threads (kernels with a segmented row pass only) */
    const int row_thr = want > n && h->c >= KDI_SPLIT_C && splits_rows(h) ? want : 1;
    if (row_thr > 1)
        nthreads = 1;
    st = grow(h, fn, n, nthreads);
    if (st)
        return st;
    h->region_threads = nthreads;

    row_loop x;
    row_loop_init(&x, h, mode, n, row_thr, upstream);
    x.tp = kdi_term_plan_of(h, n, valid, nthreads);
    const int64_t nblocks = (n + x.block - 1) / x.block;

    if (x.is_small)
        KDI_PARALLEL_FOR(nthreads, b, nblocks, { small_block(h, &x, b); });
    else
        KDI_PARALLEL_FOR(nthreads, b, nblocks, { long_block(h, &x, b); });

    if (mode != KDI_BACKWARD) {
        double sums[2] = {0.0, 0.0};
        kdi_reduce_rows(h->terms, n, x.tp.red, h->per_sample, loss, sums);
        if (x.tp.red != KD_REDUCTION_NONE)
            *loss = kdi_reduced_loss(&x.tp, sums);
    }
    kdi_clear_error(h->err);
    return KD_OK;
}

/* ---- the term plan (also used by linear_distill.c) ---- */

kdi_term_plan kdi_term_plan_of(const kd_loss *h, int64_t n, int64_t valid, int nthreads)
{
    kdi_term_plan tp;
    tp.labels_in_soft = (h->kd->flags & KDI_F_LABELS_IN_SOFT) != 0;
    tp.is_distill = (h->kd->params & KDI_P_DISTILL) != 0;
    tp.sw = tp.is_distill ? h->soft_weight : 1.0;
    tp.hw = tp.is_distill ? h->hard_weight : 0.0;
    tp.soft_skips_ignored = tp.labels_in_soft || h->normalization == KD_NORMALIZE_VALID;
    tp.has_labels = kdi_labels_bound(h->labels);
    int64_t d_soft = (tp.soft_skips_ignored && tp.has_labels) ? valid : n;
    tp.red = h->reduction;
    /* tllib's UDA loss divides by the number of kept rows (at least 1) */
    if ((h->kd->flags & KDI_F_MEAN_OVER_KEPT) && tp.red == KD_REDUCTION_MEAN) {
        d_soft = kdi_count_confident(h, n, nthreads);
        d_soft = d_soft > 1 ? d_soft : 1;
    }
    /* 1 / denominator of each term for MEAN (an empty term contributes 0) */
    tp.inv_soft = tp.red != KD_REDUCTION_MEAN ? 1.0 : (d_soft > 0 ? 1.0 / (double)d_soft : 0.0);
    tp.inv_hard = tp.red != KD_REDUCTION_MEAN ? 1.0 : (valid > 0 ? 1.0 / (double)valid : 0.0);
    return tp;
}

void kdi_reduce_rows(const double *terms, int64_t n, int red, float *per_sample, float *loss_vec,
                     double sums[2])
{
    double s_soft = sums[0], s_hard = sums[1];
    for (int64_t i = 0; i < n; i++) {
        float li = (float)(terms[2 * i] + terms[2 * i + 1]);
        if (per_sample)
            per_sample[i] = li;
        if (red == KD_REDUCTION_NONE)
            loss_vec[i] = li;
        s_soft += terms[2 * i];
        s_hard += terms[2 * i + 1];
    }
    sums[0] = s_soft;
    sums[1] = s_hard;
}

static kd_status loss_forward_locked(kd_loss *h, int64_t n, float *loss)
{
    return run(h, "kd_loss_forward", KDI_FORWARD, n, loss, NULL);
}

kd_status kd_loss_forward(kd_loss *h, int64_t n, float *loss)
{
    KDI_GUARDED(h, loss_forward_locked(h, n, loss));
}

static kd_status loss_backward_locked(kd_loss *h, int64_t n, const float *upstream)
{
    return run(h, "kd_loss_backward", KDI_BACKWARD, n, NULL, upstream);
}

kd_status kd_loss_backward(kd_loss *h, int64_t n, const float *upstream)
{
    KDI_GUARDED(h, loss_backward_locked(h, n, upstream));
}

static kd_status loss_forward_backward_locked(kd_loss *h, int64_t n, float *loss)
{
    return run(h, "kd_loss_forward_backward", KDI_FUSED, n, loss, NULL);
}

kd_status kd_loss_forward_backward(kd_loss *h, int64_t n, float *loss)
{
    KDI_GUARDED(h, loss_forward_backward_locked(h, n, loss));
}
