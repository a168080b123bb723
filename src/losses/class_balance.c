/* Class balance (tllib self-ensemble ClassBalanceLoss), a batch loss:
 *   x_c = (1/n) sum_i p_ic,  L = (1/C) sum_c BCE(x_c, 1/C)
 * with PyTorch's BCE (logs clamped at -100) and its backward
 *   dL/dx_c = (1/C) (x_c - y) / max(x_c (1 - x_c), 1e-12),
 * spread to every row: dL/dp_ic = dL/dx_c / n, then through the softmax when
 * the rows are logits.  Statistics: the C column sums and the row count
 * (additive over rows, so sums over ranks give the global batch's).  One
 * pass over the rows: each row's softmax (the shared SIMD kernel) is added to
 * the column sums of its row chunk; the chunks depend on n and C only and
 * are added in chunk order, so any thread count gives the same bits.  The
 * finish needs only those sums: x_c is their mean over the global N rows,
 * and row i's gradient is dL/dx_c / N through its own p_i, with the
 * dominant class's share taken from the other classes (1 - p_m of a
 * saturated row is not representable next to p_m in float). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/parallel.h"
#include "losses/loss_internal.h"

/* at least this many rows per chunk, at most MAX_CHUNKS chunks, and chunk
 * sums of at most PART_DOUBLES doubles (8 MiB) unless that leaves fewer
 * than two chunks */
#define CHUNK_ROWS 16
#define MAX_CHUNKS 32
#define PART_DOUBLES ((int64_t)1 << 20)
#define GROUP KDI_CB_GROUP

int64_t kdi_class_balance_chunks(int64_t n, int64_t c)
{
    int64_t k = (n + CHUNK_ROWS - 1) / CHUNK_ROWS;
    int64_t cap = c > 0 ? PART_DOUBLES / c : MAX_CHUNKS;
    cap = cap < 2 ? 2 : (cap > MAX_CHUNKS ? MAX_CHUNKS : cap);
    k = k > cap ? cap : k;
    return k < 1 ? 1 : k;
}

/* No per-row values: the statistics and gradient passes compute each row's
 * softmax where they need it (the statistics pass of a call with a gradient
 * leaves it in the gradient rows). */
void kdi_class_balance_rows(const kd_loss *h, kdi_batch *b)
{
    (void)h;
    (void)b;
}

void kdi_class_balance_stats(const kd_loss *h, kdi_batch *b, double *out)
{
    const int64_t n = b->n, c = h->c, k = b->nchunks, per = (n + k - 1) / k;
    const int logits = h->input_type == KD_INPUT_LOGITS;
    /* With logits the finish accepts every statistic these rows give (each
     * p <= 1, so each mean is in [0, 1]), so a call that goes on to the
     * gradient may keep the softmax rows in the gradient rows (in place: once
     * a group of rows has been read). */
    const int stash = logits && b->to_grad, in_place = h->grad == h->student;
    KDI_PARALLEL_FOR(b->nthreads, q, k, {
        float *work = kdi_batch_scratch(b, omp_get_thread_num()), *p = work + KDI_SIMD_WORK(c);
        double *col = b->part + q * c;
        const int64_t i1 = (q + 1) * per < n ? (q + 1) * per : n;
        for (int64_t j = 0; j < c; j++)
            col[j] = 0.0;
        for (int64_t i0 = q * per; i0 < i1; i0 += GROUP) {
            /* up to GROUP rows at a time: their probabilities, then one
             * update of the column sums (fewer passes over them) */
            const float *r[GROUP];
            const int cnt = i1 - i0 < GROUP ? (int)(i1 - i0) : GROUP;
            for (int u = 0; u < cnt; u++) {
                const int64_t i = i0 + u;
                r[u] = h->student + i * h->ld_student;
                if (logits) {
                    float *dst = stash && !in_place ? h->grad + i * h->ld_grad : p + u * c;
                    kdi_batch_softmax(r[u], dst, c, work);
                    r[u] = dst;
                }
            }
            if (stash && in_place) /* the group's logits are read: its rows take P */
                for (int u = 0; u < cnt; u++)
                    memcpy(h->grad + (i0 + u) * h->ld_grad, r[u], sizeof(float) * (size_t)c);
            if (cnt == GROUP) {
                for (int64_t j = 0; j < c; j++)
                    col[j] += ((double)r[0][j] + r[1][j]) + ((double)r[2][j] + r[3][j]);
            } else {
                for (int u = 0; u < cnt; u++)
                    for (int64_t j = 0; j < c; j++)
                        col[j] += r[u][j];
            }
        }
    });
    /* the chunks in chunk order, column blocks in parallel */
    const int64_t block = 1024, blocks = (c + block - 1) / block;
    KDI_PARALLEL_FOR(b->nthreads, t, blocks, {
        const int64_t j0 = t * block, j1 = j0 + block < c ? j0 + block : c;
        for (int64_t j = j0; j < j1; j++)
            out[j] = b->part[j];
        for (int64_t q = 1; q < k; q++)
            for (int64_t j = j0; j < j1; j++)
                out[j] += b->part[q * c + j];
    });
    out[c] = (double)n;
}

static double clamped_log(double x)
{
    double l = log(x);
    return l < -100.0 ? -100.0 : l; /* also maps log 0 = -Inf to -100; NaN stays NaN */
}

kd_status kdi_class_balance_finish(kd_loss *h, const char *fn, kdi_batch *b, const double *stats,
                                   double *loss)
{
    const int64_t c = h->c;
    const double y = 1.0 / (double)c, inv_n = 1.0 / b->count;
    const int logits = h->input_type == KD_INPUT_LOGITS;
    int64_t top = -1; /* with logits, the one class with mean > 1/2, if any */
    for (int64_t j = 0; j < c; j++) {
        double x = stats[j] * inv_n;
        if (x < 0.0 || x > 1.0)
            return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                            "%s: mean probability of class %lld = %g outside [0, 1]", fn,
                            (long long)j, x);
        if (x > 0.5)
            top = j;
    }
    double rest = 0.0; /* 1 - x_top as the sum of the other classes: no cancellation */
    if (logits && top >= 0)
        for (int64_t j = 0; j < c; j++)
            rest += j == top ? 0.0 : stats[j] * inv_n;
    double total = 0.0;
    for (int64_t j = 0; j < c; j++) {
        double x = stats[j] * inv_n;
        double one_minus = logits && j == top ? rest : 1.0 - x;
        total -= y * clamped_log(x) + (1.0 - y) * clamped_log(one_minus);
        double d = x * one_minus;
        b->vec[j] = (float)((x - y) / (d > 1e-12 ? d : 1e-12) * y * inv_n);
    }
    *loss = total * y;
    return KD_OK;
}

void kdi_class_balance_grad(const kd_loss *h, const kdi_batch *b, float up)
{
    const int64_t n = b->n, c = h->c;
    KDI_PARALLEL_FOR(b->nthreads, i, n, {
        float *g = h->grad + i * h->ld_grad;
        if (h->input_type == KD_INPUT_LOGITS) {
            if (!b->to_grad) { /* kd_loss_finish: the softmax is computed here */
                float *work = kdi_batch_scratch(b, omp_get_thread_num()),
                      *p = work + KDI_SIMD_WORK(c);
                kdi_batch_softmax(h->student + i * h->ld_student, p, c, work);
                kdi_batch_softmax_grad(g, p, b->vec, up, c);
            } else {
                kdi_batch_softmax_grad(g, g, b->vec, up, c);
            }
        } else {
            for (int64_t j = 0; j < c; j++)
                g[j] = up * b->vec[j];
        }
    });
}
