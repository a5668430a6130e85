/*
 * fuzz_common.h - helpers shared by the libFuzzer harnesses: a scratch
 * directory per process, file writing, invariant checks that abort (so
 * libFuzzer and the replay tests see a crash), and the "open a store that
 * someone else made and touch everything in it" exercise.
 */
#ifndef CKPT_FUZZ_COMMON_H
#define CKPT_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

/* The harness entry point (also called by replay.c). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with a message naming the broken invariant. */
#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                       \
    } while (0)
void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* A library result must be CKPT_OK or one of the documented codes, and an
 * error must come with a message. Returns rc. */
int fz_rc(int rc, const char *what);

/* This process's scratch directory (created on first use under
 * $CKPT_FUZZ_TMP, else /dev/shm, else $CKPT_TEST_TMP or /tmp; removed with
 * its files at exit). */
const char *fz_tmpdir(void);
/* fz_tmpdir() + "/" + name in one of a few rotating static buffers. */
const char *fz_path(const char *name);
/* Writes a whole file (replacing it); aborts on failure (not the input's fault). */
void fz_write_file(const char *path, const void *data, size_t n);
/* Removes PATH and every SQLite side file of the store at PATH. */
void fz_remove_store(const char *path);

/* Opens the store at path read-only, then read-write (never creating), and
 * each time runs verify, lists runs and checkpoints, reads every tensor (in
 * bounded pieces), queries the documented views and, read-write, logs a
 * metric, saves a checkpoint derived from the head, rolls back. Every call
 * must fail cleanly or succeed; results must be self-consistent. */
void fz_exercise_store(const char *path);

/* Builds a deterministic store at path (two runs, configs, metrics, several
 * dtypes, a tensor of five 4 KiB chunks, delta and dedup chunks, a
 * rollback) with the fixed store id f022...; compact vacuums both files to
 * 1 KiB pages (a few dozen KiB in all: a fuzz input). Aborts on failure. */
void fz_make_template_store(const char *path, int compact);

/* Reads a whole file into a malloc'd buffer (free()); NULL if absent. */
void *fz_read_file(const char *path, size_t *n);

#endif
