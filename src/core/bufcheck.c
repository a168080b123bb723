/* The aliasing check and the buffer ranges behind it (core/bufcheck.h). */
#include "core/bufcheck.h"

#include <stdio.h>

kdi_buf kdi_buf_matrix(const char *name, int index, const void *p, int64_t rows, int64_t ld,
                       int64_t cols, size_t elem, int out)
{
    kdi_buf b = {name, index, p, 0, ld, out, -1};
    if (!p || rows <= 0 || cols <= 0)
        return b;
    size_t elems, bytes;
    const size_t room = SIZE_MAX - (size_t)(uintptr_t)p; /* no wrap past the address space */
    if (kdi_size_muladd((size_t)(rows - 1), (size_t)ld, (size_t)cols, &elems) &&
        kdi_size_mul(elems, elem, &bytes) && bytes <= room)
        b.bytes = bytes;
    else
        b.bytes = room;
    return b;
}

static int intersect(const kdi_buf *a, const kdi_buf *b)
{
    if (!a->p || !b->p || a->bytes == 0 || b->bytes == 0)
        return 0;
    const uintptr_t pa = (uintptr_t)a->p, pb = (uintptr_t)b->p;
    return pa < pb + b->bytes && pb < pa + a->bytes;
}

static void name_of(char *dst, size_t size, const kdi_buf *b)
{
    if (b->index >= 0)
        snprintf(dst, size, "%s %d", b->name, b->index);
    else
        snprintf(dst, size, "%s", b->name);
}

kd_status kdi_check_aliasing(char *err, size_t err_size, const char *fn, const kdi_buf *b,
                             int count)
{
    for (int i = 0; i < count; i++) {
        if (!b[i].out)
            continue;
        for (int j = 0; j < count; j++) {
            /* each pair of outputs once */
            if (j == i || (b[j].out && j < i) || !intersect(&b[i], &b[j]))
                continue;
            const int own = b[i].in_place == j;
            if (own && b[i].p == b[j].p && b[i].ld == b[j].ld && b[i].bytes == b[j].bytes)
                continue;
            if (err && err_size > 0) {
                char a[64], c[64];
                name_of(a, sizeof a, &b[i]);
                name_of(c, sizeof c, &b[j]);
                snprintf(err, err_size, "%s: %s overlaps %s%s", fn, a, c,
                         own ? " without being it (in place needs the same pointer and ld)" : "");
            }
            return KD_ERR_ALIASING;
        }
    }
    return KD_OK;
}
