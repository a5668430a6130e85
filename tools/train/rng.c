/*
 * rng.c - xoshiro256** (Blackman and Vigna) seeded with splitmix64. Used for
 * weight initialisation and the per-epoch data shuffle; no other randomness
 * enters training, which is what makes a resumed run repeat bit for bit.
 */
#include "rng.h"

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void tr_rng_seed(tr_rng *r, uint64_t seed)
{
    uint64_t z = seed;
    for (int i = 0; i < 4; i++) {
        z += 0x9e3779b97f4a7c15ULL;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        r->s[i] = x ^ (x >> 31);
    }
    /* An all-zero state would stay zero forever; splitmix64 cannot produce
     * four zero words in a row, but be explicit about the invariant. */
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
        r->s[0] = 1;
}

uint64_t tr_rng_next(tr_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float tr_rng_uniform(tr_rng *r)
{
    return (float)(tr_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

uint64_t tr_rng_below(tr_rng *r, uint64_t n)
{
    /* Rejection sampling on the top of the range keeps every value equally
     * likely; the loop runs more than once with probability < n / 2^64. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = tr_rng_next(r);
    } while (x >= limit);
    return x % n;
}

void tr_rng_shuffle(tr_rng *r, int32_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)tr_rng_below(r, (uint64_t)i);
        int32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
