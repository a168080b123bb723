/*
 * Internal: crash-safe, checksummed state files.
 *
 * A generic container used by the stateful handles (EMA teacher, FlexMatch
 * thresholds).  The owner chooses an 8-byte magic, a format version and two
 * sections: a small "meta" section (counts, shapes, scalars) that is read into
 * memory and fully validated first, and a bulk "data" section that is streamed
 * into caller memory.  Every multi-byte integer of the container is
 * little-endian; owners encode their meta section with the kdi_le_* helpers.
 *
 * Layout (offsets in bytes, M = meta size, D = data size):
 *
 *     0   8  magic
 *     8   4  format version            u32
 *    12   4  flags, must be 0          u32
 *    16   8  M                         u64
 *    24   8  D                         u64
 *    32   4  CRC-32C of bytes [0, 32)  u32
 *    36   M  meta
 *  36+M   4  CRC-32C of the meta bytes u32
 *  40+M   D  data
 * 40+M+D  4  CRC-32C of the data bytes u32
 *            file size is exactly 44 + M + D
 *
 * CRC-32C is the Castagnoli CRC (reflected polynomial 0x82F63B78, initial value
 * and final xor 0xFFFFFFFF; check value of "123456789" is 0xE3069283).
 *
 * Writing goes to a temporary file in the destination's directory
 * ("<path>.tmp-XXXXXX"), which is written, fsync'ed and closed, renamed over
 * the destination, after which the directory is fsync'ed.  An interrupted save
 * therefore leaves either the old or the new complete file at `path` (plus,
 * at worst, a stale temporary file).
 *
 * Reading checks, in this order: the magic (KD_ERR_VERSION; a file shorter
 * than the magic whose bytes are a prefix of it is KD_ERR_CORRUPT), the
 * version (KD_ERR_VERSION), the header CRC, flags and the sizes against the
 * real file size (KD_ERR_CORRUPT), then the meta CRC (KD_ERR_CORRUPT).  Only
 * then does the owner see the meta.  Data is streamed with
 * kdi_statefile_read_data() and its CRC checked by kdi_statefile_finish();
 * owners read the data into scratch memory and commit it to their object only
 * after kdi_statefile_finish() returned KD_OK.
 *
 * Error messages are written into `err` (KDI_ERROR_SIZE bytes, may be NULL)
 * and mention the path.
 */
#ifndef KDI_STATEFILE_H
#define KDI_STATEFILE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kdlib/core.h"

#define KDI_STATEFILE_MAGIC_SIZE 8
#define KDI_STATEFILE_HEADER_SIZE 36

/* CRC-32C of n bytes continuing from crc (start with 0; the pre- and
 * post-inversion are done inside, so calls chain: crc(ab) = crc(crc(a), b)). */
uint32_t kdi_crc32c(uint32_t crc, const void *data, size_t n);

/* A piece of a section.  swap_unit is 1 for raw bytes, or 4 / 8 for an array
 * of host-order 32- / 64-bit words that are stored little-endian (size must be
 * a multiple of swap_unit).  On little-endian hosts no conversion happens. */
typedef struct {
    const void *data;
    uint64_t size;
    uint32_t swap_unit;
} kdi_statefile_chunk;

/* Atomically replace `path` by a state file made of the concatenated meta
 * chunks and data chunks.  Returns KD_OK, KD_ERR_IO (nothing at `path` has
 * changed, except when only the final directory fsync failed: the message
 * says so) or KD_ERR_OUT_OF_MEMORY. */
kd_status kdi_statefile_write(const char *path, const char magic[KDI_STATEFILE_MAGIC_SIZE],
                              uint32_t version, const kdi_statefile_chunk *meta, size_t num_meta,
                              const kdi_statefile_chunk *data, size_t num_data, char *err);

typedef struct {
    int fd;
    uint32_t version;
    uint64_t meta_size;
    unsigned char *meta; /* meta_size bytes (owned; freed by kdi_statefile_close) */
    uint64_t data_size;
    uint64_t data_read;
    uint32_t data_crc;
    const char *path;
} kdi_statefile_reader;

/* Open and validate header and meta section.  Versions 1..max_version are
 * accepted.  A meta section larger than max_meta bytes is KD_ERR_CORRUPT
 * before anything is allocated (the header's size is not trusted).  On
 * failure the reader holds no resources (close is still safe). */
kd_status kdi_statefile_open(kdi_statefile_reader *r, const char *path,
                             const char magic[KDI_STATEFILE_MAGIC_SIZE], uint32_t max_version,
                             uint64_t max_meta, char *err);

/* How a handle family loads a state file (kdi_statefile_load). */
typedef struct {
    const char *magic; /* KDI_STATEFILE_MAGIC_SIZE bytes */
    uint32_t max_version;
    /* Validate the meta section against the handle: KD_ERR_CORRUPT for
     * impossible values, KD_ERR_MISMATCH for a valid state of another shape. */
    kd_status (*check_meta)(const void *handle, const kdi_statefile_reader *r, char *err);
} kdi_statefile_kind;

/* Meta sections above this size are refused unless the handle's own state
 * needs more (max_meta of kdi_statefile_load): no file may make a load
 * allocate more than the larger of the two. */
#define KDI_STATEFILE_META_LIMIT ((uint64_t)16 << 20)

/* The whole validated read: open (meta sections of up to
 * max(max_meta, KDI_STATEFILE_META_LIMIT) bytes), check_meta, every data byte into dst
 * (dst_size bytes, swap_unit as for chunks, which must equal the data
 * section), checksums.  On KD_OK the reader stays open so that the caller can
 * take its parameters from r->meta, then closes it; on failure it is closed
 * and err holds the reason (without the function name). */
kd_status kdi_statefile_load(kdi_statefile_reader *r, const kdi_statefile_kind *kind,
                             const void *handle, const char *path, uint64_t max_meta, void *dst,
                             uint64_t dst_size, uint32_t swap_unit, char *err);

/* Read the next `size` data bytes into dst (swap_unit as for chunks).
 * KD_ERR_CORRUPT when reading past the data section, KD_ERR_IO on read errors. */
kd_status kdi_statefile_read_data(kdi_statefile_reader *r, void *dst, uint64_t size,
                                  uint32_t swap_unit, char *err);

/* Check that the whole data section was read and that its CRC matches. */
kd_status kdi_statefile_finish(kdi_statefile_reader *r, char *err);

/* Release the reader (safe on a zeroed or failed reader, and twice). */
void kdi_statefile_close(kdi_statefile_reader *r);

/* Little-endian encoding of meta fields. */
static inline void kdi_le_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void kdi_le_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t kdi_le_get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static inline uint64_t kdi_le_get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* IEEE-754 binary32 / binary64 through their bit patterns. */
static inline void kdi_le_put_f32(unsigned char *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    kdi_le_put_u32(p, v);
}

static inline float kdi_le_get_f32(const unsigned char *p)
{
    uint32_t v = kdi_le_get_u32(p);
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

static inline void kdi_le_put_f64(unsigned char *p, double f)
{
    uint64_t v;
    memcpy(&v, &f, sizeof v);
    kdi_le_put_u64(p, v);
}

static inline double kdi_le_get_f64(const unsigned char *p)
{
    uint64_t v = kdi_le_get_u64(p);
    double f;
    memcpy(&f, &v, sizeof f);
    return f;
}

#endif
