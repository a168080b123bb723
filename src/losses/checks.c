/* Argument checks shared by every execution path (the per-row driver, the
 * batch losses, the worst-case estimation loss): extents that overflow,
 * overlapping buffers, non-finite inputs, and workspace growth. */
#include <math.h>
#include <stdlib.h>

#include "losses/loss_internal.h"

kd_status kdi_check_extent(kd_loss *h, const char *fn, const char *what, int64_t n, int64_t ld)
{
    int64_t e;
    if (n > 0 && (!kdi_mul_ok(n - 1, ld, &e) || e > INT64_MAX / 4 - h->c))
        return kdi_fail(h->err, KD_ERR_SHAPE, "%s: %s extent (n = %lld, ld = %lld) overflows", fn,
                        what, (long long)n, (long long)ld);
    return KD_OK;
}

kd_status kdi_check_finite_matrix(kd_loss *h, const char *fn, const char *what, const float *x,
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

kd_status kdi_check_finite_upstream(kd_loss *h, const char *fn, const float *up, int64_t m)
{
    for (int64_t i = 0; i < m; i++)
        if (!isfinite(up[i]))
            return kdi_fail(h->err, KD_ERR_NOT_FINITE, "%s: upstream[%lld] = %g is not finite", fn,
                            (long long)i, (double)up[i]);
    return KD_OK;
}

kd_status kdi_grow(kd_loss *h, const char *fn, void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return KD_OK;
    size_t bytes;
    if (!kdi_size_mul(need, elem, &bytes))
        return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "%s: workspace of %zu elements", fn, need);
    void *q = realloc(*p, bytes);
    if (!q)
        return kdi_fail(h->err, KD_ERR_OUT_OF_MEMORY, "%s: workspace of %zu elements", fn, need);
    *p = q;
    *cap = need;
    return KD_OK;
}

kd_status kdi_check_labels_weights(kd_loss *h, const char *fn, int64_t n, int64_t *valid)
{
    int64_t count = n;
    if (kdi_labels_bound(h->labels)) {
        count = 0;
        for (int64_t i = 0; i < n; i++) {
            /* compared in int64: an int64 label outside the int32 range is
             * refused here, never truncated onto a valid class */
            const int64_t y = h->labels.l64 ? h->labels.l64[i] : h->labels.l32[i];
            if (y == h->ignore_index)
                continue;
            if (y < 0 || y >= h->c)
                return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                                "%s: labels[%lld] = %lld outside [0, %lld) and not ignore_index %d",
                                fn, (long long)i, (long long)y, (long long)h->c,
                                (int)h->ignore_index);
            count++;
        }
    }
    if (h->weights)
        for (int64_t i = 0; i < n; i++)
            if (!(h->weights[i] >= 0.0f) || isinf(h->weights[i]))
                return kdi_fail(h->err, KD_ERR_INVALID_ARGUMENT,
                                "%s: weights[%lld] = %g is not a finite value >= 0", fn,
                                (long long)i, (double)h->weights[i]);
    *valid = count;
    return KD_OK;
}
