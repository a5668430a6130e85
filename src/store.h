/*
 * store.h - the store handle shared by every module: the two SQLite
 * connections (main: WAL, what people query; chunks: rollback journal,
 * tensor bytes), settings, the metrics buffer and SQL helpers.
 */
#ifndef CKPT_STORE_H
#define CKPT_STORE_H

#include <sqlite3.h>
#include <stdint.h>

#include "ckpt.h"

typedef struct ckpt__metric {
    int64_t epoch, step;
    double value, time;
    uint32_t series; /* index into the store's interned series */
    uint32_t seq;    /* position in the buffer, for a stable sort */
} ckpt__metric;

/* A metric series (run, branch, name) seen by this handle. */
typedef struct ckpt__mseries {
    int64_t run_id, branch_id;
    char *name;
    int64_t id; /* metric_series.id, 0 until a flush assigns it */
} ckpt__mseries;

#define CKPT__STEP_BITS 40

struct ckpt_store {
    sqlite3 *db;  /* main database */
    sqlite3 *cdb; /* chunk database */
    char *path;
    char *cpath;
    int flags;
    int durability;
    int busy_ms;
    int64_t codec, level, threads, chunk_size, flush_ms, mmap;
    int writer_active;
    int poisoned; /* an I/O error happened while writing: no more writes */
    char poison_msg[256];
    struct ckpt__pool *pool; /* worker threads, started on first use */

    /* metrics buffer */
    ckpt__metric *mbuf;
    size_t mlen, mcap;
    double moldest; /* time of the oldest buffered value, 0 if empty */
    /* metric series seen by this handle (interned; hash index over them) */
    ckpt__mseries *series;
    size_t nseries, cap_series;
    uint32_t *series_index; /* open addressing: index + 1, 0 empty */
    size_t series_index_cap;
    /* last run resolved by name for metric logging */
    char *mrun;
    int64_t mrun_id, mrun_branch;
};

/* Bytes of the chunk file read through mmap. Off by default: mapped pages
 * count in the process's RSS (a 1 GiB restore peaked at 1.9 GiB with it,
 * 1.06 GiB without) and a media error becomes SIGBUS. SQLite caps it at
 * 2 GiB in Debian's build. */
#define CKPT__DEFAULT_MMAP 0

#define CKPT__APP_ID_MAIN 0x636b7074   /* "ckpt" */
#define CKPT__APP_ID_CHUNKS 0x636b7063 /* "ckpc" */

/* Maps a SQLite result code to a ckpt code and sets the message
 * "<what>: <sqlite message>". */
int ckpt__sqlerr(sqlite3 *db, int rc, const char *what);

/* Runs SQL without results. */
int ckpt__exec(sqlite3 *db, const char *sql, const char *what);
/* Prepares a statement (cached by SQLite's persistent flag). */
int ckpt__prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK (rollback ignores errors). */
int ckpt__begin(sqlite3 *db, const char *what);
int ckpt__commit(sqlite3 *db, const char *what);
void ckpt__rollback(sqlite3 *db);

/* Fails with CKPT_EREADONLY if the store was opened read-only, CKPT_EIO if
 * an earlier write failed with an I/O error. */
int ckpt__writable(ckpt_store *s, const char *what);
/* Returns rc; after CKPT_EIO the handle refuses every further write. */
int ckpt__poison(ckpt_store *s, int rc);

/* Run id (and current branch id) of a run by name.
 * Errors: CKPT_ENOTFOUND naming the run. */
int ckpt__run_id(ckpt_store *s, const char *run, int64_t *id, int64_t *branch);

/* Checkpoint row by id. */
int ckpt__checkpoint_get(ckpt_store *s, int64_t id, ckpt_checkpoint_info *out, int64_t *run_id);

/* 1 if the line of run_id (its head and the head's ancestors) holds a
 * checkpoint at (epoch, step), 0 if not, <0 on error. */
int ckpt__line_has(ckpt_store *s, int64_t run_id, int64_t epoch, int64_t step);

/* Starts s->pool if needed (CKPT_PARAM_THREADS workers, 0 = one per core). */
int ckpt__store_pool(ckpt_store *s);

/* What each worker of s->pool owns: a codec context, and its own read-only
 * connection to the chunk file, opened by the first read job that needs it
 * (so restores fetch on every core instead of only on the calling thread)
 * and closed with the pool. */
typedef struct ckpt__wctx {
    struct ckpt__codec_ctx *codec;
    sqlite3 *cdb;
} ckpt__wctx;

/* The worker's chunk connection, opened on first use with the store's
 * settings. Errors: those of opening a database (CKPT_ENOMEM, CKPT_EIO, ...). */
int ckpt__wctx_cdb(ckpt_store *s, ckpt__wctx *w, sqlite3 **out);

/* flock on PATH-lock: shared by saves and readers, exclusive by gc.
 * *out_fd is -1 when no lock could be taken on a read-only store. */
int ckpt__lock(ckpt_store *s, int exclusive, int wait, int *out_fd);
void ckpt__unlock(int fd);

/* SQLite's own descriptor of the chunk file, or -1. Used only to start
 * writeback early (sync_file_range); it is never closed by ckpt. */
int ckpt__chunk_fd(ckpt_store *s);

/* Wall time. */
int64_t ckpt__now_us(void);
double ckpt__now_s(void);

/* Validates a run or metric name (1..256 bytes, printable, no '@'). */
int ckpt__check_name(const char *name, const char *what);

#endif
