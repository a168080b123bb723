/* Execution paths of the batch losses (class balance, MCC), whose value
 * depends on the whole batch.  Every entry validates everything first, then
 * runs the pieces
 *   rows        (per-row values kept for the gradient pass)
 *   statistics  (additive over rows: what a distributed caller all-reduces)
 *   finish      (loss and the gradient's coefficients from the statistics)
 *   gradient    (one pass over the rows)
 * in the handle's workspace, which grows only when n or C grows.
 *   forward / backward / forward_backward: rows, statistics into the
 *     handle's own buffer, finish, gradient;
 *   kd_loss_local_stats: rows, statistics into the caller's buffer;
 *   kd_loss_finish: rows (unless the last local_stats left them for the same
 *     rows), finish from the caller's summed statistics, gradient.
 * Outputs are written only after the finish has accepted the statistics. */
#include <math.h>
#include <omp.h>

#include "losses/loss_internal.h"

/* Counts above 2^53 are not exact in a double. */
#define MAX_EXACT_COUNT 9007199254740992.0

int64_t kdi_batch_stats_size(const kd_loss *h)
{
    if (h->kind == KD_LOSS_MCC)
        return h->c * h->c + 2;
    return h->kind == KD_LOSS_FAIRNESS ? 2 * h->c + 1 : h->c + 1;
}

static const char *kind_name(kd_loss_kind k)
{
    return k == KD_LOSS_MCC ? "MCC" : k == KD_LOSS_FAIRNESS ? "fairness" : "class balance";
}

/* The inputs besides the student: FAIRNESS's weights (every entry) and class
 * vectors (vectors != 0: the entries that finish). */
static kd_status check_inputs(kd_loss *h, const char *fn, int64_t n, int vectors)
{
    int64_t valid;
    if (vectors && h->kind == KD_LOSS_FAIRNESS) {
        kd_status st = kdi_fairness_check_vectors(h, fn);
        if (st)
            return st;
    }
    return kdi_check_labels_weights(h, fn, n, &valid);
}

/* Checks every batch-loss entry shares: n, the student matrix, and the
 * gradient output when it will be written. */
static kd_status check_rows(kd_loss *h, const char *fn, int64_t n, int write_grad)
{
    if (n < 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, "%s: n = %lld < 0", fn, (long long)n);
    if (!h->student)
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: student logits not bound", fn);
    if (h->kind == KD_LOSS_MCC && n > INT32_MAX)
        return kdi_fail(h->err, KD_ERR_SHAPE, "%s: n = %lld exceeds the BLAS int range", fn,
                        (long long)n);
    kd_status st = kdi_check_extent(h, fn, "student", n, h->ld_student);
    if (!st && write_grad)
        st = kdi_check_extent(h, fn, "grad", n, h->ld_grad);
    return st;
}

static kd_status check_student_finite(kd_loss *h, const char *fn, int64_t n)
{
    if (h->check_finite)
        return kdi_check_finite_matrix(h, fn, "student", h->student, n, h->ld_student);
    return KD_OK;
}

/* The aliasing check of every batch-loss entry: the student, the weights,
 * the class vectors (vectors != 0: read by the entries that finish), the
 * upstream value (backward) or the statistics read (finish), the gradient (in
 * place over the student allowed), the loss and the statistics written. */
static kd_status check_aliasing(kd_loss *h, const char *fn, int64_t n, const float *upstream,
                                const double *stats_in, double *stats_out, int write_grad,
                                float *loss, int vectors)
{
    const int64_t m = kdi_batch_stats_size(h);
    kdi_buf b[9] = {
        kdi_buf_matrix("the student logits", -1, h->student, n, h->ld_student, h->c, 4, 0),
        kdi_buf_vector("the upstream value", -1, upstream, 1, 4, 0),
        kdi_buf_vector("global_stats", -1, stats_in, m, 8, 0),
        kdi_buf_matrix("the gradient", -1, write_grad ? h->grad : NULL, n, h->ld_grad, h->c, 4, 1),
        kdi_buf_vector("the loss", -1, loss, 1, 4, 1),
        kdi_buf_vector("stats", -1, stats_out, m, 8, 1),
        kdi_buf_vector("the weights", -1, h->weights, n, 4, 0),
        kdi_buf_vector("the class probabilities", -1, vectors ? h->class_probs : NULL, h->c, 4, 0),
        kdi_buf_vector("the label histogram", -1, vectors ? h->label_hist : NULL, h->c, 4, 0),
    };
    b[3].in_place = 0;
    return kdi_check_aliasing(h->err, KDI_ERROR_SIZE, fn, b, 9);
}

/* Lay out the workspace for n rows (grows h->bf and h->bd). */
static kd_status workspace(kd_loss *h, const char *fn, int64_t n, kdi_batch *b)
{
    const size_t c = (size_t)h->c, rows = (size_t)n;
    const int mcc = h->kind == KD_LOSS_MCC, fair = h->kind == KD_LOSS_FAIRNESS;
    int nthreads = kdi_resolve_threads(h->threads);
    nthreads = nthreads > n ? (n > 0 ? (int)n : 1) : nthreads;
    const size_t nstats = (size_t)kdi_batch_stats_size(h);
    /* per thread: the SIMD softmax's work area, then its input row (MCC) or
     * KDI_CB_GROUP softmax rows (class balance; none for fairness) */
    const size_t stride = (size_t)KDI_SIMD_WORK(h->c) + (mcc    ? c
                                                         : fair ? 0
                                                                : (size_t)KDI_CB_GROUP * c);
    const size_t chunks = mcc || fair ? 0 : (size_t)kdi_class_balance_chunks(n, h->c);
    /* floats: 2 n (log-sum-exps) + MCC's 2 n C + C^2, or fairness's n C + C,
     * or C, + the threads' scratch; doubles: the statistics + MCC's 1 + n +
     * 2 C, fairness's 1, or the class balance's chunk partials; every step
     * overflow-checked */
    size_t nf, nd, rc, cc;
    int ok = kdi_size_mul(rows, 2, &nf);
    if (mcc)
        ok = ok && kdi_size_mul(rows, c, &rc) && kdi_size_mul(c, c, &cc) &&
             kdi_size_muladd(rc, 2, nf, &nf) && kdi_size_add(nf, cc, &nf) &&
             kdi_size_muladd(c, 2, rows + 1, &nd) && kdi_size_add(nd, nstats, &nd);
    else if (fair)
        ok = ok && kdi_size_mul(rows, c, &rc) && kdi_size_add(nf, rc, &nf) &&
             kdi_size_add(nf, c, &nf) && kdi_size_add(nstats, 1, &nd);
    else
        ok = ok && kdi_size_add(nf, c, &nf) && kdi_size_muladd(chunks, c, nstats, &nd);
    ok = ok && kdi_size_muladd((size_t)nthreads, stride, nf, &nf);
    if (!ok)
        return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "%s: workspace for n = %lld overflows", fn,
                        (long long)n);
    float *old_bf = h->bf;
    double *old_bd = h->bd;
    kd_status st = kdi_grow(h, fn, (void **)&h->bf, &h->bf_cap, nf, sizeof(float));
    if (!st)
        st = kdi_grow(h, fn, (void **)&h->bd, &h->bd_cap, nd, sizeof(double));
    if (h->bf != old_bf || h->bd != old_bd)
        h->batch_rows.valid = 0;
    if (st)
        return st;
    b->n = n;
    b->count = (double)n;
    b->lse = (kdi_lse *)h->bf;
    b->own = h->bd;
    float *f = h->bf + 2 * rows;
    if (mcc) {
        b->probs = f;
        b->work = f + rows * c;
        b->mat = f + 2 * rows * c;
        b->scratch = b->mat + c * c;
        b->coef = h->bd + nstats;
        b->ew = b->coef + 1;
        b->rsum = b->ew + rows;
    } else if (fair) {
        b->probs = f;
        b->vec = f + rows * c;
        b->scratch = b->vec + c;
        b->coef = h->bd + nstats;
    } else {
        b->vec = f;
        b->scratch = f + c;
        b->part = h->bd + nstats;
        b->nchunks = (int64_t)chunks;
    }
    b->scratch_stride = stride;
    b->nthreads = nthreads;
    return KD_OK;
}

/* One row's softmax through the shared SIMD row kernel: ce_row without a
 * target or label writes g_j = cs softmax(x)_j sum(q), here with cs = 1 and
 * sum(q) = 1.  Its exp flushes results below float's normal range (x_j more
 * than ~87.3 under the row's max) to 0; those are redone in double, so that
 * p_j is exp(x_j - log-sum-exp) down to float's smallest subnormal as with
 * expf (class balance takes the log of column means, MCC divides by column
 * masses: a flushed class would change the loss). */
void kdi_batch_softmax(const float *x, float *p, int64_t c, float *work)
{
    const kdi_simd_ops *ops = kdi_simd(KDI_ISA_AUTO);
    const kdi_simd_label none = {0, -1, 0.0f, 0.0f, 0.0f};
    (void)ops->ce_row(x, NULL, 0, p, c, 1.0f, 0.0f, &none, 1.0f, 1.0f, work, 1, NULL);
    int zero = 0;
    for (int64_t j = 0; j < c; j++)
        zero |= p[j] == 0.0f;
    if (!zero)
        return;
    const float mx = ops->row_max(x, c);
    if (!isfinite(mx)) /* NaN or +Inf: no finite softmax, the kernel's values stand */
        return;
    const double ls = log(ops->row_sumexp(x, c, 1.0f, mx));
    for (int64_t j = 0; j < c; j++)
        if (p[j] == 0.0f)
            p[j] = (float)exp(((double)x[j] - (double)mx) - ls);
}

typedef double kd2 __attribute__((vector_size(16)));

/* sum_j p_j and sum_j p_j v_j over [j0, j1) into acc (acc[0], acc[2]: p;
 * acc[1], acc[3]: p v), in two lanes of doubles each (a fixed order: the
 * same bits for every thread count; two chains hide the add latency) */
static void range_sums(const float *p, const float *v, int64_t j0, int64_t j1, kd2 acc[4])
{
    kd2 s0 = acc[0], t0 = acc[1], s1 = acc[2], t1 = acc[3];
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) {
        const kd2 p0 = {p[j], p[j + 1]}, p1 = {p[j + 2], p[j + 3]};
        s0 += p0;
        s1 += p1;
        t0 += p0 * (kd2){v[j], v[j + 1]};
        t1 += p1 * (kd2){v[j + 2], v[j + 3]};
    }
    for (; j < j1; j++) {
        s0[0] += p[j];
        t0[0] += (double)p[j] * v[j];
    }
    acc[0] = s0;
    acc[1] = t0;
    acc[2] = s1;
    acc[3] = t1;
}

/* One row of logits, p its softmax (p may be g): g_j = up p_j (v_j - sum_k
 * p_k v_k), and for the largest probability m, whose 1 - p_m is
 * sum_{k != m} p_k,
 *   g_m = up p_m (v_m sum_{k != m} p_k - sum_{k != m} p_k v_k)
 * (the difference v_m - sum_k p_k v_k cancels to 0 in float when p_m rounds
 * to 1).  Which of tied maxima is m does not matter: the formula is exact. */
void kdi_batch_softmax_grad(float *g, const float *p, const float *v, float up, int64_t c)
{
    const int64_t m = kdi_simd(KDI_ISA_AUTO)->row_argmax(p, c);
    kd2 acc[4] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
    range_sums(p, v, 0, m, acc);
    range_sums(p, v, m + 1, c, acc);
    const kd2 sp = acc[0] + acc[2], spv = acc[1] + acc[3];
    const double rest = sp[0] + sp[1], dot = spv[0] + spv[1];
    const float pm = p[m];
    const float d = (float)(dot + (double)pm * v[m]);
    for (int64_t j = 0; j < c; j++)
        g[j] = up * p[j] * (v[j] - d);
    g[m] = (float)((double)up * pm * ((double)v[m] * rest - dot));
}

/* Do the workspace's per-row values belong to these n rows of the bound
 * student with the current parameters? */
static int rows_are_current(const kd_loss *h, int64_t n)
{
    return h->batch_rows.valid && h->batch_rows.student == h->student &&
           h->batch_rows.weights == h->weights && h->batch_rows.ld == h->ld_student &&
           h->batch_rows.n == n && h->batch_rows.temperature == h->temperature &&
           h->batch_rows.input_type == h->input_type;
}

static void compute_rows(kd_loss *h, kdi_batch *b)
{
    if (h->kind == KD_LOSS_MCC)
        kdi_mcc_rows(h, b);
    else if (h->kind == KD_LOSS_FAIRNESS)
        kdi_fairness_rows(h, b);
    else
        kdi_class_balance_rows(h, b);
    h->batch_rows.valid = 1;
    h->batch_rows.student = h->student;
    h->batch_rows.weights = h->weights;
    h->batch_rows.ld = h->ld_student;
    h->batch_rows.n = b->n;
    h->batch_rows.temperature = h->temperature;
    h->batch_rows.input_type = h->input_type;
}

static void compute_stats(const kd_loss *h, kdi_batch *b, double *out)
{
    if (h->kind == KD_LOSS_MCC)
        kdi_mcc_stats(h, b, out);
    else if (h->kind == KD_LOSS_FAIRNESS)
        kdi_fairness_stats(h, b, out);
    else
        kdi_class_balance_stats(h, b, out);
}

/* Finish from statistics covering stats[last] = N rows, then (grad != 0)
 * the local gradient rows times up.  N = 0 gives 0 and writes nothing. */
static kd_status finish_and_grad(kd_loss *h, const char *fn, kdi_batch *b, const double *stats,
                                 int grad, float up, double *value)
{
    b->count = stats[kdi_batch_stats_size(h) - 1];
    *value = 0.0;
    if (b->count == 0.0)
        return KD_OK;
    if (h->kind == KD_LOSS_MCC) {
        kdi_mcc_finish(h, b, stats, value);
    } else {
        kd_status st = h->kind == KD_LOSS_FAIRNESS
                           ? kdi_fairness_finish(h, fn, b, stats, value)
                           : kdi_class_balance_finish(h, fn, b, stats, value);
        if (st)
            return st;
    }
    if (grad && b->n > 0) {
        if (h->kind == KD_LOSS_MCC)
            kdi_mcc_grad(h, b, up);
        else if (h->kind == KD_LOSS_FAIRNESS)
            kdi_fairness_grad(h, b, up);
        else
            kdi_class_balance_grad(h, b, up);
        if (h->grad == h->student) /* the rows' inputs are gone */
            h->batch_rows.valid = 0;
    }
    return KD_OK;
}

kd_status kdi_batch_run(kd_loss *h, const char *fn, kdi_mode mode, int64_t n, float *loss,
                        const float *upstream)
{
    if (n < 0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT, "%s: n = %lld < 0", fn, (long long)n);
    if (!(mode == KDI_BACKWARD ? (const void *)upstream : loss))
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn,
                        mode == KDI_BACKWARD ? "upstream" : "loss");
    if (!h->student)
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: student logits not bound", fn);
    if (mode != KDI_FORWARD && !h->grad)
        return kdi_fail(h->err, KD_ERR_MISSING_INPUT, "%s: no gradient output bound", fn);
    kd_status st = check_rows(h, fn, n, mode != KDI_FORWARD);
    if (!st)
        st = check_aliasing(h, fn, n, mode == KDI_BACKWARD ? upstream : NULL, NULL, NULL,
                            mode != KDI_FORWARD, mode == KDI_BACKWARD ? NULL : loss, 1);
    if (!st)
        st = check_inputs(h, fn, n, 1);
    if (!st)
        st = check_student_finite(h, fn, n);
    if (!st && h->check_finite && mode == KDI_BACKWARD)
        st = kdi_check_finite_upstream(h, fn, upstream, 1);
    if (st)
        return st;
    kdi_batch b = {0};
    st = workspace(h, fn, n, &b);
    if (st)
        return st;
    compute_rows(h, &b);
    b.to_grad = mode != KDI_FORWARD;
    compute_stats(h, &b, b.own);
    double value;
    const float up = mode == KDI_BACKWARD ? upstream[0] : 1.0f;
    st = finish_and_grad(h, fn, &b, b.own, mode != KDI_FORWARD, up, &value);
    if (st)
        return st;
    if (mode != KDI_BACKWARD)
        *loss = (float)value;
    kdi_clear_error(h->err);
    return KD_OK;
}

/* ---- split API (loss.h) ---- */

static kd_status check_kind(kd_loss *h, const char *fn)
{
    if (!kdi_is_batch_kind(h))
        return kdi_fail(
            h->err, KD_ERR_UNSUPPORTED,
            "%s: kind %d has no batch statistics (only CLASS_BALANCE, MCC and FAIRNESS)", fn,
            (int)h->kind);
    return KD_OK;
}

/* h is const but leaves its message as every failing call (see params.c) */
static kd_status loss_stats_size_locked(kd_loss *h, int64_t *count)
{
    if (!count)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "kd_loss_stats_size: count is NULL");
    kd_status st = check_kind(h, "stats_size");
    if (st)
        return st;
    *count = kdi_batch_stats_size(h);
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_stats_size(const kd_loss *h, int64_t *count)
{
    kd_loss *m = (kd_loss *)(uintptr_t)h;
    KDI_GUARDED(m, loss_stats_size_locked(m, count));
}

static kd_status loss_local_stats_locked(kd_loss *h, int64_t n, double *stats)
{
    static const char fn[] = "kd_loss_local_stats";
    if (!h)
        return KD_ERR_NULL_POINTER;
    kd_status st = check_kind(h, fn);
    if (st)
        return st;
    if (!stats)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "%s: stats is NULL", fn);
    st = check_rows(h, fn, n, 0);
    if (st)
        return st;
    st = check_aliasing(h, fn, n, NULL, NULL, stats, 0, NULL, 0);
    if (!st)
        st = check_inputs(h, fn, n, 0);
    if (!st)
        st = check_student_finite(h, fn, n);
    if (st)
        return st;
    kdi_batch b = {0};
    st = workspace(h, fn, n, &b);
    if (st)
        return st;
    compute_rows(h, &b);
    compute_stats(h, &b, stats);
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_local_stats(kd_loss *h, int64_t n, double *stats)
{
    KDI_GUARDED(h, loss_local_stats_locked(h, n, stats));
}

static kd_status loss_finish_locked(kd_loss *h, int64_t n, const double *global_stats, float *loss)
{
    static const char fn[] = "kd_loss_finish";
    if (!h)
        return KD_ERR_NULL_POINTER;
    kd_status st = check_kind(h, fn);
    if (st)
        return st;
    if (!global_stats || !loss)
        return kdi_fail(h->err, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn,
                        global_stats ? "loss" : "global_stats");
    const int grad = h->grad != NULL;
    st = check_rows(h, fn, n, grad);
    if (st)
        return st;
    st = check_aliasing(h, fn, n, NULL, global_stats, NULL, grad, loss, 1);
    if (!st)
        st = check_inputs(h, fn, n, 1);
    if (!st)
        st = check_student_finite(h, fn, n);
    if (st)
        return st;
    const int64_t m = kdi_batch_stats_size(h);
    if (h->check_finite)
        for (int64_t k = 0; k < m; k++)
            if (!isfinite(global_stats[k]))
                return kdi_fail(h->err, KD_ERR_NOT_FINITE,
                                "%s: global_stats[%lld] = %g is not finite", fn, (long long)k,
                                global_stats[k]);
    const double count = global_stats[m - 1];
    if (!(count >= (double)n) || count != floor(count) || count > MAX_EXACT_COUNT)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                        "%s: global_stats[%lld] = %g is not a row count >= n = %lld (the %s "
                        "statistics must be summed over every rank, this one included)",
                        fn, (long long)(m - 1), count, (long long)n, kind_name(h->kind));
    if (h->kind == KD_LOSS_MCC && count > 0.0 && global_stats[m - 2] <= 0.0)
        return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                        "%s: global_stats[%lld] = %g: the sum of the entropy weights must be > 0 "
                        "for N = %g rows",
                        fn, (long long)(m - 2), global_stats[m - 2], count);
    kdi_batch b = {0};
    st = workspace(h, fn, n, &b);
    if (st)
        return st;
    if (!rows_are_current(h, n))
        compute_rows(h, &b);
    double value;
    st = finish_and_grad(h, fn, &b, global_stats, grad, 1.0f, &value);
    if (st)
        return st;
    *loss = (float)value;
    kdi_clear_error(h->err);
    return KD_OK;
}

kd_status kd_loss_finish(kd_loss *h, int64_t n, const double *global_stats, float *loss)
{
    KDI_GUARDED(h, loss_finish_locked(h, n, global_stats, loss));
}
