/* Class balance (tllib self-ensemble ClassBalanceLoss), a batch loss:
 *   x_c = (1/n) sum_i p_ic,  L = (1/C) sum_c BCE(x_c, 1/C)
 * with PyTorch's BCE (logs clamped at -100) and its backward
 *   dL/dx_c = (1/C) (x_c - y) / max(x_c (1 - x_c), 1e-12),
 * spread to every row: dL/dp_ic = dL/dx_c / n, then through the softmax when
 * the rows are logits.  Statistics: the C column sums and the row count
 * (additive over rows, so sums over ranks give the global batch's), each
 * column summed in row order by one thread so that any thread count gives
 * the same bits.  The finish needs only those sums: x_c is their mean over
 * the global N rows, and row i's gradient is dL/dx_c / N through its own p_i. */
#include <math.h>

#include "losses/loss_internal.h"

#define COLUMN_BLOCK 256

static inline float prob_at(const kd_loss *h, const kdi_batch *b, int64_t i, int64_t j)
{
    const float *x = h->student + i * h->ld_student;
    return h->input_type == KD_INPUT_LOGITS ? expf(kdi_log_softmax(x[j], 1.0f, b->lse[i])) : x[j];
}

void kdi_class_balance_rows(const kd_loss *h, kdi_batch *b)
{
    const int64_t n = b->n, c = h->c;
    if (h->input_type == KD_INPUT_LOGITS) {
        KDI_PARALLEL_FOR(b->nthreads, i, n,
                         { b->lse[i] = kdi_row_lse(h->student + i * h->ld_student, c, 1.0f); });
    }
}

void kdi_class_balance_stats(const kd_loss *h, kdi_batch *b, double *out)
{
    const int64_t n = b->n, c = h->c;
    const int64_t blocks = (c + COLUMN_BLOCK - 1) / COLUMN_BLOCK;
    KDI_PARALLEL_FOR(b->nthreads, k, blocks, {
        const int64_t j0 = k * COLUMN_BLOCK, j1 = j0 + COLUMN_BLOCK < c ? j0 + COLUMN_BLOCK : c;
        double *col = out;
        for (int64_t j = j0; j < j1; j++)
            col[j] = 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = j0; j < j1; j++)
                col[j] += prob_at(h, b, i, j);
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
            kdi_softmax_backward(g, h->student + i * h->ld_student, b->lse[i], 1.0f, b->vec, up, c);
        } else {
            for (int64_t j = 0; j < c; j++)
                g[j] = up * b->vec[j];
        }
    });
}
