/*
 * faultutil.h - what the fault-injection tests share: deterministic
 * checkpoint contents per epoch, saving them, checking a stored checkpoint
 * byte for byte, safetensors files of the same contents, store copies.
 * Functions return 0 / a ckpt code instead of asserting, so that a forked
 * child or a loop can report which iteration failed.
 */
#ifndef CKPT_FAULTUTIL_H
#define CKPT_FAULTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

#define FU_NTENSORS 6

typedef struct fu_tensor {
    const char *name;
    int kind, dtype, ndim;
    int64_t shape[CKPT_MAX_DIMS];
    size_t nbytes;
    unsigned char *data; /* malloc'd (plain malloc: not counted by fault allocators) */
} fu_tensor;

/* Sizes of the first tensor: FU_FULL 1.1 MB (2 chunks of 1 MiB, hashed
 * and encoded on the worker threads), FU_MEDIUM 300 KB (1 chunk, still on
 * the workers), FU_SMALL 80 KB (encoded on the calling thread). */
enum { FU_FULL = 0, FU_MEDIUM = 1, FU_SMALL = 2 };

/* The tensors of the checkpoint at epoch e (e >= 0): an f32 tensor that
 * differs from epoch to epoch in a few elements (delta-encoded against the
 * parent), a smooth f32 tensor (byte planes + zstd), random optimizer
 * moments, an RNG state equal in every epoch (dedup hit, confirmed by
 * reading the stored chunk back), a scalar step and an empty tensor.
 * Generated once and cached; valid until the program exits. */
const fu_tensor *fu_model(int64_t e, int size);

/* Opens path with durability dur, 1 MiB chunks and the given worker
 * threads (0: leave the default). */
int fu_open(ckpt_store **s, const char *path, int dur, int threads);

/* Saves t as run@e (step 10e). Returns the first error (the writer is
 * aborted or freed). */
int fu_save_tensors(ckpt_store *s, const char *run, int64_t e, const fu_tensor t[FU_NTENSORS],
                    int64_t *id);
/* fu_model(e, size) saved as run@e. */
int fu_save(ckpt_store *s, const char *run, int64_t e, int size, int64_t *id);

/* Checks run@e against fu_model(e, size): 0 if present and identical in
 * names, dtypes, shapes and bytes; 1 if there is no checkpoint for that
 * epoch; -1 (with a message on stderr) for anything else. */
int fu_check(ckpt_store *s, const char *run, int64_t e, int size);

/* ckpt_verify on the whole store: 0 if it returns CKPT_OK with no damage,
 * else -1 with the problems on stderr. */
int fu_verify(ckpt_store *s);

/* Writes fu_model(e, size) as a safetensors file. 0 or -1. */
int fu_write_safetensors(const char *path, int64_t e, int size);

/* Copies a closed store: src, src-chunks and src-wal if any, to dst...
 * (removing dst's -shm and journals). 0, or -1 (also if src has a hot
 * journal). */
int fu_copy_store(const char *src, const char *dst);

/* A single SQL integer (first column of the first row), or -1. */
int64_t fu_sql_int(ckpt_store *s, const char *sql);

/* A new empty directory for a test's stores: under $CKPT_FAULT_TMP if
 * set, else under /dev/shm when it is a writable tmpfs (these tests fsync
 * thousands of times; the faults are injected above the filesystem, and a
 * killed process loses nothing the page cache holds), else tu_tmpdir().
 * Static buffer, valid until the next call. */
const char *fu_tmpdir(void);
/* Removes a directory tree (what fu_tmpdir made). */
void fu_rmtree(const char *dir);

/* Number of the environment variable name if set (> 0), else def. */
long fu_env_long(const char *name, long def);

#endif
