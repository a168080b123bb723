/* Internal: argument checks and error messages shared by the label tools
 * (include/kdlib/labels.h).  These functions take a caller-sized message
 * buffer (err, err_size), unlike the handles' fixed KDI_ERROR_SIZE buffers. */
#ifndef KDI_LABELS_INTERNAL_H
#define KDI_LABELS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/bufcheck.h"
#include "kdlib/core.h"

/* Format a message into err (err_size bytes; NULL or 0 skips) and return status. */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
kd_status
kdi_label_fail(char *err, size_t err_size, kd_status status, const char *fmt, ...);

/* Empty the message (successful calls). */
void kdi_label_clear(char *err, size_t err_size);

/* n >= 0, 1 <= c <= INT32_MAX, ld >= c and (n - 1) * ld + c fits in int64.
 * Pointer checks are the caller's. */
kd_status kdi_label_check_shape(const char *fn, const char *name, int64_t n, int64_t c, int64_t ld,
                                char *err, size_t err_size);

/* Every element of the n x c matrix finite and in [0, 1]. */
kd_status kdi_label_check_probs(const char *fn, const char *name, const float *x, int64_t n,
                                int64_t c, int64_t ld, char *err, size_t err_size);

/* Every element not NaN and not +Inf, and at least one finite value per row. */
kd_status kdi_label_check_logits(const char *fn, const char *name, const float *x, int64_t n,
                                 int64_t c, int64_t ld, char *err, size_t err_size);

/* Every element finite. */
kd_status kdi_label_check_finite(const char *fn, const char *name, const float *x, int64_t n,
                                 int64_t c, int64_t ld, char *err, size_t err_size);

/* labels[i] in [0, c) or == ignore_index, and ignore_index outside [0, c). */
kd_status kdi_label_check_labels(const char *fn, const int32_t *labels, int64_t n, int64_t c,
                                 int32_t ignore_index, char *err, size_t err_size);

#endif
