/* Test support shared by the Check programs: deterministic random data and
 * tolerant comparisons.  Pure C, no dependency on libkd. */
#ifndef KDTEST_H
#define KDTEST_H

#include <stdint.h>
#include <stddef.h>

/* xorshift64* generator; the same seed gives the same numbers everywhere. */
typedef struct {
    uint64_t s;
} kdt_rng;
void kdt_seed(kdt_rng *r, uint64_t seed);
uint64_t kdt_next(kdt_rng *r);
double kdt_uniform(kdt_rng *r); /* [0, 1) */
double kdt_normal(kdt_rng *r);  /* N(0, 1) */
void kdt_fill_normal(kdt_rng *r, float *x, size_t n, double scale);

/* |a - b| <= atol + rtol * |b| (NaN equals NaN only when both are NaN). */
int kdt_close(double a, double b, double rtol, double atol);

/* Largest |a_i - b_i| over a strided float matrix against a dense double one. */
double kdt_max_abs_diff(const float *a, int64_t lda, const double *b, int64_t n, int64_t c);

/* CRC-32C (Castagnoli, reflected; "123456789" gives 0xE3069283). */
uint32_t kdt_crc32c(const void *data, size_t n);

/* The whole file (malloc'ed; *size its length), NULL on failure. */
unsigned char *kdt_read_file(const char *path, size_t *size);

/* Write n bytes to path (replacing it).  0 on success. */
int kdt_write_file(const char *path, const void *data, size_t n);

/* Overwrite the f64 number `index` of a kdlib state file's data section with
 * value and fix the data checksum (a file with valid checksums but invalid
 * values).  0 on success, -1 on failure. */
int kdt_statefile_set_data_f64(const char *path, size_t index, double value);

/* A fresh directory /tmp/<prefix>_XXXXXX written into dir (cap bytes), its
 * removal with everything in it, and dir/name (a static buffer, valid until
 * the next call).  0 on success. */
int kdt_tmpdir(char *dir, size_t cap, const char *prefix);
int kdt_rmdir(const char *dir);
const char *kdt_path(const char *dir, const char *name);

#endif
