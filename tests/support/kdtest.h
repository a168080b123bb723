/* Test support shared by the Check programs: deterministic random data and
 * tolerant comparisons.  Pure C, no dependency on libkd. */
#ifndef KDTEST_H
#define KDTEST_H

#include <stdint.h>
#include <stddef.h>

/* xorshift64* generator; the same seed gives the same numbers everywhere. */
typedef struct { uint64_t s; } kdt_rng;
void kdt_seed(kdt_rng *r, uint64_t seed);
uint64_t kdt_next(kdt_rng *r);
double kdt_uniform(kdt_rng *r);                /* [0, 1) */
double kdt_normal(kdt_rng *r);                 /* N(0, 1) */
void kdt_fill_normal(kdt_rng *r, float *x, size_t n, double scale);

/* |a - b| <= atol + rtol * |b| (NaN equals NaN only when both are NaN). */
int kdt_close(double a, double b, double rtol, double atol);

/* Largest |a_i - b_i| over a strided float matrix against a dense double one. */
double kdt_max_abs_diff(const float *a, int64_t lda, const double *b, int64_t n, int64_t c);

#endif
