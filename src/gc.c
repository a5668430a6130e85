/*
 * gc.c - deleting checkpoints and collecting the chunks nobody refers to.
 * A chunk stays while any manifest lists it or while it is the base of a
 * delta chunk that stays, so deleting an old checkpoint never breaks a
 * newer one. A save in progress (in any process) holds a shared lock on
 * PATH-lock from begin to commit, readers hold it while open; collection
 * takes it exclusively, so it never frees a chunk a save is about to
 * reference (dedup hits on unreferenced chunks left by a crash included).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "chunks.h"
#include "error.h"
#include "store.h"

int ckpt__lock(ckpt_store *s, int exclusive, int wait, int *out_fd)
{
    *out_fd = -1;
    size_t n = strlen(s->path);
    char *lp = ckpt__malloc(n + sizeof "-lock");
    if (!lp)
        return ckpt__err(CKPT_ENOMEM, "out of memory");
    memcpy(lp, s->path, n);
    memcpy(lp + n, "-lock", sizeof "-lock");
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        int rc = (s->flags & CKPT_OPEN_READONLY) ? CKPT_OK /* cannot gc either */
                                                 : ckpt__err(CKPT_EIO, "cannot open %s: %s", lp,
                                                             strerror(e));
        ckpt__free(lp);
        return rc;
    }
    int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
    while (flock(fd, op) != 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(fd);
        int rc = e == EWOULDBLOCK ? ckpt__err(CKPT_EBUSY, "%s is in use: a checkpoint is being "
                                                          "saved or read; try again",
                                              s->path)
                                  : ckpt__err(CKPT_EIO, "cannot lock %s: %s", lp, strerror(e));
        ckpt__free(lp);
        return rc;
    }
    ckpt__free(lp);
    *out_fd = fd;
    return CKPT_OK;
}

void ckpt__unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* closing the descriptor releases the flock */
}

int ckpt_checkpoint_delete(ckpt_store *s, int64_t id)
{
    int rc;
    if ((rc = ckpt__writable(s, "deleting a checkpoint")))
        return rc;
    if ((rc = ckpt__begin(s->db, "deleting a checkpoint")))
        return rc;
    ckpt_checkpoint_info ci;
    int64_t run_id;
    if ((rc = ckpt__checkpoint_get(s, id, &ci, &run_id)))
        goto fail;
    sqlite3_stmt *st;
    if ((rc = ckpt__prepare(s->db, "SELECT name, head_id = ? FROM runs WHERE id = ?", &st)))
        goto fail;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, run_id);
    int is_head = 0;
    char run[300] = "";
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(run, sizeof run, "%s", (const char *)sqlite3_column_text(st, 0));
        is_head = sqlite3_column_int(st, 1);
    }
    sqlite3_finalize(st);
    if (is_head) {
        rc = ckpt__err(CKPT_EINVAL,
                       "%s@%lld (step %lld) is the head of run '%s': roll back to another "
                       "checkpoint first",
                       run, (long long)ci.epoch, (long long)ci.step, run);
        goto fail;
    }
    /* Children keep a lineage: they take the deleted one's parent. */
    static const char *const steps[] = {
        ("UPDATE checkpoints SET parent_id = (SELECT parent_id FROM checkpoints WHERE id = ?1)"
         " WHERE parent_id = ?1"),
        "UPDATE runs SET branched_from = NULL WHERE branched_from = ?1",
        "DELETE FROM tensors WHERE checkpoint_id = ?1",
        "DELETE FROM checkpoints WHERE id = ?1",
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if ((rc = ckpt__prepare(s->db, steps[i], &st)))
            goto fail;
        sqlite3_bind_int64(st, 1, id);
        int r = sqlite3_step(st);
        sqlite3_finalize(st);
        if (r != SQLITE_DONE) {
            rc = ckpt__sqlerr(s->db, r, "deleting a checkpoint");
            goto fail;
        }
    }
    return ckpt__poison(s, ckpt__commit(s->db, "deleting a checkpoint"));
fail:
    ckpt__rollback(s->db);
    return ckpt__poison(s, rc);
}

/* A sorted array of live chunk ids (binary search). */
typedef struct {
    int64_t *v;
    size_t n, cap;
} idset;

static int idset_add(idset *x, int64_t id)
{
    if (x->n == x->cap) {
        size_t nc = x->cap ? 2 * x->cap : 4096;
        int64_t *p = ckpt__realloc(x->v, nc * sizeof *p);
        if (!p)
            return ckpt__err(CKPT_ENOMEM, "out of memory");
        x->v = p;
        x->cap = nc;
    }
    x->v[x->n++] = id;
    return CKPT_OK;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int idset_has(const idset *x, int64_t id)
{
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (x->v[mid] < id)
            lo = mid + 1;
        else if (x->v[mid] > id)
            hi = mid;
        else
            return 1;
    }
    return 0;
}

int ckpt_gc(ckpt_store *s, uint64_t *out_chunks, uint64_t *out_bytes)
{
    int rc, fd = -1;
    if (out_chunks)
        *out_chunks = 0;
    if (out_bytes)
        *out_bytes = 0;
    if ((rc = ckpt__writable(s, "collecting unused chunks")))
        return rc;
    if ((rc = ckpt__lock(s, 1, 0, &fd)))
        return rc;
    idset live = {0};
    sqlite3_stmt *st = NULL;
    if ((rc = ckpt__begin(s->cdb, "collecting unused chunks")))
        goto out;
    /* Manifests: read in one transaction of the main file. */
    if ((rc = ckpt__exec(s->db, "BEGIN", "collecting unused chunks")))
        goto out;
    if ((rc = ckpt__prepare(s->db, "SELECT chunks FROM tensors", &st)) == CKPT_OK) {
        int r;
        while (rc == CKPT_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
            const uint8_t *b = sqlite3_column_blob(st, 0);
            size_t nb = (size_t)sqlite3_column_bytes(st, 0);
            for (size_t i = 0; rc == CKPT_OK && i + 8 <= nb; i += 8)
                rc = idset_add(&live, (int64_t)ckpt__le64(b + i));
        }
        if (rc == CKPT_OK && r != SQLITE_DONE)
            rc = ckpt__sqlerr(s->db, r, "reading manifests");
        sqlite3_finalize(st);
        st = NULL;
    }
    ckpt__exec(s->db, "COMMIT", "collecting unused chunks");
    if (rc)
        goto out;
    qsort(live.v, live.n, sizeof *live.v, cmp64);
    /* Bases of live deltas are live (bases are never deltas themselves). */
    size_t direct = live.n;
    if ((rc = ckpt__prepare(s->cdb, "SELECT id, base_id FROM chunks WHERE base_id IS NOT NULL", &st)))
        goto out;
    while (rc == CKPT_OK && sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0), base = sqlite3_column_int64(st, 1);
        int found = 0;
        size_t lo = 0, hi = direct;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (live.v[mid] < id)
                lo = mid + 1;
            else if (live.v[mid] > id)
                hi = mid;
            else {
                found = 1;
                break;
            }
        }
        if (found)
            rc = idset_add(&live, base);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc)
        goto out;
    qsort(live.v, live.n, sizeof *live.v, cmp64);
    sqlite3_stmt *del = NULL;
    if ((rc = ckpt__prepare(s->cdb, "SELECT id, length(data) FROM chunks", &st)) ||
        (rc = ckpt__prepare(s->cdb, "DELETE FROM chunks WHERE id = ?", &del)))
        goto out_del;
    uint64_t nchunks = 0, nbytes = 0;
    int r;
    while (rc == CKPT_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (idset_has(&live, id))
            continue;
        nbytes += (uint64_t)sqlite3_column_int64(st, 1);
        nchunks++;
        sqlite3_bind_int64(del, 1, id);
        int x = sqlite3_step(del);
        sqlite3_reset(del);
        if (x != SQLITE_DONE)
            rc = ckpt__sqlerr(s->cdb, x, "deleting a chunk");
    }
    if (rc == CKPT_OK && r != SQLITE_DONE)
        rc = ckpt__sqlerr(s->cdb, r, "listing chunks");
out_del:
    sqlite3_finalize(del);
    sqlite3_finalize(st);
    st = NULL;
    if (rc == CKPT_OK) {
        rc = ckpt__commit(s->cdb, "collecting unused chunks");
        if (rc == CKPT_OK) {
            if (out_chunks)
                *out_chunks = nchunks;
            if (out_bytes)
                *out_bytes = nbytes;
        }
    }
out:
    sqlite3_finalize(st);
    ckpt__rollback(s->cdb);
    ckpt__free(live.v);
    ckpt__unlock(fd);
    return ckpt__poison(s, rc);
}
