/* Argument checks and messages of the label tools (labels_internal.h). */
#include "labels/labels_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

kd_status kdi_label_fail(char *err, size_t err_size, kd_status status, const char *fmt, ...)
{
    if (err && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return status;
}

void kdi_label_clear(char *err, size_t err_size)
{
    if (err && err_size > 0)
        err[0] = '\0';
}

kd_status kdi_label_check_shape(const char *fn, const char *name, int64_t n, int64_t c, int64_t ld,
                                char *err, size_t err_size)
{
    if (n < 0)
        return kdi_label_fail(err, err_size, KD_ERR_SHAPE, "%s: n = %lld < 0", fn, (long long)n);
    if (c < 1 || c > INT32_MAX)
        return kdi_label_fail(err, err_size, KD_ERR_SHAPE, "%s: c = %lld is outside [1, 2^31)", fn,
                              (long long)c);
    if (ld < c)
        return kdi_label_fail(err, err_size, KD_ERR_SHAPE, "%s: %s = %lld < c = %lld", fn, name,
                              (long long)ld, (long long)c);
    /* Byte extent must fit in size_t and int64: (n - 1) * ld + c floats. */
    if (n > 0 && (n - 1 > (INT64_MAX / 4 - c) / ld))
        return kdi_label_fail(err, err_size, KD_ERR_SHAPE,
                              "%s: n = %lld rows of stride %s = %lld overflow", fn, (long long)n,
                              name, (long long)ld);
    return KD_OK;
}

kd_status kdi_label_check_probs(const char *fn, const char *name, const float *x, int64_t n,
                                int64_t c, int64_t ld, char *err, size_t err_size)
{
    for (int64_t i = 0; i < n; i++) {
        const float *row = x + i * ld;
        for (int64_t j = 0; j < c; j++) {
            float v = row[j];
            if (!isfinite(v))
                return kdi_label_fail(err, err_size, KD_ERR_NOT_FINITE, "%s: %s[%lld][%lld] = %g",
                                      fn, name, (long long)i, (long long)j, (double)v);
            if (!(v >= 0.0f && v <= 1.0f))
                return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                                      "%s: %s[%lld][%lld] = %g is not a probability in [0, 1]", fn,
                                      name, (long long)i, (long long)j, (double)v);
        }
    }
    return KD_OK;
}

kd_status kdi_label_check_logits(const char *fn, const char *name, const float *x, int64_t n,
                                 int64_t c, int64_t ld, char *err, size_t err_size)
{
    for (int64_t i = 0; i < n; i++) {
        const float *row = x + i * ld;
        int any_finite = 0;
        for (int64_t j = 0; j < c; j++) {
            float v = row[j];
            if (isnan(v) || v == INFINITY)
                return kdi_label_fail(err, err_size, KD_ERR_NOT_FINITE, "%s: %s[%lld][%lld] = %g",
                                      fn, name, (long long)i, (long long)j, (double)v);
            any_finite |= v != -INFINITY;
        }
        if (!any_finite)
            return kdi_label_fail(err, err_size, KD_ERR_NOT_FINITE,
                                  "%s: row %lld of %s is -inf everywhere (no softmax exists)", fn,
                                  (long long)i, name);
    }
    return KD_OK;
}

kd_status kdi_label_check_finite(const char *fn, const char *name, const float *x, int64_t n,
                                 int64_t c, int64_t ld, char *err, size_t err_size)
{
    for (int64_t i = 0; i < n; i++) {
        const float *row = x + i * ld;
        for (int64_t j = 0; j < c; j++)
            if (!isfinite(row[j]))
                return kdi_label_fail(err, err_size, KD_ERR_NOT_FINITE, "%s: %s[%lld][%lld] = %g",
                                      fn, name, (long long)i, (long long)j, (double)row[j]);
    }
    return KD_OK;
}

kd_status kdi_label_check_labels(const char *fn, const int32_t *labels, int64_t n, int64_t c,
                                 int32_t ignore_index, char *err, size_t err_size)
{
    if (ignore_index >= 0 && ignore_index < c)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: ignore_index = %d is a class in [0, %lld)", fn,
                              (int)ignore_index, (long long)c);
    for (int64_t i = 0; i < n; i++) {
        int32_t y = labels[i];
        if (y != ignore_index && (y < 0 || y >= c))
            return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                                  "%s: labels[%lld] = %d is outside [0, %lld) and not "
                                  "ignore_index (%d)",
                                  fn, (long long)i, (int)y, (long long)c, (int)ignore_index);
    }
    return KD_OK;
}
