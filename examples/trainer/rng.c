#include "rng.h"

#include <math.h>

void tr_rng_seed(tr_rng *r, uint64_t seed, uint64_t stream)
{
    r->state = seed * 0x9E3779B97F4A7C15ull + stream * 0xD1B54A32D192ED03ull + 1;
    (void)tr_rng_u64(r);
}

uint64_t tr_rng_u64(tr_rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float tr_rng_uniform(tr_rng *r) { return (float)(tr_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

int64_t tr_rng_below(tr_rng *r, int64_t n)
{
    /* The modulo bias is below 2^-40 for the sizes used here. */
    return (int64_t)(tr_rng_u64(r) % (uint64_t)n);
}

float tr_rng_normal(tr_rng *r)
{
    double u1 = ((double)(tr_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(tr_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void tr_rng_shuffle(tr_rng *r, int32_t *v, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = tr_rng_below(r, i + 1);
        int32_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}
