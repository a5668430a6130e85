/*
 * bench.h - the parts of ckpt-bench shared between its files: the
 * generated training state (state.c) and operating-system helpers (sys.c).
 * Tool code: plain malloc/free, public ckpt.h only.
 */
#ifndef CKPT_BENCH_H
#define CKPT_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

#if defined(__GNUC__)
#define BENCH_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define BENCH_NORETURN __attribute__((noreturn))
#else
#define BENCH_PRINTF(a, b)
#define BENCH_NORETURN
#endif

/* ---------------------------------------------------------------- state.c */

typedef struct bench_tensor {
    char name[96];
    int kind, dtype, ndim;
    int64_t shape[2];
    size_t nbytes;
    void *data;
    uint64_t offset; /* byte offset in the raw baseline file */
} bench_tensor;

/* One trainable parameter (a layer's weight or bias) and its Adam moments. */
typedef struct bench_param {
    int layer;
    size_t tw, tm, tv; /* indexes into bench_state.t */
    size_t count;      /* float32 elements */
    double std;        /* spread of the weights */
} bench_param;

typedef struct bench_state {
    bench_tensor *t;
    size_t nt;
    bench_param *p;
    size_t np;
    int nlayers;
    unsigned char *frozen; /* per layer: gets no updates */
    int nfrozen;
    uint64_t logical_bytes;      /* every tensor */
    uint64_t param_bytes;        /* weights, biases and their moments */
    uint64_t frozen_param_bytes; /* the part of param_bytes in frozen layers */
    uint64_t seed;
    size_t t_step, t_rng, t_epoch; /* the small per-epoch tensors */
} bench_state;

/* Plans layers of realistic shapes (4096x4096 and 1024x4096 matrices with
 * biases at 1 GiB, smaller for small sizes) whose weights plus Adam moments
 * add up to about size_bytes, freezes layers holding about the fraction
 * frozen of the parameter bytes, allocates and fills everything from seed.
 * Returns 0, or -1 (out of memory; message printed). */
int bench_state_build(bench_state *st, uint64_t size_bytes, double frozen, uint64_t seed);

/* One epoch of training: small Adam-like updates to every layer that is not
 * frozen (frozen layers and their moments stay bit-identical), new step
 * count, RNG state and epoch. Deterministic for (seed, epoch). */
void bench_state_step(bench_state *st, int64_t epoch);

void bench_state_free(bench_state *st);

/* Saves every tensor as the checkpoint (epoch, step epoch*1000) of run;
 * *out (may be NULL) receives its info. Returns a ckpt result code. */
int bench_state_save(ckpt_store *s, const char *run, const bench_state *st, int64_t epoch,
                     ckpt_checkpoint_info *out);

/* Reads every tensor of the reader into the state's buffers (dst NULL) or,
 * to check, compares it with them through a scratch buffer (*mismatch set
 * to the index of the first differing tensor + 1, else 0). Returns a ckpt
 * result code; CKPT_EINVAL if the checkpoint does not match the layout. */
int bench_state_restore(ckpt_reader *r, const bench_state *st, int compare, size_t *mismatch);

/* Runs fn(ctx, i) for i in [0, n) on all cores. */
void bench_parallel(size_t n, void (*fn)(void *ctx, size_t i), void *ctx);

/* ---------------------------------------------------------------- sys.c */

double bench_now(void);
/* Bytes this process (all threads) caused to be written to storage so far,
 * from /proc/self/io; -1 if unavailable. */
int64_t bench_proc_write_bytes(void);
/* Removes path and, for a directory, everything under it. 0 or -1. */
int bench_rm_rf(const char *path);
/* Removes the files of a store at path (main, chunks, WAL, journals). */
void bench_store_remove(const char *path);
/* malloc'd "a/b"; exits on out of memory. */
char *bench_path(const char *dir, const char *name);
/* Whole file, NUL-terminated, malloc'd; NULL if unreadable or above max. */
char *bench_read_file(const char *path, size_t max, size_t *len);
/* Runs argv (PATH searched) with stdout/stderr to the given files (NULL:
 * inherited), waits. Returns the exit status, or -1 (could not run it;
 * message printed) or 128+signal. *secs (may be NULL): wall time. */
int bench_spawn(char *const argv[], const char *out_path, const char *err_path, double *secs);
/* File system type of path ("ext4", "tmpfs", ... or hex). */
const char *bench_fs_type(const char *path, char *buf, size_t cap);
/* Directory of the running executable; 0 or -1. */
int bench_exe_dir(char *buf, size_t cap);
int bench_file_exists(const char *path);
void *bench_xmalloc(size_t n);
/* Prints "ckpt-bench: " + message to stderr and exits with status 1. */
BENCH_NORETURN void bench_die(const char *fmt, ...) BENCH_PRINTF(1, 2);
/* Same, adding ckpt_errmsg() for a failed ckpt call. */
BENCH_NORETURN void bench_die_ckpt(int rc, const char *what);

#endif
