/* Fixed-seed random numbers for reproducible runs (splitmix64). */
#ifndef TR_RNG_H
#define TR_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} tr_rng;

/* Seed a generator; different streams of one run use different `stream`s so
 * that, e.g., the teacher's and the student's shuffles do not interact. */
void tr_rng_seed(tr_rng *r, uint64_t seed, uint64_t stream);
uint64_t tr_rng_u64(tr_rng *r);
/* Uniform in [0, 1). */
float tr_rng_uniform(tr_rng *r);
/* Uniform integer in [0, n), n > 0. */
int64_t tr_rng_below(tr_rng *r, int64_t n);
/* Standard normal (Box-Muller). */
float tr_rng_normal(tr_rng *r);
/* Fisher-Yates shuffle of n int32 values. */
void tr_rng_shuffle(tr_rng *r, int32_t *v, int64_t n);

#endif
