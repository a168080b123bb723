/* Reader of IDX files (the MNIST / Fashion-MNIST format), gzip or raw.
 *
 * An IDX file is a 4-byte magic (0, 0, type, number of dimensions), the
 * dimensions as big-endian uint32, then the data.  Only unsigned-byte data
 * (type 0x08) is read.  The file is read through zlib, which reads gzip and
 * uncompressed files alike. */
#ifndef TR_IDX_H
#define TR_IDX_H

#include <stddef.h>
#include <stdint.h>

#define TR_IDX_MAX_DIMS 4

typedef struct {
    int ndim;
    int64_t dims[TR_IDX_MAX_DIMS];
    int64_t count; /* product of dims */
    uint8_t *data; /* count bytes, owned */
} tr_idx;

/* Load `path`, expecting ubyte data with `ndim` dimensions.  Returns 0 on
 * success.  On failure returns -1, leaves *out empty and writes a message
 * naming the file and the problem into err (wrong magic, truncated data,
 * trailing data, unreadable file). */
int tr_idx_load(const char *path, int ndim, tr_idx *out, char *err, size_t err_size);
void tr_idx_free(tr_idx *idx);

#endif
