/*
 * pool.c - see pool.h. One mutex, one queue, two condition variables: the
 * jobs are megabyte-sized chunks, so contention is negligible.
 */
#include "pool.h"

#include <pthread.h>
#include <unistd.h>

#include "error.h"

struct ckpt__pool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* a job was queued, or stopping */
    pthread_cond_t done; /* a job finished */
    ckpt__job *head, *tail;
    int stop;
    int n;   /* threads running */
    int cap; /* threads (and contexts) allocated */
    pthread_t *threads;
    void **ctx;
    void (*free_ctx)(void *);
};

typedef struct {
    ckpt__pool *p;
    int i;
} start_arg;

static void *worker(void *arg)
{
    ckpt__pool *p = ((start_arg *)arg)->p;
    int i = ((start_arg *)arg)->i;
    ckpt__free(arg);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->work, &p->mu);
        if (!p->head)
            break;
        ckpt__job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        j->fn(j, p->ctx ? p->ctx[i] : NULL);
        pthread_mutex_lock(&p->mu);
        j->done = 1;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int ckpt__ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 64 ? 64 : (int)n);
}

int ckpt__pool_new(ckpt__pool **out, int nthreads, int (*make_ctx)(void **ctx),
                   void (*free_ctx)(void *ctx))
{
    *out = NULL;
    ckpt__pool *p = ckpt__calloc(1, sizeof *p);
    if (!p)
        return ckpt__err(CKPT_ENOMEM, "out of memory starting worker threads");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->free_ctx = free_ctx;
    p->cap = nthreads;
    p->threads = ckpt__calloc((size_t)nthreads, sizeof *p->threads);
    p->ctx = make_ctx ? ckpt__calloc((size_t)nthreads, sizeof *p->ctx) : NULL;
    if (!p->threads || (make_ctx && !p->ctx)) {
        ckpt__pool_free(p);
        return ckpt__err(CKPT_ENOMEM, "out of memory starting worker threads");
    }
    for (int i = 0; i < nthreads; i++) {
        int rc;
        if (make_ctx && (rc = make_ctx(&p->ctx[i])) != CKPT_OK) {
            ckpt__pool_free(p);
            return rc;
        }
        start_arg *a = ckpt__malloc(sizeof *a);
        if (!a) {
            ckpt__pool_free(p);
            return ckpt__err(CKPT_ENOMEM, "out of memory starting worker threads");
        }
        a->p = p;
        a->i = i;
        if (pthread_create(&p->threads[i], NULL, worker, a) != 0) {
            ckpt__free(a);
            ckpt__pool_free(p);
            return ckpt__err(CKPT_ERROR, "cannot start a worker thread");
        }
        p->n++;
    }
    *out = p;
    return CKPT_OK;
}

void ckpt__pool_free(ckpt__pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    if (p->ctx && p->free_ctx)
        for (int i = 0; i < p->cap; i++)
            if (p->ctx[i])
                p->free_ctx(p->ctx[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    ckpt__free(p->threads);
    ckpt__free(p->ctx);
    ckpt__free(p);
}

int ckpt__pool_threads(const ckpt__pool *p)
{
    return p->n;
}

void ckpt__pool_submit(ckpt__pool *p, ckpt__job *job)
{
    job->done = 0;
    job->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
}

void ckpt__pool_wait(ckpt__pool *p, ckpt__job *job)
{
    pthread_mutex_lock(&p->mu);
    while (!job->done)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
