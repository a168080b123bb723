/* Internal: per-handle error messages. */
#ifndef KDI_ERROR_H
#define KDI_ERROR_H

#include "kdlib/core.h"

#define KDI_ERROR_SIZE 256

/* Format a message into buf (KDI_ERROR_SIZE bytes; NULL allowed) and return
 * status, so that error paths read `return kdi_fail(h->err, KD_ERR_..., ...)`. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
kd_status
kdi_fail(char *buf, kd_status status, const char *fmt, ...);

/* Clear the message (called at the start of every successful entry point). */
void kdi_clear_error(char *buf);

/* The message buffer of a handle reached through a const pointer: getters
 * take const handles and still record their message.  Handles are always
 * allocated by their create function, never defined const, so writing their
 * message is defined behaviour. */
static inline char *kdi_err_of(const char *err) { return (char *)err; }

/* Number of threads to use for a requested count (0 = all cores). */
int kdi_resolve_threads(int32_t requested);

/* Multiply two non-negative sizes; returns 0 when the product overflows
 * int64 or exceeds limit (limit <= 0: no extra limit). */
int kdi_mul_ok(int64_t a, int64_t b, int64_t *out);

#endif
