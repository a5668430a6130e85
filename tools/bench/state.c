/*
 * state.c - ckpt-bench's synthetic training state: layers of realistic
 * shapes with trained-like float32 weights and Adam moments, and epochs of
 * small updates in which a chosen part of the layers is frozen. Everything
 * is generated in 1 Mi-element blocks, each from its own seed, so that the
 * result does not depend on the number of threads that generate it.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define BLOCK_ELEMS ((size_t)1 << 20)
#define RNG_STATE_BYTES 256
#define MAX_THREADS 16

/* ------------------------------------------------------------ random numbers */

static inline uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    uint64_t x = a;
    uint64_t h = splitmix64(&x);
    x = h ^ b;
    h = splitmix64(&x);
    x = h ^ c;
    h = splitmix64(&x);
    x = h ^ d;
    return splitmix64(&x);
}

typedef struct normal_gen {
    uint64_t s;
    int have;
    double spare;
} normal_gen;

/* Standard normal by Box-Muller (the pair's second value is kept). */
static inline double normal(normal_gen *g)
{
    if (g->have) {
        g->have = 0;
        return g->spare;
    }
    /* +0.5 keeps u1 away from 0, where log() would be -inf. */
    double u1 = ((double)(splitmix64(&g->s) >> 11) + 0.5) * 0x1p-53;
    double u2 = (double)(splitmix64(&g->s) >> 11) * 0x1p-53;
    double r = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586 * u2;
    g->spare = r * sin(th);
    g->have = 1;
    return r * cos(th);
}

/* ------------------------------------------------------------ parallel for */

typedef struct pfor {
    size_t n;
    size_t next; /* atomic */
    void (*fn)(void *ctx, size_t i);
    void *ctx;
} pfor;

static void *pfor_worker(void *arg)
{
    pfor *p = arg;
    for (;;) {
        size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= p->n)
            break;
        p->fn(p->ctx, i);
    }
    return NULL;
}

void bench_parallel(size_t n, void (*fn)(void *ctx, size_t i), void *ctx)
{
    pfor p = {n, 0, fn, ctx};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (int)cores;
    if ((size_t)nth > n)
        nth = n > 0 ? (int)n : 1;
    pthread_t th[MAX_THREADS];
    int started = 0;
    for (int k = 1; k < nth; k++) {
        if (pthread_create(&th[started], NULL, pfor_worker, &p) != 0)
            break; /* the calling thread does the rest */
        started++;
    }
    pfor_worker(&p);
    for (int k = 0; k < started; k++)
        pthread_join(th[k], NULL);
}

/* ------------------------------------------------------------ layout */

typedef struct job {
    size_t param, block;
} job;

typedef struct gen_ctx {
    bench_state *st;
    job *jobs;
    int64_t epoch; /* 0: initial values */
} gen_ctx;

static void add_tensor(bench_state *st, const char *name, int kind, int dtype, int ndim, int64_t d0,
                       int64_t d1)
{
    bench_tensor *t = &st->t[st->nt++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%.*s", (int)sizeof t->name - 1, name);
    t->kind = kind;
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    size_t n = 1;
    for (int k = 0; k < ndim; k++)
        n *= (size_t)t->shape[k];
    t->nbytes = n * ckpt_dtype_size(dtype);
}

/* Layer shapes: alternately [d, d] and [d/4, d] (+ bias), with d the largest
 * power of two up to 4096 for which a [d, d] layer with its moments takes
 * at most a quarter of the budget, then one layer of fewer rows to fill up. */
static int plan_layers(uint64_t budget, int64_t (**rows_out)[2])
{
    uint64_t d = 4096;
    while (d > 64 && 12 * d * d > budget / 4)
        d /= 2;
    size_t cap = 16, n = 0;
    int64_t(*rows)[2] = malloc(cap * sizeof *rows);
    if (!rows)
        return -1;
    uint64_t left = budget;
    for (;;) {
        uint64_t r = (n % 2 == 0) ? d : d / 4;
        if (12 * (r * d + r) > left)
            r = d / 4;
        if (12 * (r * d + r) > left)
            r = left / (12 * (d + 1));
        if (r == 0)
            break;
        if (n == cap) {
            cap *= 2;
            int64_t(*nr)[2] = realloc(rows, cap * sizeof *rows);
            if (!nr) {
                free(rows);
                return -1;
            }
            rows = nr;
        }
        rows[n][0] = (int64_t)r;
        rows[n][1] = (int64_t)d;
        n++;
        left -= 12 * (r * d + r);
    }
    *rows_out = rows;
    return (int)n;
}

/* Freezes layers in order whenever that brings the frozen bytes closer to
 * the target, so the frozen share of the bytes is near `frozen` even with
 * layers of very different sizes. */
static void choose_frozen(bench_state *st, double frozen)
{
    double target = frozen * (double)st->param_bytes;
    double cur = 0;
    for (int l = 0; l < st->nlayers; l++) {
        double lb = 0;
        for (size_t i = 0; i < st->np; i++)
            if (st->p[i].layer == l)
                lb += 12.0 * (double)st->p[i].count;
        if (fabs(cur + lb - target) < fabs(cur - target)) {
            st->frozen[l] = 1;
            st->nfrozen++;
            cur += lb;
        }
    }
    st->frozen_param_bytes = (uint64_t)cur;
}

/* ------------------------------------------------------------ generation */

static void gen_block(void *arg, size_t j)
{
    gen_ctx *g = arg;
    bench_state *st = g->st;
    const bench_param *p = &st->p[g->jobs[j].param];
    size_t a = g->jobs[j].block * BLOCK_ELEMS;
    size_t b = a + BLOCK_ELEMS < p->count ? a + BLOCK_ELEMS : p->count;
    float *w = st->t[p->tw].data, *m = st->t[p->tm].data, *v = st->t[p->tv].data;
    normal_gen ng = {mix_seed(st->seed, (uint64_t)g->epoch, g->jobs[j].param, g->jobs[j].block), 0,
                     0};
    double ms = 1e-3 * p->std; /* gradient scale */
    if (g->epoch == 0) {
        for (size_t i = a; i < b; i++) {
            w[i] = (float)(p->std * normal(&ng));
            m[i] = (float)(ms * normal(&ng));
            double x = ms * normal(&ng);
            v[i] = (float)(x * x);
        }
        return;
    }
    /* An epoch's worth of change, kept small as between consecutive epochs
     * of a converging run: weights move by about 1e-4 of their spread, the
     * moments follow one Adam step with a fresh gradient. */
    double lr = 1e-4 * p->std;
    for (size_t i = a; i < b; i++) {
        double gr = ms * normal(&ng);
        w[i] = (float)(w[i] + lr * normal(&ng));
        m[i] = (float)(0.9 * m[i] + 0.1 * gr);
        v[i] = (float)(0.999 * v[i] + 0.001 * gr * gr);
    }
}

static void fill_small(bench_state *st, int64_t epoch)
{
    int64_t step = epoch * 1000;
    memcpy(st->t[st->t_step].data, &step, sizeof step);
    memcpy(st->t[st->t_epoch].data, &epoch, sizeof epoch);
    uint64_t x = mix_seed(st->seed, (uint64_t)epoch, 0xA5A5, 0);
    uint8_t *r = st->t[st->t_rng].data;
    for (size_t i = 0; i < RNG_STATE_BYTES; i += 8) {
        uint64_t z = splitmix64(&x);
        memcpy(r + i, &z, 8);
    }
}

/* Runs gen_block over every block of the selected parameters. */
static int run_blocks(bench_state *st, int64_t epoch)
{
    size_t nj = 0;
    for (size_t i = 0; i < st->np; i++)
        if (epoch == 0 || !st->frozen[st->p[i].layer])
            nj += (st->p[i].count + BLOCK_ELEMS - 1) / BLOCK_ELEMS;
    job *jobs = malloc((nj ? nj : 1) * sizeof *jobs);
    if (!jobs)
        return -1;
    nj = 0;
    for (size_t i = 0; i < st->np; i++) {
        if (epoch != 0 && st->frozen[st->p[i].layer])
            continue;
        for (size_t b = 0; b * BLOCK_ELEMS < st->p[i].count; b++)
            jobs[nj++] = (job){i, b};
    }
    gen_ctx g = {st, jobs, epoch};
    bench_parallel(nj, gen_block, &g);
    free(jobs);
    fill_small(st, epoch == 0 ? 1 : epoch);
    return 0;
}

int bench_state_build(bench_state *st, uint64_t size_bytes, double frozen, uint64_t seed)
{
    memset(st, 0, sizeof *st);
    st->seed = seed;
    uint64_t small = 2 * sizeof(int64_t) + RNG_STATE_BYTES;
    int64_t(*rows)[2] = NULL;
    int nl = plan_layers(size_bytes > small ? size_bytes - small : 0, &rows);
    if (nl < 0)
        goto oom;
    if (nl == 0) {
        free(rows);
        fprintf(stderr, "ckpt-bench: a state of %llu bytes is too small for one layer\n",
                (unsigned long long)size_bytes);
        return -1;
    }
    st->nlayers = nl;
    st->t = calloc((size_t)nl * 6 + 3, sizeof *st->t);
    st->p = calloc((size_t)nl * 2, sizeof *st->p);
    st->frozen = calloc((size_t)nl, 1);
    if (!st->t || !st->p || !st->frozen) {
        free(rows);
        goto oom;
    }
    char name[160];
    for (int l = 0; l < nl; l++) {
        int64_t r = rows[l][0], c = rows[l][1];
        double wstd = sqrt(2.0 / (double)c); /* He initialisation for fan_in c */
        for (int k = 0; k < 2; k++) {
            bench_param *p = &st->p[st->np++];
            p->layer = l;
            p->count = (size_t)(k == 0 ? r * c : r);
            p->std = k == 0 ? wstd : 0.1 * wstd;
            p->tw = st->nt;
            snprintf(name, sizeof name, "layers.%d.%s", l, k == 0 ? "weight" : "bias");
            add_tensor(st, name, CKPT_KIND_MODEL, CKPT_F32, k == 0 ? 2 : 1, r, c);
        }
    }
    free(rows);
    for (int mv = 0; mv < 2; mv++) {
        for (size_t i = 0; i < st->np; i++) {
            bench_param *p = &st->p[i];
            const bench_tensor *w = &st->t[p->tw];
            if (mv == 0)
                p->tm = st->nt;
            else
                p->tv = st->nt;
            snprintf(name, sizeof name, "optim.%s.%s", mv == 0 ? "m" : "v", w->name);
            add_tensor(st, name, CKPT_KIND_OPTIMIZER, CKPT_F32, w->ndim, w->shape[0], w->shape[1]);
        }
    }
    st->t_step = st->nt;
    add_tensor(st, "optim.step", CKPT_KIND_OPTIMIZER, CKPT_I64, 0, 0, 0);
    st->t_rng = st->nt;
    add_tensor(st, "rng.state", CKPT_KIND_RNG, CKPT_U8, 1, RNG_STATE_BYTES, 0);
    st->t_epoch = st->nt;
    add_tensor(st, "state.epoch", CKPT_KIND_STATE, CKPT_I64, 0, 0, 0);
    for (size_t i = 0; i < st->nt; i++) {
        bench_tensor *t = &st->t[i];
        t->offset = st->logical_bytes;
        st->logical_bytes += t->nbytes;
        if (t->kind != CKPT_KIND_MODEL && t->kind != CKPT_KIND_OPTIMIZER)
            continue;
        if (i != st->t_step)
            st->param_bytes += t->nbytes;
    }
    for (size_t i = 0; i < st->nt; i++) {
        st->t[i].data = malloc(st->t[i].nbytes);
        if (!st->t[i].data)
            goto oom;
    }
    choose_frozen(st, frozen);
    if (run_blocks(st, 0) != 0)
        goto oom;
    return 0;
oom:
    fprintf(stderr, "ckpt-bench: out of memory for a state of %llu bytes\n",
            (unsigned long long)size_bytes);
    bench_state_free(st);
    return -1;
}

void bench_state_step(bench_state *st, int64_t epoch)
{
    if (run_blocks(st, epoch) != 0)
        bench_die("out of memory for the epoch update");
}

void bench_state_free(bench_state *st)
{
    if (st->t)
        for (size_t i = 0; i < st->nt; i++)
            free(st->t[i].data);
    free(st->t);
    free(st->p);
    free(st->frozen);
    memset(st, 0, sizeof *st);
}

/* ------------------------------------------------------------ ckpt I/O */

int bench_state_save(ckpt_store *s, const char *run, const bench_state *st, int64_t epoch,
                     int64_t *out_id)
{
    ckpt_writer *w;
    int rc = ckpt_writer_begin(&w, s, run, epoch, epoch * 1000);
    if (rc != CKPT_OK)
        return rc;
    for (size_t i = 0; i < st->nt; i++) {
        const bench_tensor *t = &st->t[i];
        rc = ckpt_writer_put(w, t->name, t->kind, t->dtype, t->ndim, t->shape, t->data, t->nbytes);
        if (rc != CKPT_OK) {
            ckpt_writer_abort(w);
            return rc;
        }
    }
    return ckpt_writer_commit(w, out_id);
}

int bench_checkpoint_info(ckpt_store *s, int64_t id, ckpt_checkpoint_info *out)
{
    ckpt_reader *r;
    int rc = ckpt_reader_open_id(&r, s, id);
    if (rc != CKPT_OK)
        return rc;
    *out = *ckpt_reader_checkpoint(r);
    ckpt_reader_close(r);
    return CKPT_OK;
}

int bench_state_restore(ckpt_reader *r, const bench_state *st, int compare, size_t *mismatch)
{
    if (mismatch)
        *mismatch = 0;
    if (ckpt_reader_count(r) != st->nt)
        return CKPT_EINVAL;
    uint8_t *scratch = NULL;
    if (compare) {
        size_t max = 1;
        for (size_t i = 0; i < st->nt; i++)
            if (st->t[i].nbytes > max)
                max = st->t[i].nbytes;
        scratch = malloc(max);
        if (!scratch)
            return CKPT_ENOMEM;
    }
    int rc = CKPT_OK;
    for (size_t i = 0; i < st->nt && rc == CKPT_OK; i++) {
        const bench_tensor *t = &st->t[i];
        ckpt_tensor_info ti;
        rc = ckpt_reader_tensor(r, i, &ti);
        if (rc != CKPT_OK)
            break;
        if (strcmp(ti.name, t->name) != 0 || ti.nbytes != t->nbytes) {
            rc = CKPT_EINVAL;
            break;
        }
        rc = ckpt_reader_read(r, i, 0, compare ? scratch : t->data, t->nbytes);
        if (rc == CKPT_OK && compare && memcmp(scratch, t->data, t->nbytes) != 0) {
            if (mismatch && *mismatch == 0)
                *mismatch = i + 1;
        }
    }
    free(scratch);
    return rc;
}
