#define _DEFAULT_SOURCE
#include "kdtest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kdt_seed(kdt_rng *r, uint64_t seed) { r->s = seed ? seed : 0x9E3779B97F4A7C15ull; }

uint64_t kdt_next(kdt_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

double kdt_uniform(kdt_rng *r) { return (double)(kdt_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double kdt_normal(kdt_rng *r)
{
    double u = kdt_uniform(r), v = kdt_uniform(r);
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

void kdt_fill_normal(kdt_rng *r, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * kdt_normal(r));
}

int kdt_close(double a, double b, double rtol, double atol)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b))
        return a == b;
    return fabs(a - b) <= atol + rtol * fabs(b);
}

double kdt_max_abs_diff(const float *a, int64_t lda, const double *b, int64_t n, int64_t c)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            double d = fabs((double)a[i * lda + j] - b[i * c + j]);
            if (d > m || isnan(d))
                m = isnan(d) ? INFINITY : d;
        }
    return m;
}

uint32_t kdt_crc32c(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

unsigned char *kdt_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            unsigned char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *size = n;
    return buf;
}

/* Little-endian u64 at p. */
static uint64_t kdt_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int kdt_statefile_set_data_f64(const char *path, size_t index, double value)
{
    size_t size;
    unsigned char *b = kdt_read_file(path, &size);
    if (!b || size < 36)
        goto fail;
    const uint64_t m = kdt_le64(b + 16), d = kdt_le64(b + 24);
    if (size != 44 + m + d || (index + 1) * 8 > d)
        goto fail;
    unsigned char *data = b + 40 + m;
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    for (int i = 0; i < 8; i++)
        data[index * 8 + (size_t)i] = (unsigned char)(bits >> (8 * i));
    const uint32_t crc = kdt_crc32c(data, (size_t)d);
    for (int i = 0; i < 4; i++)
        data[d + (size_t)i] = (unsigned char)(crc >> (8 * i));
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, size, f) != size) {
        if (f)
            fclose(f);
        goto fail;
    }
    fclose(f);
    free(b);
    return 0;
fail:
    free(b);
    return -1;
}

int kdt_tmpdir(char *dir, size_t cap, const char *prefix)
{
    if (snprintf(dir, cap, "/tmp/%s_XXXXXX", prefix) >= (int)cap)
        return -1;
    return mkdtemp(dir) ? 0 : -1;
}

int kdt_rmdir(const char *dir)
{
    char cmd[600];
    if (snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir) >= (int)sizeof cmd)
        return -1;
    return system(cmd);
}

const char *kdt_path(const char *dir, const char *name)
{
    static char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

int kdt_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    const int ok = fwrite(data, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}
