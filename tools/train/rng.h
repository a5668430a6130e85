/*
 * rng.h - the trainer's random number generator (xoshiro256**), its whole
 * state is four u64 words so a checkpoint can save and restore it exactly.
 */
#ifndef TRAIN_RNG_H
#define TRAIN_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct tr_rng {
    uint64_t s[4];
} tr_rng;

/* Seeds through splitmix64 so that nearby seeds give unrelated streams. */
void tr_rng_seed(tr_rng *r, uint64_t seed);
uint64_t tr_rng_next(tr_rng *r);
/* Uniform in [0, 1) with 24 random bits: exactly representable as a float. */
float tr_rng_uniform(tr_rng *r);
/* Uniform integer in [0, n), without modulo bias; n > 0. */
uint64_t tr_rng_below(tr_rng *r, uint64_t n);
/* Fisher-Yates shuffle of a[0..n). */
void tr_rng_shuffle(tr_rng *r, int32_t *a, size_t n);

#endif
