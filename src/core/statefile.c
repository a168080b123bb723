/* Internal: crash-safe, checksummed state files (see statefile.h). */
#define _XOPEN_SOURCE 700

#include "core/statefile.h"

#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define KDI_CRC_HW 1
#endif

/* Pieces in which bulk data is checksummed and written: small enough that the
 * bytes just checksummed are still in cache when write() copies them. */
#define KDI_PIECE ((uint64_t)1 << 20)

/* ---- CRC-32C ---------------------------------------------------------- */

static uint32_t kdi_crc_table[8][256];
static pthread_once_t kdi_crc_once = PTHREAD_ONCE_INIT;

static void kdi_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        kdi_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            kdi_crc_table[t][i] =
                (kdi_crc_table[t - 1][i] >> 8) ^ kdi_crc_table[0][kdi_crc_table[t - 1][i] & 0xFFu];
}

/* Portable slicing-by-8 on the non-inverted register. */
static uint32_t kdi_crc_soft(uint32_t c, const unsigned char *p, size_t n)
{
    pthread_once(&kdi_crc_once, kdi_crc_init);
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = kdi_crc_table[7][lo & 0xFFu] ^ kdi_crc_table[6][(lo >> 8) & 0xFFu] ^
            kdi_crc_table[5][(lo >> 16) & 0xFFu] ^ kdi_crc_table[4][lo >> 24] ^
            kdi_crc_table[3][p[4]] ^ kdi_crc_table[2][p[5]] ^ kdi_crc_table[1][p[6]] ^
            kdi_crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ kdi_crc_table[0][(c ^ *p++) & 0xFFu];
    return c;
}

#ifdef KDI_CRC_HW
/* SSE4.2's crc32 instruction computes exactly CRC-32C; chosen at run time so
 * that the library itself needs no -msse4.2. */
__attribute__((target("sse4.2"))) static uint32_t kdi_crc_hw(uint32_t c, const unsigned char *p,
                                                             size_t n)
{
    uint64_t c64 = c;
    while (n && ((uintptr_t)p & 7u)) {
        c64 = _mm_crc32_u8((uint32_t)c64, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = _mm_crc32_u64(c64, w);
        p += 8;
        n -= 8;
    }
    while (n--)
        c64 = _mm_crc32_u8((uint32_t)c64, *p++);
    return (uint32_t)c64;
}
#endif

uint32_t kdi_crc32c(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t c = ~crc;
#ifdef KDI_CRC_HW
    if (__builtin_cpu_supports("sse4.2"))
        return ~kdi_crc_hw(c, p, n);
#endif
    return ~kdi_crc_soft(c, p, n);
}

/* ---- helpers ------------------------------------------------------------ */

static int kdi_host_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void kdi_swap_words(unsigned char *p, uint64_t size, uint32_t unit)
{
    for (uint64_t i = 0; i + unit <= size; i += unit)
        for (uint32_t a = 0, b = unit - 1; a < b; a++, b--) {
            unsigned char t = p[i + a];
            p[i + a] = p[i + b];
            p[i + b] = t;
        }
}

static const char *kdi_errno_text(int e, char *buf, size_t n)
{
    if (strerror_r(e, buf, n) != 0)
        snprintf(buf, n, "errno %d", e);
    return buf;
}

static int kdi_write_all(int fd, const void *data, uint64_t n)
{
    const unsigned char *p = data;
    while (n > 0) {
        size_t want = n > ((uint64_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
        ssize_t w = write(fd, p, want);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return 0;
        }
        if (w == 0) {
            errno = EIO;
            return 0;
        }
        p += w;
        n -= (uint64_t)w;
    }
    return 1;
}

/* Returns the number of bytes read (< n only at end of file), or -1. */
static int64_t kdi_read_full(int fd, void *data, uint64_t n)
{
    unsigned char *p = data;
    uint64_t got = 0;
    while (got < n) {
        uint64_t left = n - got;
        size_t want = left > ((uint64_t)1 << 30) ? ((size_t)1 << 30) : (size_t)left;
        ssize_t r = read(fd, p + got, want);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (uint64_t)r;
    }
    return (int64_t)got;
}

/* Write one section (its chunks, then their CRC). */
static int kdi_write_section(int fd, const kdi_statefile_chunk *chunks, size_t num,
                             unsigned char **scratch)
{
    uint32_t crc = 0;
    const int little = kdi_host_little_endian();
    for (size_t c = 0; c < num; c++) {
        const unsigned char *p = chunks[c].data;
        uint64_t left = chunks[c].size;
        const int convert = !little && chunks[c].swap_unit > 1;
        while (left > 0) {
            uint64_t piece = left < KDI_PIECE ? left : KDI_PIECE;
            const unsigned char *src = p;
            if (convert) {
                if (!*scratch && !(*scratch = malloc(KDI_PIECE))) {
                    errno = ENOMEM;
                    return 0;
                }
                memcpy(*scratch, p, (size_t)piece);
                kdi_swap_words(*scratch, piece, chunks[c].swap_unit);
                src = *scratch;
            }
            crc = kdi_crc32c(crc, src, (size_t)piece);
            if (!kdi_write_all(fd, src, piece))
                return 0;
            p += piece;
            left -= piece;
        }
    }
    unsigned char tail[4];
    kdi_le_put_u32(tail, crc);
    return kdi_write_all(fd, tail, 4);
}

static int kdi_section_size(const kdi_statefile_chunk *chunks, size_t num, uint64_t *out)
{
    uint64_t total = 0;
    for (size_t c = 0; c < num; c++) {
        if (chunks[c].size > UINT64_MAX / 2 - total)
            return 0;
        if (chunks[c].size && !chunks[c].data)
            return 0;
        uint32_t u = chunks[c].swap_unit;
        if (u != 1 && u != 2 && u != 4 && u != 8)
            return 0;
        if (chunks[c].size % u)
            return 0;
        total += chunks[c].size;
    }
    *out = total;
    return 1;
}

/* ---- writer ------------------------------------------------------------- */

kd_status kdi_statefile_write(const char *path, const char magic[KDI_STATEFILE_MAGIC_SIZE],
                              uint32_t version, const kdi_statefile_chunk *meta, size_t num_meta,
                              const kdi_statefile_chunk *data, size_t num_data, char *err)
{
    char ebuf[128];
    uint64_t msize, dsize;
    if (!kdi_section_size(meta, num_meta, &msize) || !kdi_section_size(data, num_data, &dsize))
        return kdi_fail(err, KD_ERR_INVALID_ARGUMENT, "invalid state file sections for '%s'", path);

    unsigned char header[KDI_STATEFILE_HEADER_SIZE];
    memcpy(header, magic, KDI_STATEFILE_MAGIC_SIZE);
    kdi_le_put_u32(header + 8, version);
    kdi_le_put_u32(header + 12, 0);
    kdi_le_put_u64(header + 16, msize);
    kdi_le_put_u64(header + 24, dsize);
    kdi_le_put_u32(header + 32, kdi_crc32c(0, header, 32));

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return kdi_fail(err, KD_ERR_OUT_OF_MEMORY, "out of memory saving '%s'", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", 12);

    /* Directory part of path, for the final fsync (tmp reuses path's prefix). */
    char *dir = malloc(plen + 2);
    if (!dir) {
        free(tmp);
        return kdi_fail(err, KD_ERR_OUT_OF_MEMORY, "out of memory saving '%s'", path);
    }
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }

    kd_status st = KD_OK;
    unsigned char *scratch = NULL;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = kdi_fail(err, KD_ERR_IO, "cannot create a temporary file next to '%s': %s", path,
                      kdi_errno_text(errno, ebuf, sizeof ebuf));
        goto done;
    }
    (void)fchmod(fd, 0644); /* mkstemp creates 0600; state files are ordinary files */
    if (!kdi_write_all(fd, header, sizeof header) ||
        !kdi_write_section(fd, meta, num_meta, &scratch) ||
        !kdi_write_section(fd, data, num_data, &scratch)) {
        st = kdi_fail(err, errno == ENOMEM ? KD_ERR_OUT_OF_MEMORY : KD_ERR_IO,
                      "cannot write '%s': %s", tmp, kdi_errno_text(errno, ebuf, sizeof ebuf));
        close(fd);
        unlink(tmp);
        goto done;
    }
    /* The data must be on disk before the rename makes it visible under path,
     * or a crash could leave a renamed but empty file. */
    if (fsync(fd) != 0) {
        st = kdi_fail(err, KD_ERR_IO, "cannot fsync '%s': %s", tmp,
                      kdi_errno_text(errno, ebuf, sizeof ebuf));
        close(fd);
        unlink(tmp);
        goto done;
    }
    if (close(fd) != 0) {
        st = kdi_fail(err, KD_ERR_IO, "cannot close '%s': %s", tmp,
                      kdi_errno_text(errno, ebuf, sizeof ebuf));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        st = kdi_fail(err, KD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path,
                      kdi_errno_text(errno, ebuf, sizeof ebuf));
        unlink(tmp);
        goto done;
    }
    /* Make the rename itself durable.  Some file systems cannot fsync a
     * directory (EINVAL); the rename is then as durable as they make it. */
    int dfd = open(dir, O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS && errno != EBADF)
            st = kdi_fail(err, KD_ERR_IO,
                          "'%s' was replaced, but fsync of its directory '%s' failed: %s", path,
                          dir, kdi_errno_text(errno, ebuf, sizeof ebuf));
        close(dfd);
    }

done:
    free(scratch);
    free(dir);
    free(tmp);
    return st;
}

/* ---- reader ------------------------------------------------------------- */

void kdi_statefile_close(kdi_statefile_reader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    free(r->meta);
    r->meta = NULL;
}

kd_status kdi_statefile_open(kdi_statefile_reader *r, const char *path,
                             const char magic[KDI_STATEFILE_MAGIC_SIZE], uint32_t max_version,
                             uint64_t max_meta, char *err)
{
    char ebuf[128];
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->path = path;

    /* O_NONBLOCK: a FIFO at path must not block the open (regular files ignore it). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return kdi_fail(err, KD_ERR_IO, "cannot open '%s': %s", path,
                        kdi_errno_text(errno, ebuf, sizeof ebuf));
    r->fd = fd;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_IO, "cannot stat '%s': %s", path,
                        kdi_errno_text(errno, ebuf, sizeof ebuf));
    }
    if (!S_ISREG(sb.st_mode)) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_IO, "'%s' is not a regular file", path);
    }

    unsigned char h[KDI_STATEFILE_HEADER_SIZE];
    int64_t got = kdi_read_full(fd, h, sizeof h);
    if (got < 0) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_IO, "cannot read '%s': %s", path,
                        kdi_errno_text(errno, ebuf, sizeof ebuf));
    }
    size_t mlen = got < KDI_STATEFILE_MAGIC_SIZE ? (size_t)got : KDI_STATEFILE_MAGIC_SIZE;
    if (memcmp(h, magic, mlen) != 0) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_VERSION, "'%s' is not a state file of this kind (bad magic)",
                        path);
    }
    if (got < 12) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_CORRUPT, "'%s' is truncated: %lld bytes", path, (long long)got);
    }
    uint32_t version = kdi_le_get_u32(h + 8);
    if (version < 1 || version > max_version) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_VERSION, "'%s' has format version %u, this library reads 1..%u",
                        path, (unsigned)version, (unsigned)max_version);
    }
    if (got < KDI_STATEFILE_HEADER_SIZE) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_CORRUPT, "'%s' is truncated: %lld bytes", path, (long long)got);
    }
    if (kdi_le_get_u32(h + 32) != kdi_crc32c(0, h, 32)) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_CORRUPT, "'%s' has a corrupt header (checksum mismatch)", path);
    }
    uint32_t flags = kdi_le_get_u32(h + 12);
    uint64_t msize = kdi_le_get_u64(h + 16), dsize = kdi_le_get_u64(h + 24);
    uint64_t fsize = (uint64_t)sb.st_size;
    if (flags != 0) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_CORRUPT, "'%s' has unknown flags 0x%x", path, (unsigned)flags);
    }
    if (fsize < 44 || msize > fsize - 44 || dsize != fsize - 44 - msize) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_CORRUPT,
                        "'%s' is truncated or extended: %llu bytes, header describes %llu + %llu",
                        path, (unsigned long long)fsize, (unsigned long long)msize,
                        (unsigned long long)dsize);
    }
    if (msize > max_meta) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_CORRUPT,
                        "'%s' has a meta section of %llu bytes, at most %llu are possible", path,
                        (unsigned long long)msize, (unsigned long long)max_meta);
    }
    r->meta = malloc(msize ? (size_t)msize : 1);
    if (!r->meta) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_OUT_OF_MEMORY, "out of memory reading '%s'", path);
    }
    unsigned char crcbuf[4];
    got = kdi_read_full(fd, r->meta, msize);
    if (got == (int64_t)msize)
        got = kdi_read_full(fd, crcbuf, 4) == 4 ? (int64_t)msize : -2;
    if (got != (int64_t)msize) {
        int e = errno;
        kdi_statefile_close(r);
        if (got == -1)
            return kdi_fail(err, KD_ERR_IO, "cannot read '%s': %s", path,
                            kdi_errno_text(e, ebuf, sizeof ebuf));
        return kdi_fail(err, KD_ERR_CORRUPT, "'%s' is truncated in its meta section", path);
    }
    if (kdi_le_get_u32(crcbuf) != kdi_crc32c(0, r->meta, (size_t)msize)) {
        kdi_statefile_close(r);
        return kdi_fail(err, KD_ERR_CORRUPT, "'%s' has a corrupt meta section (checksum mismatch)",
                        path);
    }
    r->version = version;
    r->meta_size = msize;
    r->data_size = dsize;
    r->data_read = 0;
    r->data_crc = 0;
    return KD_OK;
}

kd_status kdi_statefile_read_data(kdi_statefile_reader *r, void *dst, uint64_t size,
                                  uint32_t swap_unit, char *err)
{
    char ebuf[128];
    if (size > r->data_size - r->data_read)
        return kdi_fail(err, KD_ERR_CORRUPT, "'%s' has a data section shorter than described",
                        r->path);
    unsigned char *p = dst;
    const int convert = !kdi_host_little_endian() && swap_unit > 1;
    while (size > 0) {
        uint64_t piece = size < KDI_PIECE ? size : KDI_PIECE;
        int64_t got = kdi_read_full(r->fd, p, piece);
        if (got < 0)
            return kdi_fail(err, KD_ERR_IO, "cannot read '%s': %s", r->path,
                            kdi_errno_text(errno, ebuf, sizeof ebuf));
        if ((uint64_t)got != piece)
            return kdi_fail(err, KD_ERR_CORRUPT, "'%s' is truncated in its data section", r->path);
        r->data_crc = kdi_crc32c(r->data_crc, p, (size_t)piece);
        if (convert)
            kdi_swap_words(p, piece, swap_unit);
        r->data_read += piece;
        p += piece;
        size -= piece;
    }
    return KD_OK;
}

kd_status kdi_statefile_finish(kdi_statefile_reader *r, char *err)
{
    char ebuf[128];
    if (r->data_read != r->data_size)
        return kdi_fail(err, KD_ERR_CORRUPT, "'%s' has %llu unexpected data bytes", r->path,
                        (unsigned long long)(r->data_size - r->data_read));
    unsigned char tail[5];
    int64_t got = kdi_read_full(r->fd, tail, 5);
    if (got < 0)
        return kdi_fail(err, KD_ERR_IO, "cannot read '%s': %s", r->path,
                        kdi_errno_text(errno, ebuf, sizeof ebuf));
    if (got != 4)
        return kdi_fail(err, KD_ERR_CORRUPT, "'%s' changed size while it was read", r->path);
    if (kdi_le_get_u32(tail) != r->data_crc)
        return kdi_fail(err, KD_ERR_CORRUPT, "'%s' has a corrupt data section (checksum mismatch)",
                        r->path);
    return KD_OK;
}

kd_status kdi_statefile_load(kdi_statefile_reader *r, const kdi_statefile_kind *kind,
                             const void *handle, const char *path, uint64_t max_meta, void *dst,
                             uint64_t dst_size, uint32_t swap_unit, char *err)
{
    if (max_meta < KDI_STATEFILE_META_LIMIT)
        max_meta = KDI_STATEFILE_META_LIMIT;
    kd_status st = kdi_statefile_open(r, path, kind->magic, kind->max_version, max_meta, err);
    if (st == KD_OK)
        st = kind->check_meta(handle, r, err);
    if (st == KD_OK && r->data_size != dst_size)
        st = kdi_fail(err, KD_ERR_CORRUPT, "'%s': data section of %llu bytes, expected %llu", path,
                      (unsigned long long)r->data_size, (unsigned long long)dst_size);
    if (st == KD_OK)
        st = kdi_statefile_read_data(r, dst, dst_size, swap_unit, err);
    if (st == KD_OK)
        st = kdi_statefile_finish(r, err);
    if (st != KD_OK)
        kdi_statefile_close(r);
    return st;
}
