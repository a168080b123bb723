#include "kdtest.h"

#include <math.h>

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
