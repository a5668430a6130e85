/*
 * verify.c - `ckpt verify`: SQLite's integrity check on both files, then
 * every chunk of the selected checkpoints decoded and checked against its
 * hash. A chunk shared by many checkpoints is checked once; every tensor
 * that uses a damaged chunk is reported.
 */
#include <stdio.h>
#include <string.h>

#include "chunks.h"
#include "error.h"
#include "store.h"

/* Open-addressing map: chunk id -> 1 ok, 2 damaged. */
typedef struct idmap {
    int64_t *keys;
    uint8_t *vals;
    size_t cap, n;
} idmap;

static uint8_t *idmap_slot(idmap *m, int64_t k, int insert)
{
    if (insert && (m->n + 1) * 2 > m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 1024;
        int64_t *nk = ckpt__calloc(nc, sizeof *nk);
        uint8_t *nv = ckpt__calloc(nc, 1);
        if (!nk || !nv) {
            ckpt__free(nk);
            ckpt__free(nv);
            return NULL;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = ((uint64_t)m->keys[i] * 0x9e3779b97f4a7c15ULL) & (nc - 1);
                while (nk[j])
                    j = (j + 1) & (nc - 1);
                nk[j] = m->keys[i];
                nv[j] = m->vals[i];
            }
        ckpt__free(m->keys);
        ckpt__free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = nc;
    }
    if (!m->cap)
        return NULL;
    size_t j = ((uint64_t)k * 0x9e3779b97f4a7c15ULL) & (m->cap - 1);
    while (m->keys[j] && m->keys[j] != k)
        j = (j + 1) & (m->cap - 1);
    if (!m->keys[j]) {
        if (!insert)
            return NULL;
        m->keys[j] = k;
        m->n++;
    }
    return &m->vals[j];
}

static int integrity(sqlite3 *db, const char *path, ckpt_verify_fn fn, void *ctx, uint64_t *bad)
{
    sqlite3_stmt *st;
    int r = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
    if (r != SQLITE_OK) {
        (*bad)++;
        if (fn) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s: integrity check cannot run: %s", path,
                     sqlite3_errmsg(db));
            fn(ctx, NULL, -1, -1, NULL, msg);
        }
        return CKPT_OK;
    }
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (t && strcmp(t, "ok") != 0) {
            (*bad)++;
            if (fn) {
                char msg[768];
                snprintf(msg, sizeof msg, "%s: %s", path, t);
                fn(ctx, NULL, -1, -1, NULL, msg);
            }
        }
    }
    if (r != SQLITE_DONE) {
        (*bad)++;
        if (fn) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s: integrity check failed: %s", path, sqlite3_errmsg(db));
            fn(ctx, NULL, -1, -1, NULL, msg);
        }
    }
    sqlite3_finalize(st);
    return CKPT_OK;
}

typedef struct vstate {
    idmap seen; /* chunk id -> 1 ok, 2 damaged: shared chunks are checked once */
    uint8_t *buf;
    size_t buf_cap;
    ckpt__chunk_io io;
} vstate;

/* Checks every chunk of one checkpoint; reports each damaged tensor once.
 * Returns an error only when the check itself cannot go on. */
static int verify_one(ckpt_store *s, vstate *vs, int64_t id, ckpt_verify_fn fn, void *ctx,
                      uint64_t *bad)
{
    int rc = CKPT_OK;
    ckpt_reader *rd;
    int orc = ckpt_reader_open_id(&rd, s, id);
    if (orc == CKPT_ECORRUPT) {
        (*bad)++;
        if (fn)
            fn(ctx, NULL, -1, -1, NULL, ckpt_errmsg());
        return CKPT_OK;
    }
    if (orc)
        return orc;
    const ckpt_checkpoint_info *ci = ckpt_reader_checkpoint(rd);
    for (size_t i = 0; i < ckpt_reader_count(rd) && rc == CKPT_OK; i++) {
        ckpt_tensor_info ti;
        ckpt_reader_tensor(rd, i, &ti);
        const int64_t *cids;
        size_t nch, csize;
        ckpt__reader_chunk_ids(rd, i, &cids, &nch, &csize);
        char problem[1024] = "";
        for (size_t c = 0; c < nch && !problem[0]; c++) {
            uint8_t *v = idmap_slot(&vs->seen, cids[c], 0);
            if (v && *v == 1)
                continue;
            uint64_t start = (uint64_t)c * csize;
            size_t want = (size_t)(ti.nbytes - start < csize ? ti.nbytes - start : csize);
            if (v && *v == 2) {
                snprintf(problem, sizeof problem, "chunk %lld (bytes %llu..%llu) is damaged",
                         (long long)cids[c], (unsigned long long)start,
                         (unsigned long long)(start + want));
                break;
            }
            ckpt__chunk_meta m;
            int crc = ckpt__chunk_meta_get(s, cids[c], &m);
            if (crc == CKPT_OK && m.raw_len != want)
                crc = ckpt__err(CKPT_ECORRUPT, "chunk %lld holds %zu bytes, expected %zu",
                                (long long)m.id, m.raw_len, want);
            if (crc == CKPT_OK && vs->buf_cap < want) {
                uint8_t *p = ckpt__realloc(vs->buf, want);
                if (!p) {
                    rc = ckpt__err(CKPT_ENOMEM, "out of memory");
                    break;
                }
                vs->buf = p;
                vs->buf_cap = want;
            }
            if (crc == CKPT_OK)
                crc = ckpt__chunk_read(s, &vs->io, &m, vs->buf);
            if (crc == CKPT_ENOMEM || crc == CKPT_EBUSY) {
                rc = crc;
                break;
            }
            uint8_t *slot = idmap_slot(&vs->seen, cids[c], 1);
            if (!slot) {
                rc = ckpt__err(CKPT_ENOMEM, "out of memory");
                break;
            }
            *slot = crc == CKPT_OK ? 1 : 2;
            if (crc != CKPT_OK)
                snprintf(problem, sizeof problem, "bytes %llu..%llu: %s",
                         (unsigned long long)start, (unsigned long long)(start + want),
                         ckpt_errmsg());
        }
        if (problem[0]) {
            (*bad)++;
            if (fn)
                fn(ctx, ckpt_reader_run(rd), ci->epoch, ci->step, ti.name, problem);
        }
    }
    ckpt_reader_close(rd);
    return rc;
}

int ckpt_checkpoint_verify(ckpt_store *s, int64_t id, ckpt_verify_fn fn, void *ctx,
                           uint64_t *out_damaged)
{
    uint64_t bad = 0;
    vstate vs = {0};
    int rc = ckpt__chunk_io_init(&vs.io);
    if (rc == CKPT_OK)
        rc = verify_one(s, &vs, id, fn, ctx, &bad);
    ckpt__chunk_io_free(&vs.io);
    ckpt__free(vs.buf);
    ckpt__free(vs.seen.keys);
    ckpt__free(vs.seen.vals);
    if (out_damaged)
        *out_damaged = bad;
    if (rc)
        return rc;
    if (bad)
        return ckpt__err(CKPT_ECORRUPT, "checkpoint %lld: %llu damaged tensor(s)", (long long)id,
                         (unsigned long long)bad);
    return CKPT_OK;
}

int ckpt_last_intact(ckpt_store *s, const char *run, ckpt_checkpoint_info *out)
{
    ckpt_checkpoint_info ci;
    int rc = ckpt_head(s, run, &ci);
    while (rc == CKPT_OK) {
        rc = ckpt_checkpoint_verify(s, ci.id, NULL, NULL, NULL);
        if (rc == CKPT_OK) {
            *out = ci;
            return CKPT_OK;
        }
        if (rc != CKPT_ECORRUPT)
            return rc;
        if (!ci.parent)
            return ckpt__err(CKPT_ENOCHECKPOINT, "run '%s' has no intact checkpoint on its line",
                             run);
        rc = ckpt__checkpoint_get(s, ci.parent, &ci, NULL);
    }
    return rc;
}

int ckpt_verify(ckpt_store *s, const char *run, int64_t epoch, ckpt_verify_fn fn, void *ctx,
                uint64_t *out_damaged)
{
    uint64_t bad = 0;
    int rc;
    if (out_damaged)
        *out_damaged = 0;
    integrity(s->db, s->path, fn, ctx, &bad);
    integrity(s->cdb, s->cpath, fn, ctx, &bad);
    /* The early returns below must not lose the problems already reported
     * to fn (found by tests/fuzz: 2 reported, 0 counted). */
    if (out_damaged)
        *out_damaged = bad;

    int64_t only_id = 0, run_id = 0;
    if (run) {
        if ((rc = ckpt__run_id(s, run, &run_id, NULL)))
            return rc;
        if (epoch != CKPT_HEAD) {
            ckpt_checkpoint_info ci;
            if ((rc = ckpt_checkpoint_find(s, run, epoch, &ci)))
                return rc;
            only_id = ci.id;
        }
    }
    sqlite3_stmt *st;
    if ((rc = ckpt__prepare(s->db,
                            "SELECT c.id FROM checkpoints c WHERE (?1 = 0 OR c.run_id = ?1)"
                            " AND (?2 = 0 OR c.id = ?2) ORDER BY c.id",
                            &st)))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, only_id);
    int64_t *ids = NULL;
    size_t nids = 0, cap = 0;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (nids == cap) {
            size_t nc = cap ? 2 * cap : 64;
            int64_t *p = ckpt__realloc(ids, nc * sizeof *p);
            if (!p) {
                sqlite3_finalize(st);
                ckpt__free(ids);
                return ckpt__err(CKPT_ENOMEM, "out of memory");
            }
            ids = p;
            cap = nc;
        }
        ids[nids++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) {
        ckpt__free(ids);
        return ckpt__sqlerr(s->db, r, "listing checkpoints");
    }

    vstate vs = {0};
    rc = ckpt__chunk_io_init(&vs.io);
    for (size_t k = 0; k < nids && rc == CKPT_OK; k++)
        rc = verify_one(s, &vs, ids[k], fn, ctx, &bad);
    ckpt__chunk_io_free(&vs.io);
    ckpt__free(vs.buf);
    ckpt__free(vs.seen.keys);
    ckpt__free(vs.seen.vals);
    ckpt__free(ids);
    if (out_damaged)
        *out_damaged = bad;
    if (rc)
        return rc;
    if (bad)
        return ckpt__err(CKPT_ECORRUPT, "%llu damaged item(s) in %s", (unsigned long long)bad,
                         s->path);
    return CKPT_OK;
}
