/* Shared row kernels: every loss computes its softmax, log-softmax and row
 * sums through these functions, so numerical care lives in one place. */
#ifndef KDI_ROWOPS_H
#define KDI_ROWOPS_H

#include <math.h>
#include <stdint.h>

/* Log-sum-exp of scale * x over a row, kept as (max, logsum) so that
 *   log softmax(scale * x)_c = scale * (x_c - max) - logsum
 * which keeps full precision for logits of any magnitude (x_c - max is exact
 * when x_c is near max) and never overflows exp.  scale must be > 0. */
typedef struct {
    float max;
    float logsum;
} kdi_lse;

typedef struct kdi_simd_ops kdi_simd_ops;

/* with the SIMD variant v (a handle's h->ops: resolved once, not per row) */
kdi_lse kdi_row_lse_ops(const kdi_simd_ops *v, const float *x, int64_t c, float scale);
/* the same with the best variant of this CPU, looked up per call (for callers
 * without a handle) */
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

/* Index of the largest element with torch.max / argmax semantics: the first
 * maximum, or the first NaN when the row holds one (so a NaN row propagates
 * as in PyTorch instead of being skipped as kdi_row_argmax does).  c >= 1. */
int64_t kdi_row_argmax_torch(const float *x, int64_t c);

/* log(a e^x + b e^y) from la = log a, lb = log b, exact for far-apart x and y
 * (the log of a mixture of two distributions, e.g. JSD's log M). */
static inline float kdi_log_mix(float la, float x, float lb, float y)
{
    float u = la + x, v = lb + y;
    float m = u > v ? u : v;
    if (m == -INFINITY)
        return -INFINITY;
    return m + log1pf(expf((u > v ? v : u) - m));
}

/* Backward through p = softmax(scale * x) for one row, given the row's
 * kdi_lse and the gradient v with respect to p:
 *   g_j = coef * p_j * (v_j - sum_k p_k v_k)
 * (coef carries the scale and the upstream factor).  g may equal x: every
 * x_j is read before g_j is written.  v may not alias g. */
void kdi_softmax_backward(float *g, const float *x, kdi_lse l, float scale, const float *v,
                          float coef, int64_t c);

#endif
