#include "idx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Read up to n bytes; returns the count actually read, or -1 on a zlib error
 * other than a truncated gzip stream (which zlib reports as Z_BUF_ERROR and
 * which is treated as a short read, so that the caller says "truncated"). */
static int64_t read_fully(gzFile f, uint8_t *buf, int64_t n)
{
    int64_t done = 0;
    while (done < n) {
        int64_t chunk = n - done > (1 << 30) ? (1 << 30) : n - done;
        int got = gzread(f, buf + done, (unsigned)chunk);
        if (got < 0) {
            int zerr;
            gzerror(f, &zerr);
            return zerr == Z_BUF_ERROR ? done : -1;
        }
        if (got == 0)
            break;
        done += got;
    }
    return done;
}

int tr_idx_load(const char *path, int ndim, tr_idx *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    uint8_t head[4 + 4 * TR_IDX_MAX_DIMS];
    int64_t got = read_fully(f, head, 4);
    if (got != 4) {
        snprintf(err, err_size, "%s: truncated: %lld of the 4 magic bytes", path, (long long)got);
        goto fail;
    }
    if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != ndim) {
        snprintf(err, err_size,
                 "%s: wrong magic %02x %02x %02x %02x: expected an IDX file of unsigned bytes "
                 "with %d dimensions (00 00 08 %02x)",
                 path, head[0], head[1], head[2], head[3], ndim, ndim);
        goto fail;
    }
    got = read_fully(f, head + 4, 4 * (int64_t)ndim);
    if (got != 4 * ndim) {
        snprintf(err, err_size, "%s: truncated: header has %lld of its %d dimension bytes", path,
                 (long long)got, 4 * ndim);
        goto fail;
    }
    out->ndim = ndim;
    out->count = 1;
    for (int d = 0; d < ndim; d++) {
        const uint8_t *p = head + 4 + 4 * d;
        out->dims[d] = ((int64_t)p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
        if (out->dims[d] == 0 || out->dims[d] > (1 << 28)) {
            snprintf(err, err_size, "%s: implausible dimension %d = %lld", path, d,
                     (long long)out->dims[d]);
            goto fail;
        }
        out->count *= out->dims[d];
        if (out->count > ((int64_t)1 << 34)) {
            snprintf(err, err_size, "%s: data too large (%lld bytes)", path, (long long)out->count);
            goto fail;
        }
    }
    out->data = malloc((size_t)out->count);
    if (!out->data) {
        snprintf(err, err_size, "%s: out of memory for %lld bytes", path, (long long)out->count);
        goto fail;
    }
    got = read_fully(f, out->data, out->count);
    if (got < 0) {
        int zerr;
        snprintf(err, err_size, "%s: read error: %s", path, gzerror(f, &zerr));
        goto fail;
    }
    if (got != out->count) {
        snprintf(err, err_size, "%s: truncated: header promises %lld data bytes, file has %lld",
                 path, (long long)out->count, (long long)got);
        goto fail;
    }
    uint8_t extra;
    if (read_fully(f, &extra, 1) != 0) {
        snprintf(err, err_size, "%s: trailing data after the %lld bytes the header promises", path,
                 (long long)out->count);
        goto fail;
    }
    gzclose(f);
    return 0;
fail:
    gzclose(f);
    tr_idx_free(out);
    return -1;
}

void tr_idx_free(tr_idx *idx)
{
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
