/* Shared row kernels: every loss computes its softmax, log-softmax and row
 * sums through these functions, so numerical care lives in one place. */
#ifndef KDI_ROWOPS_H
#define KDI_ROWOPS_H

#include <stdint.h>

/* Log-sum-exp of scale * x over a row, kept as (max, logsum) so that
 *   log softmax(scale * x)_c = scale * (x_c - max) - logsum
 * which keeps full precision for logits of any magnitude (x_c - max is exact
 * when x_c is near max) and never overflows exp.  scale must be > 0. */
typedef struct {
    float max;
    float logsum;
} kdi_lse;

kdi_lse kdi_row_lse(const float *x, int64_t c, float scale);

/* log softmax(scale * x)_c from a row's kdi_lse. */
static inline float kdi_log_softmax(float x, float scale, kdi_lse l)
{
    return scale * (x - l.max) - l.logsum;
}

/* Largest element of a row (NaN if any element is NaN). */
float kdi_row_max(const float *x, int64_t c);

/* Index of the largest element of a row, the lowest index on ties (as
 * numpy.argmax).  Unlike numpy, NaN elements are never selected (a row of
 * NaN only gives 0); callers that reject NaN validate first.  c >= 1. */
int64_t kdi_row_argmax(const float *x, int64_t c);

/* Sum of a row, accumulated in double. */
double kdi_row_sum(const float *x, int64_t c);

/* out = sum_k w[k] * rows[k], weights already normalised (out may not alias). */
void kdi_row_average(float *out, const float *const *rows, const float *w, int32_t k, int64_t c);

/* 1 when every element of a row is finite, else 0 and *bad the first bad column. */
int kdi_row_all_finite(const float *x, int64_t c, int64_t *bad);

#endif
