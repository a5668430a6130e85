/*
 * reader.c - reading a checkpoint. The manifest (tensor names, shapes,
 * chunk ids) is loaded once at open; bytes are read on demand chunk by
 * chunk, straight into the caller's buffer when a whole raw chunk fits, and
 * every chunk is checked against its hash before a byte of it is returned.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunks.h"
#include "error.h"
#include "pool.h"
#include "store.h"

typedef struct rtensor {
    ckpt_tensor_info info;
    size_t chunk_size;
    int64_t *chunks;
    size_t nchunks;
} rtensor;

/* One whole chunk in flight: fetched through the worker's own connection
 * to the chunk file, decoded and checked on that worker straight into the
 * caller's buffer. */
typedef struct rslot {
    ckpt__job job;
    ckpt_store *s;
    int64_t chunk_id;
    size_t len; /* bytes the manifest expects */
    ckpt__chunk_meta m, bm; /* the chunk, and its delta base (bm.id 0: none) */
    uint8_t *payload;       /* encoded bytes (raw chunks go straight to dst) */
    size_t payload_cap;
    uint8_t *bpayload; /* the base's stored bytes */
    size_t bpayload_cap;
    uint8_t *base; /* the base decoded */
    size_t base_cap;
    uint8_t *dst;
    int rc;
    char msg[512];
} rslot;

struct ckpt_reader {
    ckpt_store *s;
    char *run;
    ckpt_checkpoint_info ci;
    rtensor *t;
    size_t nt;
    ckpt__chunk_io io;
    uint8_t *scratch; /* one decoded chunk, for partial reads */
    size_t scratch_cap;
    int64_t scratch_id; /* chunk held in scratch, 0 if none */
    rslot *slots;
    size_t nslots;
    int lock_fd; /* shared flock on PATH-lock: no gc while we read */
};

void ckpt_reader_close(ckpt_reader *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nt; i++) {
        ckpt__free((char *)r->t[i].info.name);
        ckpt__free(r->t[i].chunks);
    }
    ckpt__free(r->t);
    ckpt__free(r->run);
    ckpt__free(r->scratch);
    for (size_t i = 0; i < r->nslots; i++) {
        ckpt__free(r->slots[i].payload);
        ckpt__free(r->slots[i].bpayload);
        ckpt__free(r->slots[i].base);
    }
    ckpt__free(r->slots);
    ckpt__chunk_io_free(&r->io);
    ckpt__unlock(r->lock_fd);
    ckpt__free(r);
}

/* Parses "[1, 2, 3]" written by the writer; stored data is still checked. */
static int parse_shape(const char *txt, ckpt_tensor_info *t)
{
    const char *p = txt;
    t->ndim = 0;
    if (!p || *p++ != '[')
        return -1;
    while (*p == ' ')
        p++;
    if (*p == ']')
        return p[1] ? -1 : 0;
    for (;;) {
        if (t->ndim == CKPT_MAX_DIMS || *p < '0' || *p > '9')
            return -1;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno || v < 0)
            return -1;
        t->shape[t->ndim++] = v;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == ']')
            return p[1] ? -1 : 0;
        if (*p++ != ',')
            return -1;
        while (*p == ' ')
            p++;
    }
}

/* nbytes == product of the shape times the dtype size, as the writer made
 * it: nbytes sizes every read, so a row that disagrees (or a negative
 * nbytes, huge as uint64) is damaged. Found by tests/fuzz. */
static int nbytes_match_shape(const ckpt_tensor_info *t)
{
    uint64_t n = ckpt_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        if (__builtin_mul_overflow(n, (uint64_t)t->shape[d], &n))
            return 0;
    return n == t->nbytes;
}

static int load_manifest(ckpt_reader *r)
{
    ckpt_store *s = r->s;
    sqlite3_stmt *st;
    int rc = ckpt__prepare(s->db,
                           "SELECT name, kind, dtype, shape, nbytes, hash, chunk_size, chunks"
                           " FROM tensors WHERE checkpoint_id = ? ORDER BY idx",
                           &st);
    if (rc)
        return rc;
    /* ntensors comes from the file: a damaged or hostile row must not make
     * us allocate for it up front, so the array grows with the rows found
     * (up to ntensors; more rows than that is corruption). Found by
     * tests/fuzz: a huge ntensors asked for petabytes. */
    size_t want_n = r->ci.ntensors > 0 ? (size_t)r->ci.ntensors : 0;
    size_t cap = want_n < 64 ? (want_n ? want_n : 1) : 64;
    r->t = ckpt__calloc(cap, sizeof *r->t);
    if (!r->t) {
        sqlite3_finalize(st);
        return ckpt__err(CKPT_ENOMEM, "out of memory");
    }
    sqlite3_bind_int64(st, 1, r->ci.id);
    int x;
    while ((x = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (r->nt == cap && cap < want_n) {
            size_t nc = cap > want_n / 2 ? want_n : 2 * cap;
            rtensor *p = ckpt__realloc(r->t, nc * sizeof *p);
            if (!p) {
                rc = ckpt__err(CKPT_ENOMEM, "out of memory");
                break;
            }
            memset(p + cap, 0, (nc - cap) * sizeof *p);
            r->t = p;
            cap = nc;
        }
        if (r->nt == cap || !name) {
            rc = ckpt__err(CKPT_ECORRUPT, "run '%s' epoch %lld: manifest does not match its "
                                          "checkpoint row", r->run, (long long)r->ci.epoch);
            break;
        }
        rtensor *t = &r->t[r->nt];
        t->info.name = ckpt__strdup(name);
        if (!t->info.name) {
            rc = ckpt__err(CKPT_ENOMEM, "out of memory");
            break;
        }
        r->nt++;
        t->info.kind = ckpt_kind_parse((const char *)sqlite3_column_text(st, 1));
        t->info.dtype = ckpt_dtype_parse((const char *)sqlite3_column_text(st, 2));
        t->info.nbytes = (uint64_t)sqlite3_column_int64(st, 4);
        t->chunk_size = (size_t)sqlite3_column_int64(st, 6);
        size_t nb = (size_t)sqlite3_column_bytes(st, 7);
        size_t want = t->info.nbytes && t->chunk_size
                          ? (size_t)((t->info.nbytes + t->chunk_size - 1) / t->chunk_size)
                          : 1;
        if (t->info.kind < 0 || t->info.dtype < 0 ||
            parse_shape((const char *)sqlite3_column_text(st, 3), &t->info) ||
            sqlite3_column_bytes(st, 5) != 16 || t->chunk_size == 0 ||
            /* sizes the scratch chunk: never above what a writer uses
             * (found by tests/fuzz, a chunk_size of 2^40) */
            t->chunk_size > CKPT__CODEC_MAX_N || nb != 8 * want || !nbytes_match_shape(&t->info)) {
            rc = ckpt__err(CKPT_ECORRUPT, "run '%s' epoch %lld tensor '%s': damaged manifest row",
                           r->run, (long long)r->ci.epoch, name);
            break;
        }
        memcpy(t->info.hash, sqlite3_column_blob(st, 5), 16);
        t->chunks = ckpt__malloc(nb);
        if (!t->chunks) {
            rc = ckpt__err(CKPT_ENOMEM, "out of memory");
            break;
        }
        const uint8_t *b = sqlite3_column_blob(st, 7);
        for (size_t c = 0; c < want; c++)
            t->chunks[c] = (int64_t)ckpt__le64(b + 8 * c);
        t->nchunks = want;
        /* Chunk ids start at 1, and 0 means "no chunk" to the scratch
         * cache: a partial read of chunk id 0 copied from a NULL scratch
         * buffer (found with tests/fuzz/fuzz_store_sql). */
        for (size_t c = 0; c < want && rc == CKPT_OK; c++)
            if (t->chunks[c] <= 0)
                rc = ckpt__err(CKPT_ECORRUPT,
                               "run '%s' epoch %lld tensor '%s': chunk id %lld in its manifest",
                               r->run, (long long)r->ci.epoch, name, (long long)t->chunks[c]);
        if (rc)
            break;
    }
    if (rc == CKPT_OK && x != SQLITE_DONE)
        rc = ckpt__sqlerr(s->db, x, "reading a manifest");
    sqlite3_finalize(st);
    if (rc == CKPT_OK && (int64_t)r->nt != r->ci.ntensors)
        rc = ckpt__err(CKPT_ECORRUPT, "run '%s' epoch %lld: %zu tensors stored, %lld expected",
                       r->run, (long long)r->ci.epoch, r->nt, (long long)r->ci.ntensors);
    return rc;
}

int ckpt_reader_open_id(ckpt_reader **out, ckpt_store *s, int64_t checkpoint_id)
{
    *out = NULL;
    ckpt_reader *r = ckpt__calloc(1, sizeof *r);
    if (!r)
        return ckpt__err(CKPT_ENOMEM, "out of memory");
    r->s = s;
    r->lock_fd = -1;
    int rc = ckpt__chunk_io_init(&r->io);
    if (rc == CKPT_OK)
        rc = ckpt__lock(s, 0, 1, &r->lock_fd);
    int64_t run_id = 0;
    /* One read transaction: the checkpoint row and its manifest agree. */
    if (rc == CKPT_OK)
        rc = ckpt__exec(s->db, "BEGIN", "reading a checkpoint");
    if (rc == CKPT_OK) {
        rc = ckpt__checkpoint_get(s, checkpoint_id, &r->ci, &run_id);
        if (rc == CKPT_OK) {
            sqlite3_stmt *st;
            if ((rc = ckpt__prepare(s->db, "SELECT name FROM runs WHERE id = ?", &st)) == CKPT_OK) {
                sqlite3_bind_int64(st, 1, run_id);
                if (sqlite3_step(st) == SQLITE_ROW)
                    r->run = ckpt__strdup((const char *)sqlite3_column_text(st, 0));
                sqlite3_finalize(st);
                if (!r->run)
                    rc = ckpt__err(CKPT_ENOMEM, "out of memory");
            }
        }
        if (rc == CKPT_OK)
            rc = load_manifest(r);
        /* A COMMIT that fails (it needs memory to parse) must not leave
         * the read transaction open: the handle would see a frozen
         * snapshot and refuse the next BEGIN (found by tests/fault). */
        if (ckpt__exec(s->db, "COMMIT", "reading a checkpoint") != CKPT_OK)
            ckpt__rollback(s->db);
    }
    if (rc) {
        ckpt_reader_close(r);
        return rc;
    }
    *out = r;
    return CKPT_OK;
}

int ckpt_reader_open(ckpt_reader **out, ckpt_store *s, const char *run, int64_t epoch)
{
    *out = NULL;
    ckpt_checkpoint_info ci;
    int rc = ckpt_checkpoint_find(s, run, epoch, &ci);
    if (rc)
        return rc;
    return ckpt_reader_open_id(out, s, ci.id);
}

const ckpt_checkpoint_info *ckpt_reader_checkpoint(const ckpt_reader *r)
{
    return &r->ci;
}

const char *ckpt_reader_run(const ckpt_reader *r)
{
    return r->run;
}

size_t ckpt_reader_count(const ckpt_reader *r)
{
    return r->nt;
}

int ckpt_reader_tensor(const ckpt_reader *r, size_t i, ckpt_tensor_info *out)
{
    if (i >= r->nt)
        return ckpt__err(CKPT_ERANGE, "tensor index %zu out of range (%zu tensors)", i, r->nt);
    *out = r->t[i].info;
    return CKPT_OK;
}

int ckpt_reader_find(const ckpt_reader *r, const char *name, size_t *out_index)
{
    for (size_t i = 0; i < r->nt; i++)
        if (strcmp(r->t[i].info.name, name) == 0) {
            *out_index = i;
            return CKPT_OK;
        }
    return ckpt__err(CKPT_ENOTFOUND, "run '%s' epoch %lld has no tensor '%s'", r->run,
                     (long long)r->ci.epoch, name);
}

static int reader_chunk(ckpt_reader *r, const rtensor *t, size_t c, void *dst, size_t len)
{
    ckpt__chunk_meta m;
    int rc = ckpt__chunk_meta_get(r->s, t->chunks[c], &m);
    if (rc == CKPT_OK && m.raw_len != len)
        rc = ckpt__err(CKPT_ECORRUPT, "chunk %lld holds %zu bytes, the manifest expects %zu",
                       (long long)m.id, m.raw_len, len);
    if (rc == CKPT_OK)
        rc = ckpt__chunk_read(r->s, &r->io, &m, dst);
    if (rc)
        return ckpt__err_prefix(rc, "run '%s' epoch %lld step %lld tensor '%s'", r->run,
                                (long long)r->ci.epoch, (long long)r->ci.step, t->info.name);
    return CKPT_OK;
}

/* Chunk j->chunk_id (and its delta base) from the chunk file through the
 * worker's own connection, in one read transaction so that the metadata
 * and the bytes agree. */
static int fetch_slot(sqlite3 *db, const char *cpath, rslot *j)
{
    int rc = ckpt__exec(db, "BEGIN", "reading chunks");
    if (rc)
        return rc;
    rc = ckpt__chunk_meta_get_db(db, cpath, j->chunk_id, &j->m);
    if (rc == CKPT_OK && j->m.raw_len != j->len)
        rc = ckpt__err(CKPT_ECORRUPT, "chunk %lld holds %zu bytes, the manifest expects %zu",
                       (long long)j->m.id, j->m.raw_len, j->len);
    j->bm.id = 0;
    if (rc == CKPT_OK && j->m.codec == CKPT__CODEC_DELTA) {
        if (j->m.base_id <= 0 || j->m.base_id == j->m.id)
            rc = ckpt__err(CKPT_ECORRUPT, "chunk %lld is corrupt: delta without a valid base",
                           (long long)j->m.id);
        if (rc == CKPT_OK)
            rc = ckpt__chunk_meta_get_db(db, cpath, j->m.base_id, &j->bm);
        if (rc == CKPT_OK && j->bm.codec == CKPT__CODEC_DELTA)
            rc = ckpt__err(CKPT_ECORRUPT, "chunk %lld is corrupt: its base %lld is itself a delta",
                           (long long)j->m.id, (long long)j->bm.id);
        if (rc == CKPT_OK && !(rc = ckpt__grow(&j->bpayload, &j->bpayload_cap, j->bm.stored_len)) &&
            !(rc = ckpt__grow(&j->base, &j->base_cap, j->bm.raw_len)))
            rc = ckpt__chunk_fetch_db(db, &j->bm, j->bpayload);
        if (rc)
            j->bm.id = 0;
    }
    if (rc == CKPT_OK) {
        if (j->m.codec == CKPT__CODEC_RAW)
            rc = ckpt__chunk_fetch_db(db, &j->m, j->dst);
        else if (!(rc = ckpt__grow(&j->payload, &j->payload_cap, j->m.stored_len)))
            rc = ckpt__chunk_fetch_db(db, &j->m, j->payload);
    }
    /* Ends the read transaction. After an error, the error's message stays
     * (ckpt__exec would replace it). A COMMIT that fails must not leave the
     * transaction open; if even the ROLLBACK fails, ckpt__wctx_cdb replaces
     * the connection before the next job. */
    if (rc != CKPT_OK) {
        ckpt__rollback(db);
        return rc;
    }
    if ((rc = ckpt__exec(db, "COMMIT", "reading chunks")) != CKPT_OK)
        ckpt__rollback(db);
    return rc;
}

/* Runs on a worker: fetch, decode and check one chunk straight into the
 * caller's buffer. */
static void read_job(ckpt__job *job, void *ctx)
{
    rslot *j = (rslot *)job;
    ckpt__wctx *wc = ctx;
    sqlite3 *db;
    const uint8_t *base = NULL;
    size_t base_len = 0;
    j->rc = ckpt__wctx_cdb(j->s, wc, &db);
    if (j->rc == CKPT_OK)
        j->rc = fetch_slot(db, j->s->cpath, j);
    if (j->rc == CKPT_OK && j->bm.id) {
        j->rc = ckpt__chunk_decode(wc->codec, &j->bm, j->bpayload, NULL, 0, j->base);
        if (j->rc) {
            snprintf(j->msg, sizeof j->msg, "base of chunk %lld: %s", (long long)j->m.id,
                     ckpt_errmsg());
            return;
        }
        base = j->base;
        base_len = j->bm.raw_len;
    }
    if (j->rc == CKPT_OK)
        j->rc = ckpt__chunk_decode(wc->codec, &j->m,
                                   j->m.codec == CKPT__CODEC_RAW ? j->dst : j->payload, base,
                                   base_len, j->dst);
    if (j->rc)
        snprintf(j->msg, sizeof j->msg, "%s", ckpt_errmsg());
}

/* Reads whole chunks [c0, c1) of t into dst through the pool: every step of
 * a chunk on a worker, a bounded window of chunks in flight. */
static int read_whole_chunks(ckpt_reader *r, const rtensor *t, size_t c0, size_t c1, uint8_t *dst)
{
    int rc = ckpt__store_pool(r->s);
    if (rc)
        return rc;
    if (!r->slots) {
        size_t n = 2 * (size_t)ckpt__pool_threads(r->s->pool) + 1;
        if (!(r->slots = ckpt__calloc(n, sizeof *r->slots)))
            return ckpt__err(CKPT_ENOMEM, "out of memory");
        r->nslots = n;
    }
    size_t submitted = c0, done = c0;
    while (done < c1) {
        while (rc == CKPT_OK && submitted < c1 && submitted - done < r->nslots) {
            rslot *j = &r->slots[(submitted - c0) % r->nslots];
            uint64_t start = (uint64_t)submitted * t->chunk_size;
            size_t len = (size_t)(t->info.nbytes - start < t->chunk_size ? t->info.nbytes - start
                                                                        : t->chunk_size);
            j->s = r->s;
            j->chunk_id = t->chunks[submitted];
            j->len = len;
            j->dst = dst + (start - (uint64_t)c0 * t->chunk_size);
            j->msg[0] = 0;
            j->job.fn = read_job;
            ckpt__pool_submit(r->s->pool, &j->job);
            submitted++;
        }
        if (done == submitted)
            break;
        rslot *j = &r->slots[(done - c0) % r->nslots];
        ckpt__pool_wait(r->s->pool, &j->job);
        if (rc == CKPT_OK && j->rc)
            rc = ckpt__err(j->rc, "run '%s' epoch %lld step %lld tensor '%s': %s", r->run,
                           (long long)r->ci.epoch, (long long)r->ci.step, t->info.name, j->msg);
        done++; /* after an error: keep draining, jobs point into our buffers */
    }
    return rc;
}

int ckpt_reader_read(ckpt_reader *r, size_t i, uint64_t offset, void *buf, size_t len)
{
    if (i >= r->nt)
        return ckpt__err(CKPT_ERANGE, "tensor index %zu out of range (%zu tensors)", i, r->nt);
    const rtensor *t = &r->t[i];
    if (offset > t->info.nbytes || len > t->info.nbytes - offset)
        return ckpt__err(CKPT_ERANGE,
                         "tensor '%s': bytes %llu..%llu requested, it has %llu", t->info.name,
                         (unsigned long long)offset, (unsigned long long)(offset + len),
                         (unsigned long long)t->info.nbytes);
    uint8_t *dst = buf;
    while (len > 0) {
        size_t c = (size_t)(offset / t->chunk_size);
        uint64_t cstart = (uint64_t)c * t->chunk_size;
        size_t clen = (size_t)(t->info.nbytes - cstart < t->chunk_size ? t->info.nbytes - cstart
                                                                       : t->chunk_size);
        size_t in = (size_t)(offset - cstart);
        size_t take = clen - in < len ? clen - in : len;
        int rc;
        if (in == 0 && take == clen) {
            /* A run of whole chunks: decode straight into the caller's buffer. */
            size_t c1 = c + 1;
            uint64_t end = offset + len;
            while (c1 < t->nchunks) {
                uint64_t s1 = (uint64_t)c1 * t->chunk_size;
                uint64_t e1 = s1 + t->chunk_size < t->info.nbytes ? s1 + t->chunk_size : t->info.nbytes;
                if (e1 > end)
                    break;
                c1++;
            }
            /* The workers read through connections of their own, which a
             * write transaction of this handle's chunk connection (a save
             * in progress on the same handle) would lock out: then read
             * chunk by chunk here, through that connection (also with a
             * single-thread SQLite build). */
            if (c1 - c > 1 && sqlite3_get_autocommit(r->s->cdb) && sqlite3_threadsafe()) {
                uint64_t stop = (uint64_t)c1 * t->chunk_size;
                if (stop > t->info.nbytes)
                    stop = t->info.nbytes;
                if ((rc = read_whole_chunks(r, t, c, c1, dst)))
                    return rc;
                take = (size_t)(stop - offset);
            } else if ((rc = reader_chunk(r, t, c, dst, clen))) {
                return rc;
            }
        } else {
            if (r->scratch_id != t->chunks[c]) {
                if (r->scratch_cap < clen) {
                    uint8_t *p = ckpt__realloc(r->scratch, clen);
                    if (!p)
                        return ckpt__err(CKPT_ENOMEM, "out of memory");
                    r->scratch = p;
                    r->scratch_cap = clen;
                }
                r->scratch_id = 0;
                if ((rc = reader_chunk(r, t, c, r->scratch, clen)))
                    return rc;
                r->scratch_id = t->chunks[c];
            }
            memcpy(dst, r->scratch + in, take);
        }
        dst += take;
        offset += take;
        len -= take;
    }
    return CKPT_OK;
}

int ckpt__reader_chunk_ids(ckpt_reader *r, size_t i, const int64_t **ids, size_t *n,
                           size_t *chunk_size)
{
    *ids = r->t[i].chunks;
    *n = r->t[i].nchunks;
    *chunk_size = r->t[i].chunk_size;
    return CKPT_OK;
}
