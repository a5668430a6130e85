/*
 * pool.h - a small fixed-size thread pool for hashing, encoding and
 * decoding chunks. The calling thread submits jobs in order and waits for
 * each (bounded window, so memory stays bounded). Save jobs never touch
 * SQLite; restore jobs read chunks through their worker's own connection
 * (ckpt__wctx in store.h), never through the store's.
 */
#ifndef CKPT_POOL_H
#define CKPT_POOL_H

#include <stddef.h>

typedef struct ckpt__pool ckpt__pool;
typedef struct ckpt__job ckpt__job;

struct ckpt__job {
    void (*fn)(ckpt__job *job, void *worker_ctx); /* runs on a worker */
    ckpt__job *next;                              /* queue link, pool-owned */
    int done;                                     /* pool-owned */
};

/* Creates nthreads workers; make_ctx (may be NULL) builds each worker's
 * private context (e.g. a codec context) and free_ctx destroys it.
 * Errors: CKPT_ENOMEM, CKPT_ERROR (thread creation). */
int ckpt__pool_new(ckpt__pool **out, int nthreads, int (*make_ctx)(void **ctx),
                   void (*free_ctx)(void *ctx));
void ckpt__pool_free(ckpt__pool *p); /* waits for queued jobs; NULL ok */
int ckpt__pool_threads(const ckpt__pool *p);
void ckpt__pool_submit(ckpt__pool *p, ckpt__job *job);
void ckpt__pool_wait(ckpt__pool *p, ckpt__job *job);

/* Number of online CPUs (at least 1). */
int ckpt__ncpu(void);

#endif
