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
 * *out_id (may be NULL) receives its id. Returns a ckpt result code. */
int bench_state_save(ckpt_store *s, const char *run, const bench_state *st, int64_t epoch,
                     int64_t *out_id);
/* Sizes and counts of checkpoint id. Returns a ckpt result code. */
int bench_checkpoint_info(ckpt_store *s, int64_t id, ckpt_checkpoint_info *out);

/* Reads every tensor of the reader into the state's buffers (dst NULL) or,
 * to check, compares it with them through a scratch buffer (*mismatch set
 * to the index of the first differing tensor + 1, else 0). Returns a ckpt
 * result code; CKPT_EINVAL if the checkpoint does not match the layout. */
int bench_state_restore(ckpt_reader *r, const bench_state *st, int compare, size_t *mismatch);

/* Runs fn(ctx, i) for i in [0, n) on all cores. */
void bench_parallel(size_t n, void (*fn)(void *ctx, size_t i), void *ctx);

/* ---------------------------------------------------------------- options, results */

typedef struct bench_opts {
    uint64_t size_mib;
    int epochs;
    double frozen;
    int reps;
    uint64_t seed;
    int64_t metrics;          /* metric values to log */
    int64_t list_checkpoints; /* checkpoints in the `ckpt list` store */
    int64_t trained_limit;    /* training examples per epoch of ckpt-train */
    int trained_epochs;
    const char *dir, *config_large, *python;
    int codec;              /* CKPT_CODEC_* of the save stores (--codec; default auto) */
    const char *codec_name;
    int keep, skip_torch, skip_trained, skip_list, skip_rss, json_only;
    char *work; /* the run's own temporary directory */
    char exe_dir[4096];
} bench_opts;

/* Every figure is NAN until measured (printed as null). Times are the best
 * of opts.reps runs, in seconds. */
typedef struct bench_results {
    uint64_t logical_bytes;
    size_t ntensors;
    int nlayers, nfrozen;
    double frozen_share; /* frozen bytes over parameter bytes */
    double gen_s;
    double raw_write_s, raw_write_nofsync_s, save_s;
    double save_write_bytes, save_stored_bytes;
    double raw_read_s, restore_s, restore_last_s;
    int nepochs;
    double *epoch_logical, *epoch_stored, *epoch_save_s; /* [1..nepochs] */
    double rss_save_mib, rss_restore_mib, rss_parent_mib;
    double trained_logical, trained_stored, trained_s;
    double trained_logical_after0, trained_stored_after0; /* without epoch 0 */
    int trained_checkpoints;
    double metrics_n, metrics_s;
    double list_ms, list_build_s;
    int64_t list_n;
    double torch_save_s, torch_save_nofsync_s, torch_load_s;
    double numpy_save_s, numpy_save_nofsync_s, numpy_load_s;
    char py_versions[128];
    char notes[16][320];
    int nnotes;
} bench_results;

void bench_note(bench_results *res, const char *fmt, ...) BENCH_PRINTF(2, 3);
/* Progress line on stderr. */
void bench_progress(const char *fmt, ...) BENCH_PRINTF(1, 2);

/* ---------------------------------------------------------------- io.c */

/* Peak RSS of a child that generates the state and saves it, and of one
 * that restores it into fresh buffers. Run while this process is small. */
void bench_phase_rss(const bench_opts *o, bench_results *res);
/* First checkpoint against write+fsync, restore against read, then the
 * epoch sequence. Leaves raw.bin and raw.json (the tensors' index) in the
 * work directory for the Python baselines. */
void bench_phase_io(const bench_opts *o, bench_state *st, bench_results *res);

/* ---------------------------------------------------------------- other.c */

void bench_phase_metrics(const bench_opts *o, bench_results *res);
void bench_phase_list(const bench_opts *o, bench_results *res);
void bench_phase_trained(const bench_opts *o, bench_results *res);
void bench_phase_python(const bench_opts *o, bench_results *res);

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
