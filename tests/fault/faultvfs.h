/*
 * faultvfs.h - a SQLite VFS shim for fault-injection tests: it wraps the
 * "unix" VFS, counts xWrite and xSync calls while armed, and fails the Nth
 * one the way a full disk (ENOSPC -> SQLITE_FULL) or a failed fsync
 * (EIO -> SQLITE_IOERR_FSYNC) does.
 */
#ifndef CKPT_FAULTVFS_H
#define CKPT_FAULTVFS_H

#include <stdint.h>

enum {
    FV_OFF = 0,
    /* ENOSPC at write N; afterwards every write that grows a file fails
     * too (overwrites inside a file succeed), like a full ext4/xfs disk. */
    FV_FULL_GROW = 1,
    /* ENOSPC at write N and at every write after it, overwrites included
     * (a copy-on-write filesystem, or a thin volume, that is full). */
    FV_FULL_ALL = 2,
    /* EIO from fsync/fdatasync at sync N, once: later syncs succeed, which
     * is exactly what makes retrying an fsync dangerous. */
    FV_EIO_SYNC = 3,
    /* EIO from pwrite at write N, once. */
    FV_EIO_WRITE = 4
};

typedef struct fv_stats {
    int64_t writes;          /* xWrite calls while armed */
    int64_t syncs;           /* xSync calls while armed */
    int64_t injected;        /* calls failed on purpose while armed */
    char eio_file[512];      /* the file whose sync failed ("" if none) */
    /* Later xSync calls on that file through the same open file (the same
     * connection), until it is closed: "bare" ones with no write to it
     * since its previous sync (a retried fsync that could succeed over
     * lost pages), and ones after it was rewritten (SQLite playing its
     * rollback journal back into the database file). */
    int64_t bare_resyncs;
    int64_t resyncs_after_rewrite;
} fv_stats;

/* Registers the shim as SQLite's default VFS (idempotent). Call before
 * any ckpt_open. Returns 0 or an SQLite error code. */
int fv_install(void);

/* Zeroes the counters and arms counting with the given fault at call n
 * (1-based; mode FV_OFF only counts). */
void fv_arm(int mode, int64_t n);
/* Stops counting and injecting ("space was freed"); the counters stay. */
void fv_disarm(void);
/* Counts again, injecting nothing, without zeroing the counters: to see
 * what a later call (ckpt_close) does to the file whose sync failed. */
void fv_resume(void);
/* The counters since the last fv_arm. */
fv_stats fv_get(void);

#endif
