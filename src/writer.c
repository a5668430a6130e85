/*
 * writer.c - saving a checkpoint: tensors are cut into chunks, each chunk
 * hashed, deduplicated against every stored chunk (confirmed byte for byte),
 * else encoded (raw, byte planes, or a delta against the same tensor's chunk
 * in the parent checkpoint) and inserted into the chunk database. Commit
 * makes the chunks durable first, then writes the manifest and moves the
 * head in one transaction of the main database: the single moment the
 * checkpoint becomes visible. A crash before it leaves only unreferenced
 * chunks, which later saves reuse.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "chunks.h"
#include "config.h"
#include "error.h"
#include "hash.h"
#include "pool.h"
#include "store.h"

/* Commit the chunk transaction after this many stored bytes so that other
 * writers and readers of the chunk file are not held off for a whole save. */
#define CHUNK_TXN_BYTES ((uint64_t)1 << 30)

/* Start writeback of the chunk file after this many stored bytes, so that
 * the commit's fsync finds most pages already written: the disk works
 * while the next chunks are hashed and encoded. */
#define WRITEBACK_BYTES ((uint64_t)32 << 20)

/* One chunk in flight: hashed and encoded on a worker, looked up and
 * inserted by the calling thread, in order. */
typedef struct wslot {
    ckpt__job job;
    const uint8_t *src;
    size_t len, elem;
    int mode, level;
    uint8_t *base; /* decoded delta base (owned) */
    size_t base_cap, base_len;
    int64_t base_id;
    uint8_t hash[16];
    uint8_t leaves[16 * 64];
    size_t nleaves;
    uint8_t *enc; /* encoded payload (owned) */
    size_t enc_cap, enc_len;
    int codec;
    int rc;
    char msg[512];
} wslot;

typedef struct wtensor {
    char *name;
    int kind, dtype, ndim;
    int64_t shape[CKPT_MAX_DIMS];
    uint64_t nbytes;
    uint8_t hash[16];
    int64_t *chunks;
    size_t nchunks;
} wtensor;

struct ckpt_writer {
    ckpt_store *s;
    char *run;
    int64_t run_id, epoch, step;
    int64_t parent_id; /* head when the save began: source of delta bases */
    int codec, level;  /* the store's, or the run config's ckpt.codec / ckpt.level */
    size_t chunk_size;
    int failed;
    int txn_open;
    uint64_t txn_bytes;
    uint64_t wb_bytes; /* stored since the last writeback kick */
    int wb_fd;         /* SQLite's descriptor of the chunk file, -1: none */
    uint64_t logical, stored;
    wtensor *t;
    size_t nt, capt;
    ckpt__chunk_io io;
    uint8_t *cmp; /* stored chunk read back to confirm a dedup hit */
    size_t cmp_cap;
    wslot *slots;
    size_t nslots;
    int lock_fd; /* shared flock on PATH-lock: no gc while we save */
};

static void free_tensors(ckpt_writer *w)
{
    for (size_t i = 0; i < w->nt; i++) {
        ckpt__free(w->t[i].name);
        ckpt__free(w->t[i].chunks);
    }
    ckpt__free(w->t);
    w->t = NULL;
    w->nt = w->capt = 0;
}

static void writer_free(ckpt_writer *w)
{
    if (w->txn_open)
        ckpt__rollback(w->s->cdb);
    w->s->writer_active = 0;
    ckpt__unlock(w->lock_fd);
    free_tensors(w);
    ckpt__chunk_io_free(&w->io);
    ckpt__free(w->cmp);
    for (size_t i = 0; i < w->nslots; i++) {
        ckpt__free(w->slots[i].base);
        ckpt__free(w->slots[i].enc);
    }
    ckpt__free(w->slots);
    ckpt__free(w->run);
    ckpt__free(w);
}

/* A run's config may choose its codec: `ckpt: {codec: planes, level: 3}`. */
static int run_codec(ckpt_store *s, int64_t run_id, ckpt_writer *w)
{
    sqlite3_stmt *st;
    int rc = ckpt__prepare(s->db,
                           "SELECT key, value FROM params WHERE run_id = ?"
                           " AND key IN ('ckpt.codec', 'ckpt.level')",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    while (rc == CKPT_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        const char *v = (const char *)sqlite3_column_text(st, 1);
        if (strcmp(k, "ckpt.codec") == 0) {
            int c = ckpt_codec_parse(v);
            if (c < 0)
                rc = ckpt__err_prefix(c, "run config key ckpt.codec");
            else
                w->codec = c;
        } else {
            int64_t lvl = 0, lo, hi;
            ckpt_param_bounds(CKPT_PARAM_LEVEL, &lo, &hi);
            if (!v || ckpt__config_int_value(v, &lvl) || lvl < lo || lvl > hi)
                rc = ckpt__err(CKPT_EINVAL, "run config key ckpt.level: '%s' is not a zstd level "
                                            "%lld..%lld", v ? v : "null", (long long)lo,
                               (long long)hi);
            else
                w->level = (int)lvl;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int ckpt_writer_begin(ckpt_writer **out, ckpt_store *s, const char *run, int64_t epoch,
                      int64_t step)
{
    *out = NULL;
    int rc;
    if ((rc = ckpt__writable(s, "saving a checkpoint")))
        return rc;
    if (epoch < 0 || step < 0)
        return ckpt__err(CKPT_EINVAL, "run '%s': epoch %lld and step %lld must be >= 0",
                         run ? run : "(null)", (long long)epoch, (long long)step);
    if (s->writer_active)
        return ckpt__err(CKPT_EINVAL, "a checkpoint writer is already open on this store handle");
    /* The ROLLBACK of a failed save can itself run out of memory and leave
     * its chunk transaction open: those chunks must not serve as dedup
     * hits for this save, which would commit a manifest pointing at chunks
     * that are never committed (found by tests/fault). */
    ckpt__rollback(s->cdb);
    if (!sqlite3_get_autocommit(s->cdb))
        return ckpt__sqlerr(s->cdb, sqlite3_extended_errcode(s->cdb),
                            "saving a checkpoint: ending a failed save");
    int64_t run_id;
    if ((rc = ckpt__run_id(s, run, &run_id, NULL)))
        return rc;
    ckpt_writer *w = ckpt__calloc(1, sizeof *w);
    if (!w)
        return ckpt__err(CKPT_ENOMEM, "out of memory");
    w->s = s;
    w->lock_fd = -1;
    w->wb_fd = s->durability == CKPT_DURABLE_OFF ? -1 : ckpt__chunk_fd(s);
    w->run_id = run_id;
    w->epoch = epoch;
    w->step = step;
    w->chunk_size = (size_t)s->chunk_size;
    w->run = ckpt__strdup(run);
    if (!w->run || (rc = ckpt__chunk_io_init(&w->io)) != CKPT_OK) {
        ckpt__free(w->run);
        ckpt__free(w);
        return ckpt__err(CKPT_ENOMEM, "out of memory");
    }
    w->codec = (int)s->codec;
    w->level = (int)s->level;
    if ((rc = run_codec(s, run_id, w)) != CKPT_OK || (rc = ckpt__lock(s, 0, 1, &w->lock_fd))) {
        writer_free(w);
        return rc;
    }
    ckpt_checkpoint_info head;
    rc = ckpt_head(s, run, &head);
    if (rc == CKPT_OK)
        w->parent_id = head.id;
    else if (rc != CKPT_ENOCHECKPOINT) {
        writer_free(w);
        return rc;
    }
    s->writer_active = 1;
    *out = w;
    return CKPT_OK;
}

static int check_put(ckpt_writer *w, const char *name, int kind, int dtype, int ndim,
                     const int64_t *shape, const void *data, size_t nbytes)
{
    int rc = ckpt__check_name(name, "tensor");
    if (rc)
        return ckpt__err_prefix(rc, "run '%s' epoch %lld", w->run, (long long)w->epoch);
    if (!ckpt_kind_name(kind))
        return ckpt__err(CKPT_EINVAL, "tensor '%s': unknown kind %d", name, kind);
    if (!ckpt_dtype_name(dtype))
        return ckpt__err(CKPT_EINVAL, "tensor '%s': unknown dtype %d", name, dtype);
    if (ndim < 0 || ndim > CKPT_MAX_DIMS)
        return ckpt__err(CKPT_EINVAL, "tensor '%s': %d dimensions (0 to %d allowed)", name, ndim,
                         CKPT_MAX_DIMS);
    if (ndim > 0 && !shape)
        return ckpt__err(CKPT_EINVAL, "tensor '%s': shape is NULL", name);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ckpt__err(CKPT_EINVAL, "tensor '%s': dimension %d is negative (%lld)", name, i,
                             (long long)shape[i]);
        if (ckpt__mul_size(count, (size_t)shape[i], &count))
            return ckpt__err(CKPT_EINVAL, "tensor '%s': shape overflows", name);
    }
    size_t want;
    if (ckpt__mul_size(count, ckpt_dtype_size(dtype), &want))
        return ckpt__err(CKPT_EINVAL, "tensor '%s': shape overflows", name);
    if (want != nbytes)
        return ckpt__err(CKPT_EINVAL, "tensor '%s': %zu bytes given, shape and dtype %s need %zu",
                         name, nbytes, ckpt_dtype_name(dtype), want);
    if (nbytes && !data)
        return ckpt__err(CKPT_EINVAL, "tensor '%s': data is NULL", name);
    for (size_t i = 0; i < w->nt; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return ckpt__err(CKPT_EEXISTS, "tensor '%s' was already put in this checkpoint", name);
    return CKPT_OK;
}

/* Chunk ids of the same tensor in the parent checkpoint, for delta bases. */
static int parent_chunks(ckpt_writer *w, const char *name, int dtype, int64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!w->parent_id || w->codec == CKPT_CODEC_RAW || w->codec == CKPT_CODEC_PLANES)
        return CKPT_OK;
    sqlite3_stmt *st;
    int rc = ckpt__prepare(w->s->db,
                           "SELECT dtype, chunk_size, chunks FROM tensors"
                           " WHERE checkpoint_id = ? AND name = ?",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, w->parent_id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *dt = (const char *)sqlite3_column_text(st, 0);
        size_t cs = (size_t)sqlite3_column_int64(st, 1);
        size_t bytes = (size_t)sqlite3_column_bytes(st, 2);
        if (dt && strcmp(dt, ckpt_dtype_name(dtype)) == 0 && cs == w->chunk_size && bytes % 8 == 0 &&
            bytes > 0) {
            *out = ckpt__malloc(bytes);
            if (!*out) {
                sqlite3_finalize(st);
                return ckpt__err(CKPT_ENOMEM, "out of memory");
            }
            const uint8_t *b = sqlite3_column_blob(st, 2);
            for (size_t i = 0; i < bytes / 8; i++)
                (*out)[i] = (int64_t)ckpt__le64(b + 8 * i);
            *n = bytes / 8;
        }
    }
    sqlite3_finalize(st);
    return CKPT_OK;
}

/* Runs on a worker (or inline): hash, then encode. */
static void chunk_job(ckpt__job *job, void *ctx)
{
    wslot *j = (wslot *)job;
    ckpt__codec_ctx *codec = ((ckpt__wctx *)ctx)->codec;
    j->nleaves = j->len ? (j->len + CKPT__LEAF_SIZE - 1) / CKPT__LEAF_SIZE : 1;
    ckpt__hash_chunk(j->src, j->len, j->leaves, j->hash);
    j->codec = CKPT__CODEC_RAW;
    j->enc_len = j->len;
    j->rc = CKPT_OK;
    if (j->mode == CKPT_CODEC_RAW || j->len == 0)
        return;
    j->rc = ckpt__codec_encode(codec, j->mode, j->level, j->elem, j->src, j->len,
                               j->base_len ? j->base : NULL, j->base_len, j->enc, j->enc_cap,
                               &j->codec, &j->enc_len);
    if (j->rc)
        snprintf(j->msg, sizeof j->msg, "%s", ckpt_errmsg());
}

/* Fills a slot for one chunk; loads the delta base on this thread. A
 * base must be a full chunk so that a read decodes at most two. */
static int prepare_slot(ckpt_writer *w, wslot *j, const uint8_t *p, size_t len, size_t elem,
                        int64_t base_chunk)
{
    ckpt_store *s = w->s;
    int rc;
    j->src = p;
    j->len = len;
    j->elem = elem;
    j->mode = w->codec;
    j->level = w->level;
    j->base_len = 0;
    j->base_id = 0;
    j->msg[0] = 0;
    if (j->mode != CKPT_CODEC_RAW && (rc = ckpt__grow(&j->enc, &j->enc_cap, ckpt__codec_bound(len))))
        return rc;
    if (base_chunk > 0 && j->mode != CKPT_CODEC_RAW) {
        ckpt__chunk_meta bm;
        rc = ckpt__chunk_meta_get(s, base_chunk, &bm);
        if (rc == CKPT_OK && bm.codec == CKPT__CODEC_DELTA)
            rc = ckpt__chunk_meta_get(s, bm.base_id, &bm);
        if (rc == CKPT_OK && (rc = ckpt__grow(&j->base, &j->base_cap, bm.raw_len)) == CKPT_OK &&
            (rc = ckpt__chunk_read(s, &w->io, &bm, j->base)) == CKPT_OK) {
            j->base_len = bm.raw_len;
            j->base_id = bm.id;
        }
        /* A damaged or missing base only means no delta. Any other error
         * is the save's: on NOMEM/IOERR/FULL SQLite may have rolled back
         * the open chunk transaction, and going on would end in "cannot
         * commit - no transaction is active" (found by tests/fault). */
        if (rc != CKPT_OK && rc != CKPT_ECORRUPT)
            return rc;
    }
    return CKPT_OK;
}

static int chunk_txn(ckpt_writer *w)
{
    if (w->txn_open)
        return CKPT_OK;
    int rc = ckpt__begin(w->s->cdb, "saving chunks");
    if (rc == CKPT_OK)
        w->txn_open = 1;
    return rc;
}

/* The stored copy of this chunk is damaged, and we hold its true bytes
 * (they hash the same): rewrite it in place. Every checkpoint sharing it
 * is healed; it stays a full chunk since deltas may use it as a base. */
static int repair_chunk(ckpt_writer *w, wslot *j, const ckpt__chunk_meta *m, int64_t *out_id)
{
    ckpt_store *s = w->s;
    int delta = j->codec == CKPT__CODEC_DELTA;
    const void *payload = (j->codec == CKPT__CODEC_RAW || delta) ? (const void *)j->src : j->enc;
    size_t len = (j->codec == CKPT__CODEC_RAW || delta) ? j->len : j->enc_len;
    sqlite3_stmt *st;
    int rc = chunk_txn(w);
    if (rc == CKPT_OK)
        rc = ckpt__prepare(s->cdb,
                           "UPDATE chunks SET codec = ?, base_id = NULL, raw_len = ?, data = ?"
                           " WHERE id = ?",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int(st, 1, delta ? CKPT__CODEC_RAW : j->codec);
    sqlite3_bind_int64(st, 2, (int64_t)j->len);
    sqlite3_bind_blob64(st, 3, payload, len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, m->id);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return ckpt__sqlerr(s->cdb, r, "repairing a damaged chunk");
    w->stored += len;
    w->txn_bytes += len;
    *out_id = m->id;
    return CKPT_OK;
}

/* After the job: dedup (confirmed byte for byte), else insert. */
static int finish_slot(ckpt_writer *w, const char *name, wslot *j, int64_t *out_id)
{
    ckpt_store *s = w->s;
    if (j->rc)
        return ckpt__err(j->rc, "tensor '%s': %s", name, j->msg);
    ckpt__chunk_meta m;
    int rc = ckpt__chunk_find(s, j->hash, &m);
    if (rc == 0 && !w->txn_open) {
        /* Another process may store the same chunk between our lookup and
         * our write lock: look again once the lock is ours, or the insert
         * would break the hash's uniqueness (found by tests/stress, two
         * writers saving the same new chunk). */
        if ((rc = chunk_txn(w)))
            return rc;
        rc = ckpt__chunk_find(s, j->hash, &m);
    }
    if (rc < 0)
        return rc;
    if (rc == 1) {
        /* XXH3 is not collision resistant: confirm a hit byte for byte. The
         * stored chunk is read at its own length: one that reads back intact
         * but differs (in bytes or length) is a collision; one that fails
         * its hash (a damaged row, e.g. a wrong raw_len, found by tests/fuzz)
         * is repaired with our bytes below. */
        if ((rc = ckpt__grow(&w->cmp, &w->cmp_cap, m.raw_len)))
            return rc;
        rc = ckpt__chunk_read(s, &w->io, &m, w->cmp);
        /* len 0: cmp may still be NULL, and memcmp(NULL, ..., 0) is
         * undefined (found by tests/fuzz, UBSan) */
        if (rc == CKPT_OK && m.raw_len == j->len &&
            (j->len == 0 || memcmp(w->cmp, j->src, j->len) == 0)) {
            *out_id = m.id;
            return CKPT_OK;
        }
        if (rc == CKPT_ECORRUPT)
            return repair_chunk(w, j, &m, out_id);
        if (rc)
            return rc;
        return ckpt__err(CKPT_ERROR, "tensor '%s': XXH3-128 collision with chunk %lld", name,
                         (long long)m.id);
    }
    const void *payload = j->codec == CKPT__CODEC_RAW ? (const void *)j->src : j->enc;
    size_t enc_len = j->codec == CKPT__CODEC_RAW ? j->len : j->enc_len;
    if ((rc = chunk_txn(w)))
        return rc;
    rc = ckpt__chunk_insert(s, j->hash, j->codec, j->codec == CKPT__CODEC_DELTA ? j->base_id : 0,
                            j->len, payload, enc_len, out_id);
    if (rc)
        return ckpt__err_prefix(rc, "run '%s' epoch %lld tensor '%s'", w->run, (long long)w->epoch,
                                name);
    w->stored += enc_len;
    w->txn_bytes += enc_len;
    w->wb_bytes += enc_len;
    if (w->wb_fd >= 0 && w->wb_bytes >= WRITEBACK_BYTES) {
        /* Only starts writeback of what SQLite has written so far; the
         * commit's fsync still decides durability, so an error here
         * changes nothing and is left for the fsync to report. */
        w->wb_bytes = 0;
#ifdef SYNC_FILE_RANGE_WRITE /* Linux */
        (void)sync_file_range(w->wb_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
    }
    if (w->txn_bytes >= CHUNK_TXN_BYTES) {
        w->txn_open = 0;
        w->txn_bytes = 0;
        if ((rc = ckpt__commit(s->cdb, "saving chunks")))
            return rc;
    }
    return CKPT_OK;
}

/* Chunks smaller than this are hashed and encoded on the calling thread:
 * handing them to a worker costs more than the work. */
#define INLINE_BYTES ((size_t)256 << 10)

static int ensure_slots(ckpt_writer *w)
{
    if (w->slots)
        return CKPT_OK;
    int rc = ckpt__store_pool(w->s);
    if (rc)
        return rc;
    /* Two chunks per worker in flight plus one being stored: bounded memory. */
    size_t n = 2 * (size_t)ckpt__pool_threads(w->s->pool) + 1;
    w->slots = ckpt__calloc(n, sizeof *w->slots);
    if (!w->slots)
        return ckpt__err(CKPT_ENOMEM, "out of memory");
    w->nslots = n;
    return CKPT_OK;
}

/* Stores every chunk of one tensor through the pool; ids into t->chunks. */
static int put_chunks(ckpt_writer *w, wtensor *t, const uint8_t *data, const int64_t *base,
                      size_t nbase, ckpt__tensor_hash *th)
{
    size_t elem = ckpt_dtype_size(t->dtype), n = t->nchunks, cs = w->chunk_size;
    int rc = ensure_slots(w);
    if (rc)
        return rc;
    const uint8_t *empty = (const uint8_t *)"";
    if (n == 1 && t->nbytes < INLINE_BYTES) {
        wslot *j = &w->slots[0];
        if ((rc = prepare_slot(w, j, t->nbytes ? data : empty, t->nbytes, elem, nbase ? base[0] : 0)))
            return rc;
        ckpt__wctx here = {w->io.codec, NULL}; /* this thread's codec context */
        chunk_job(&j->job, &here);
        ckpt__tensor_hash_update(th, j->leaves, j->nleaves);
        return finish_slot(w, t->name, j, &t->chunks[0]);
    }
    size_t submitted = 0, done = 0;
    while (done < n) {
        while (rc == CKPT_OK && submitted < n && submitted - done < w->nslots) {
            wslot *j = &w->slots[submitted % w->nslots];
            size_t off = submitted * cs;
            size_t len = t->nbytes - off < cs ? (size_t)(t->nbytes - off) : cs;
            rc = prepare_slot(w, j, data + off, len, elem, submitted < nbase ? base[submitted] : 0);
            if (rc)
                break;
            j->job.fn = chunk_job;
            ckpt__pool_submit(w->s->pool, &j->job);
            submitted++;
        }
        if (done == submitted)
            break;
        wslot *j = &w->slots[done % w->nslots];
        ckpt__pool_wait(w->s->pool, &j->job);
        if (rc == CKPT_OK) {
            ckpt__tensor_hash_update(th, j->leaves, j->nleaves);
            rc = finish_slot(w, t->name, j, &t->chunks[done]);
        }
        done++; /* after an error: keep draining, jobs point into our buffers */
    }
    return rc;
}

int ckpt_writer_put(ckpt_writer *w, const char *name, int kind, int dtype, int ndim,
                    const int64_t *shape, const void *data, size_t nbytes)
{
    if (!w)
        return ckpt__err(CKPT_EINVAL, "writer is NULL");
    if (w->failed)
        return ckpt__err(CKPT_EINVAL, "run '%s' epoch %lld: an earlier put failed; abort the "
                                      "checkpoint", w->run, (long long)w->epoch);
    int rc = check_put(w, name, kind, dtype, ndim, shape, data, nbytes);
    if (rc)
        return rc; /* bad arguments do not poison the writer */
    if (w->nt == w->capt) {
        size_t nc = w->capt ? 2 * w->capt : 16;
        wtensor *t = ckpt__realloc(w->t, nc * sizeof *t);
        if (!t)
            return ckpt__err(CKPT_ENOMEM, "out of memory");
        w->t = t;
        w->capt = nc;
    }
    wtensor *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    size_t nchunks = nbytes ? (nbytes + w->chunk_size - 1) / w->chunk_size : 1;
    t->name = ckpt__strdup(name);
    t->chunks = ckpt__calloc(nchunks, sizeof *t->chunks);
    int64_t *base = NULL;
    size_t nbase = 0;
    ckpt__tensor_hash th = {0};
    if (!t->name || !t->chunks) {
        rc = ckpt__err(CKPT_ENOMEM, "out of memory");
        goto fail;
    }
    t->kind = kind;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = nbytes;
    t->nchunks = nchunks;
    if ((rc = parent_chunks(w, name, dtype, &base, &nbase)) || (rc = ckpt__tensor_hash_init(&th)))
        goto fail;

    if ((rc = put_chunks(w, t, data, base, nbase, &th)))
        goto fail;
    ckpt__tensor_hash_final(&th, nbytes, t->hash);
    ckpt__tensor_hash_free(&th);
    ckpt__free(base);
    w->logical += nbytes;
    w->nt++;
    return CKPT_OK;
fail:
    ckpt__tensor_hash_free(&th);
    ckpt__free(base);
    ckpt__free(t->name);
    ckpt__free(t->chunks);
    w->failed = 1;
    return ckpt__poison(w->s, rc);
}

int ckpt__metrics_write(ckpt_store *s, size_t *first_new);
void ckpt__metrics_forget_ids(ckpt_store *s, size_t first_new);
void ckpt__metrics_clear(ckpt_store *s);

static void shape_json(const wtensor *t, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static int write_manifest(ckpt_writer *w, int64_t *out_id)
{
    ckpt_store *s = w->s;
    sqlite3_stmt *st = NULL;
    int rc;
    int64_t head = 0, branch = 0;
    if ((rc = ckpt__prepare(s->db, "SELECT coalesce(head_id, 0), branch_id FROM runs WHERE id = ?",
                            &st)))
        return rc;
    sqlite3_bind_int64(st, 1, w->run_id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        head = sqlite3_column_int64(st, 0);
        branch = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (r != SQLITE_ROW)
        return r == SQLITE_DONE ? ckpt__err(CKPT_ENOTFOUND, "run '%s' was deleted", w->run)
                                : ckpt__sqlerr(s->db, r, "saving a checkpoint");

    if ((rc = ckpt__prepare(s->db,
                            "INSERT INTO checkpoints(run_id, branch_id, epoch, step, created_at,"
                            " parent_id, ntensors, logical_bytes, stored_bytes)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            &st)))
        return rc;
    sqlite3_bind_int64(st, 1, w->run_id);
    sqlite3_bind_int64(st, 2, branch);
    sqlite3_bind_int64(st, 3, w->epoch);
    sqlite3_bind_int64(st, 4, w->step);
    sqlite3_bind_int64(st, 5, ckpt__now_us());
    if (head)
        sqlite3_bind_int64(st, 6, head);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, (int64_t)w->nt);
    sqlite3_bind_int64(st, 8, (int64_t)w->logical);
    sqlite3_bind_int64(st, 9, (int64_t)w->stored);
    r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return ckpt__sqlerr(s->db, r, "saving a checkpoint");
    int64_t id = sqlite3_last_insert_rowid(s->db);

    if ((rc = ckpt__prepare(s->db,
                            "INSERT INTO tensors(checkpoint_id, idx, name, kind, dtype, shape,"
                            " nbytes, hash, chunk_size, chunks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            &st)))
        return rc;
    uint8_t *ids = NULL;
    size_t ids_cap = 0;
    for (size_t i = 0; i < w->nt && rc == CKPT_OK; i++) {
        const wtensor *t = &w->t[i];
        char shape[CKPT_MAX_DIMS * 24 + 4];
        shape_json(t, shape, sizeof shape);
        if ((rc = ckpt__grow(&ids, &ids_cap, 8 * t->nchunks)))
            break;
        for (size_t c = 0; c < t->nchunks; c++)
            for (int k = 0; k < 8; k++)
                ids[8 * c + (size_t)k] = (uint8_t)((uint64_t)t->chunks[c] >> (8 * k));
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, (int64_t)i);
        sqlite3_bind_text(st, 3, t->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, ckpt_kind_name(t->kind), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, ckpt_dtype_name(t->dtype), -1, SQLITE_STATIC);
        /* A TRANSIENT bind copies, so it can fail for memory; unchecked,
         * the shape would be NULL and the save end in a misleading
         * constraint error (found by tests/fault). */
        if ((r = sqlite3_bind_text(st, 6, shape, -1, SQLITE_TRANSIENT)) != SQLITE_OK) {
            rc = ckpt__sqlerr(s->db, r, "saving a checkpoint's manifest");
            break;
        }
        sqlite3_bind_int64(st, 7, (int64_t)t->nbytes);
        sqlite3_bind_blob(st, 8, t->hash, 16, SQLITE_STATIC);
        sqlite3_bind_int64(st, 9, (int64_t)w->chunk_size);
        sqlite3_bind_blob64(st, 10, ids, 8 * t->nchunks, SQLITE_STATIC);
        r = sqlite3_step(st);
        if (r != SQLITE_DONE)
            rc = ckpt__sqlerr(s->db, r, "saving a checkpoint's manifest");
    }
    sqlite3_finalize(st);
    ckpt__free(ids);
    if (rc)
        return rc;
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE runs SET head_id = %lld WHERE id = %lld", (long long)id,
             (long long)w->run_id);
    if ((rc = ckpt__exec(s->db, sql, "saving a checkpoint")))
        return rc;
    *out_id = id;
    return CKPT_OK;
}

int ckpt_writer_commit(ckpt_writer *w, int64_t *out_id)
{
    if (!w)
        return ckpt__err(CKPT_EINVAL, "writer is NULL");
    ckpt_store *s = w->s;
    int rc;
    if (w->failed) {
        rc = ckpt__err(CKPT_EINVAL, "run '%s' epoch %lld: an earlier put failed; nothing committed",
                       w->run, (long long)w->epoch);
        writer_free(w);
        return rc;
    }
    /* 1. chunks durable; 2. manifest, head and metrics in one transaction. */
    if (w->txn_open) {
        w->txn_open = 0;
        if ((rc = ckpt__commit(s->cdb, "saving chunks")))
            goto out;
    }
    if ((rc = ckpt__begin(s->db, "saving a checkpoint")))
        goto out;
    int64_t id = 0;
    size_t first_new = s->nseries;
    if ((rc = write_manifest(w, &id)) || (rc = ckpt__metrics_write(s, &first_new))) {
        ckpt__rollback(s->db);
        ckpt__metrics_forget_ids(s, first_new);
        goto out;
    }
    if ((rc = ckpt__commit(s->db, "saving a checkpoint"))) {
        ckpt__metrics_forget_ids(s, first_new);
        goto out;
    }
    ckpt__metrics_clear(s); /* the metrics are in */
    if (out_id)
        *out_id = id;
out:
    if (rc) {
        ckpt__err_prefix(rc, "run '%s' epoch %lld step %lld", w->run, (long long)w->epoch,
                         (long long)w->step);
        ckpt__poison(s, rc);
    }
    writer_free(w);
    return rc;
}

void ckpt_writer_abort(ckpt_writer *w)
{
    if (w)
        writer_free(w);
}
