/*
 * stress_common.c - deterministic tensors and metrics of the stress tests.
 * The content is shaped to reach every save path: a big weight whose 64 KiB
 * blocks change a quarter at a time (multi-chunk, delta against the parent),
 * an embedding shared by the runs of a group that changes every 4th epoch
 * (whole-chunk dedup, also across two writers racing on the same chunk),
 * fully random optimizer state (raw), and small, scalar and empty tensors.
 */
#include "stress_common.h"

#include <string.h>
#include <time.h>

static uint64_t sm64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t mix3(uint64_t a, uint64_t b, uint64_t c)
{
    return sm64(sm64(sm64(a) ^ b) ^ c);
}

uint64_t st_run_seed(const char *run)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = run; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    return sm64(h);
}

/* Runs named X.G and Y.G share group G (runs without a dot share the group
 * ""): their embedding is the same, so concurrent writers of one group race
 * to insert the same new chunk. */
static uint64_t share_seed(const char *run)
{
    const char *dot = strrchr(run, '.');
    return st_run_seed(dot ? dot + 1 : "");
}

double st_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A stream of pseudo-random 64-bit words from one seed. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    uint64_t x = r->s;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Weight-like floats: small values, so byte planes of the exponent compress. */
static void fill_weights(uint64_t seed, float *dst, size_t n)
{
    rng r = {seed};
    for (size_t i = 0; i < n; i += 2) {
        uint64_t v = rng_next(&r);
        dst[i] = (float)(int16_t)(v & 0xffff) * (0.05f / 32768.0f);
        if (i + 1 < n)
            dst[i + 1] = (float)(int16_t)((v >> 16) & 0xffff) * (0.05f / 32768.0f);
    }
}

static void fill_random(uint64_t seed, uint8_t *dst, size_t n)
{
    rng r = {seed};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rng_next(&r);
        memcpy(dst + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = rng_next(&r);
        memcpy(dst + i, &v, n - i);
    }
}

/* Put order. The shared embedding goes first so that two writers saving at
 * once both start their chunk transaction with the same new chunk. */
enum { T_EMBED, T_WEIGHT, T_BIAS, T_EXPAVG, T_RNG, T_EPOCH, T_EMPTY, T_CONST };

#define WEIGHT_COLS 1024
#define WEIGHT_BLOCK ((size_t)64 << 10)

void st_layout(const char *run, int64_t epoch, size_t i, st_tensor *t)
{
    uint64_t seed = st_run_seed(run);
    memset(t, 0, sizeof *t);
    switch (i) {
    case T_WEIGHT:
        t->name = "model.layers.0.weight";
        t->kind = CKPT_KIND_MODEL;
        t->dtype = CKPT_F32;
        t->ndim = 2;
        /* 768..2304 rows of 4 KiB: 3..9 MiB, so 1 to 3 chunks of 4 MiB. */
        t->shape[0] = 768 + (int64_t)(mix3(seed, 1, (uint64_t)epoch) % 1537);
        t->shape[1] = WEIGHT_COLS;
        break;
    case T_BIAS:
        t->name = "model.layers.0.bias";
        t->kind = CKPT_KIND_MODEL;
        t->dtype = CKPT_F32;
        t->ndim = 1;
        t->shape[0] = 1024;
        break;
    case T_EMBED:
        t->name = "model.embed";
        t->kind = CKPT_KIND_MODEL;
        t->dtype = CKPT_BF16;
        t->ndim = 2;
        t->shape[0] = 1280; /* 5 MiB: two chunks */
        t->shape[1] = 2048;
        break;
    case T_EXPAVG:
        t->name = "optimizer.exp_avg";
        t->kind = CKPT_KIND_OPTIMIZER;
        t->dtype = CKPT_F16;
        t->ndim = 1;
        t->shape[0] = (256 << 10) + (int64_t)(mix3(seed, 2, (uint64_t)epoch) % (768 << 10));
        break;
    case T_RNG:
        t->name = "rng.state";
        t->kind = CKPT_KIND_RNG;
        t->dtype = CKPT_U8;
        t->ndim = 1;
        t->shape[0] = 32;
        break;
    case T_EPOCH:
        t->name = "state.epoch";
        t->kind = CKPT_KIND_STATE;
        t->dtype = CKPT_I64;
        t->ndim = 0;
        break;
    case T_EMPTY:
        t->name = "extra.empty";
        t->kind = CKPT_KIND_EXTRA;
        t->dtype = CKPT_F32;
        t->ndim = 2;
        t->shape[0] = 0;
        t->shape[1] = 16;
        break;
    default:
        t->name = "model.constant";
        t->kind = CKPT_KIND_MODEL;
        t->dtype = CKPT_F32;
        t->ndim = 1;
        t->shape[0] = 4096;
        break;
    }
    size_t n = ckpt_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    t->nbytes = n;
}

/* The epoch at which block b of the weight last changed: each epoch
 * rewrites about a quarter of the blocks, the rest repeat the parent's. */
static int64_t block_generation(uint64_t seed, size_t b, int64_t epoch)
{
    for (int64_t g = epoch; g > 0; g--)
        if (mix3(seed ^ 0x5eed, (uint64_t)b, (uint64_t)g) % 4 == 0)
            return g;
    return 0;
}

void st_fill(const char *run, int64_t epoch, size_t i, uint8_t *buf)
{
    uint64_t seed = st_run_seed(run);
    st_tensor t;
    st_layout(run, epoch, i, &t);
    switch (i) {
    case T_WEIGHT:
        for (size_t off = 0, b = 0; off < t.nbytes; off += WEIGHT_BLOCK, b++) {
            size_t len = t.nbytes - off < WEIGHT_BLOCK ? t.nbytes - off : WEIGHT_BLOCK;
            int64_t g = block_generation(seed, b, epoch);
            fill_weights(mix3(seed, 100 + b, (uint64_t)g), (float *)(void *)(buf + off), len / 4);
        }
        break;
    case T_BIAS:
        fill_weights(mix3(seed, 3, (uint64_t)epoch), (float *)(void *)buf, t.nbytes / 4);
        break;
    case T_EMBED: {
        /* Shared by the runs of a group: bf16 halves of weight-like floats. */
        float tmp[2048];
        uint64_t gen = (uint64_t)(epoch / 4), group = share_seed(run);
        for (int64_t row = 0; row < t.shape[0]; row++) {
            fill_weights(mix3(0xe3bedULL ^ group, gen, (uint64_t)row), tmp, 2048);
            for (size_t c = 0; c < 2048; c++) {
                uint32_t u;
                memcpy(&u, &tmp[c], 4);
                uint16_t h = (uint16_t)(u >> 16);
                memcpy(buf + ((size_t)row * 2048 + c) * 2, &h, 2);
            }
        }
        break;
    }
    case T_EXPAVG:
        fill_random(mix3(seed, 4, (uint64_t)epoch), buf, t.nbytes);
        break;
    case T_RNG:
        fill_random(mix3(seed, 5, (uint64_t)epoch), buf, t.nbytes);
        break;
    case T_EPOCH: {
        int64_t e = epoch;
        memcpy(buf, &e, 8);
        break;
    }
    case T_EMPTY:
        break;
    default:
        fill_weights(0xc0257a27ULL, (float *)(void *)buf, t.nbytes / 4);
        break;
    }
}

int64_t st_checkpoint_step(int64_t epoch)
{
    return epoch * ST_STEPS_PER_EPOCH + ST_STEPS_PER_EPOCH - 1;
}

const char *st_metric_name(int k)
{
    static const char *const names[ST_NMETRICS] = {"loss", "accuracy", "lr"};
    return names[k];
}

double st_metric_value(const char *run, int64_t epoch, int64_t step, int k)
{
    uint64_t h = mix3(st_run_seed(run), (uint64_t)step, (uint64_t)k);
    double noise = (double)(h % 1000) * 1e-6;
    switch (k) {
    case 0: return 2.0 / (1.0 + 0.1 * (double)step) + noise;
    case 1: return 1.0 - 1.0 / (1.0 + 0.05 * (double)step) - noise;
    default: return 1e-3 / (double)(1 + epoch / 10);
    }
}
