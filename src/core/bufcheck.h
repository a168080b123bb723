/* Internal: the checks every entry point runs on the caller's buffers before
 * anything is written: overflow-checked size arithmetic and the one aliasing
 * check (every output against every other bound buffer). */
#ifndef KDI_BUFCHECK_H
#define KDI_BUFCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "kdlib/core.h"

/* Overflow-checked size arithmetic: 1 and *out = a * b (a + b), or 0 when
 * the result does not fit in size_t (*out untouched).  Every workspace and
 * allocation size of the library is formed with these; a 0 becomes
 * KD_ERR_OUT_OF_MEMORY (a size no allocator can give) or KD_ERR_SHAPE (an
 * extent), as each entry point documents. */
static inline int kdi_size_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}
static inline int kdi_size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return 0;
    *out = a + b;
    return 1;
}
/* a * b + c in one step */
static inline int kdi_size_muladd(size_t a, size_t b, size_t c, size_t *out)
{
    size_t p;
    return kdi_size_mul(a, b, &p) && kdi_size_add(p, c, out);
}

/* One buffer a call reads or writes: its byte range [p, p + bytes). */
typedef struct {
    const char *name; /* for the message */
    int index;        /* >= 0: printed after the name ("teacher 1"), else -1 */
    const void *p;    /* NULL: not bound, skipped */
    size_t bytes;     /* 0: empty, never overlaps */
    int64_t ld;       /* row stride in elements (matrices), 0 for vectors */
    int out;          /* written by the call */
    int in_place;     /* outputs: index in the list of the input this output may
                         be written over exactly (same pointer and ld), or -1 */
} kdi_buf;

/* rows x cols elements of elem bytes with row stride ld (rows <= 0 or p NULL:
 * empty).  The extent must have been checked (an overflow saturates the
 * range, so that it overlaps everything after p). */
kdi_buf kdi_buf_matrix(const char *name, int index, const void *p, int64_t rows, int64_t ld,
                       int64_t cols, size_t elem, int out);
static inline kdi_buf kdi_buf_vector(const char *name, int index, const void *p, int64_t n,
                                     size_t elem, int out)
{
    return kdi_buf_matrix(name, index, p, n > 0 ? 1 : 0, n, n, elem, out);
}

/* KD_ERR_ALIASING when an output's range intersects the range of any other
 * buffer of the list (input or output), except an output written in place
 * over its in_place input (same pointer and ld); the message (err_size bytes
 * at err, NULL skips) names the two buffers. */
kd_status kdi_check_aliasing(char *err, size_t err_size, const char *fn, const kdi_buf *b,
                             int count);

#endif
