/*
 * chunks.c - the chunk table: content-addressed, immutable rows of encoded
 * tensor bytes. Reads stream the blob with incremental I/O straight into
 * the destination when the chunk is stored raw, and verify every chunk's
 * hash before its bytes are handed out.
 */
#include "chunks.h"

#include <string.h>

#include "error.h"
#include "hash.h"

int ckpt__chunk_io_init(ckpt__chunk_io *io)
{
    memset(io, 0, sizeof *io);
    return ckpt__codec_ctx_new(&io->codec);
}

void ckpt__chunk_io_free(ckpt__chunk_io *io)
{
    ckpt__codec_ctx_free(io->codec);
    ckpt__free(io->payload);
    ckpt__free(io->base);
    memset(io, 0, sizeof *io);
}

static void row_meta(sqlite3_stmt *st, ckpt__chunk_meta *m)
{
    m->id = sqlite3_column_int64(st, 0);
    m->codec = sqlite3_column_int(st, 1);
    m->base_id = sqlite3_column_int64(st, 2);
    m->raw_len = (size_t)sqlite3_column_int64(st, 3);
    m->stored_len = (size_t)sqlite3_column_int64(st, 4);
    memset(m->hash, 0, 16);
    if (sqlite3_column_bytes(st, 5) == 16)
        memcpy(m->hash, sqlite3_column_blob(st, 5), 16);
}

/* raw_len comes from the file and sizes the buffers a read allocates (a
 * delta base's before anything else checks it): out of 0..CKPT__CODEC_MAX_N
 * the row is damaged. Found by tests/fuzz (a base with raw_len 2^64-1). */
static int row_check(sqlite3_stmt *st)
{
    int64_t raw = sqlite3_column_int64(st, 3);
    if (raw < 0 || (uint64_t)raw > CKPT__CODEC_MAX_N)
        return ckpt__err(CKPT_ECORRUPT, "chunk %lld is corrupt: raw length %lld is out of range",
                         (long long)sqlite3_column_int64(st, 0), (long long)raw);
    return CKPT_OK;
}

#define META_COLS "id, codec, coalesce(base_id, 0), raw_len, length(data), hash"

int ckpt__chunk_meta_get(ckpt_store *s, int64_t id, ckpt__chunk_meta *out)
{
    return ckpt__chunk_meta_get_db(s->cdb, s->cpath, id, out);
}

int ckpt__chunk_meta_get_db(sqlite3 *db, const char *cpath, int64_t id, ckpt__chunk_meta *out)
{
    sqlite3_stmt *st;
    int rc = ckpt__prepare(db, "SELECT " META_COLS " FROM chunks WHERE id = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        row_meta(st, out);
        rc = row_check(st);
    } else if (r == SQLITE_DONE) {
        rc = ckpt__err(CKPT_ECORRUPT, "chunk %lld is missing from %s", (long long)id, cpath);
    } else {
        rc = ckpt__sqlerr(db, r, "reading chunk metadata");
    }
    sqlite3_finalize(st);
    return rc;
}

int ckpt__chunk_find(ckpt_store *s, const uint8_t hash[16], ckpt__chunk_meta *out)
{
    sqlite3_stmt *st;
    int rc = ckpt__prepare(s->cdb, "SELECT " META_COLS " FROM chunks WHERE hash = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, hash, 16, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        row_meta(st, out);
        rc = 1;
    } else if (r == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = ckpt__sqlerr(s->cdb, r, "looking up a chunk");
    }
    sqlite3_finalize(st);
    return rc;
}

static int blob_read_db(sqlite3 *db, int64_t id, void *dst, size_t n);

int ckpt__chunk_fetch_db(sqlite3 *db, const ckpt__chunk_meta *m, void *dst)
{
    if (m->codec == CKPT__CODEC_RAW && m->stored_len != m->raw_len)
        return ckpt__err(CKPT_ECORRUPT, "chunk %lld is corrupt: raw chunk of %zu bytes stores %zu",
                         (long long)m->id, m->raw_len, m->stored_len);
    return blob_read_db(db, m->id, dst, m->stored_len);
}

static int blob_read(ckpt_store *s, int64_t id, void *dst, size_t n)
{
    return blob_read_db(s->cdb, id, dst, n);
}

static int blob_read_db(sqlite3 *db, int64_t id, void *dst, size_t n)
{
    sqlite3_blob *b = NULL;
    int r = sqlite3_blob_open(db, "main", "chunks", "data", id, 0, &b);
    if (r != SQLITE_OK) {
        int rc = ckpt__sqlerr(db, r, "opening chunk data");
        sqlite3_blob_close(b);
        return rc;
    }
    if ((size_t)sqlite3_blob_bytes(b) != n) {
        sqlite3_blob_close(b);
        return ckpt__err(CKPT_ECORRUPT, "chunk %lld: stored length differs from its metadata",
                         (long long)id);
    }
    /* sqlite3_blob_read takes an int length: read in pieces. */
    size_t off = 0;
    while (off < n) {
        size_t k = n - off > (1u << 30) ? (1u << 30) : n - off;
        r = sqlite3_blob_read(b, (char *)dst + off, (int)k, (int)off);
        if (r != SQLITE_OK) {
            int rc = ckpt__sqlerr(db, r, "reading chunk data");
            sqlite3_blob_close(b);
            return rc;
        }
        off += k;
    }
    sqlite3_blob_close(b);
    return CKPT_OK;
}

int ckpt__chunk_check(const ckpt__chunk_meta *m, const void *data)
{
    uint8_t leaves[16 * 64], h[16];
    if (m->raw_len > 64 * CKPT__LEAF_SIZE)
        return ckpt__err(CKPT_ECORRUPT, "chunk %lld: length %zu is out of bounds", (long long)m->id,
                         m->raw_len);
    ckpt__hash_chunk(data, m->raw_len, leaves, h);
    if (memcmp(h, m->hash, 16) != 0)
        return ckpt__err(CKPT_ECORRUPT, "chunk %lld is corrupt: content does not match its hash",
                         (long long)m->id);
    return CKPT_OK;
}

/* Reads and decodes a chunk that is not a delta into dst. */
static int read_plain(ckpt_store *s, ckpt__chunk_io *io, const ckpt__chunk_meta *m, void *dst,
                      const void *base, size_t base_len)
{
    int rc;
    if (m->codec == CKPT__CODEC_RAW) {
        if (m->stored_len != m->raw_len)
            return ckpt__err(CKPT_ECORRUPT, "chunk %lld: raw chunk of %zu bytes stores %zu",
                             (long long)m->id, m->raw_len, m->stored_len);
        return blob_read(s, m->id, dst, m->raw_len);
    }
    if ((rc = ckpt__grow(&io->payload, &io->payload_cap, m->stored_len)) ||
        (rc = blob_read(s, m->id, io->payload, m->stored_len)))
        return rc;
    rc = ckpt__codec_decode(io->codec, m->codec, io->payload, m->stored_len, base, base_len, dst,
                            m->raw_len);
    if (rc == CKPT_ECORRUPT)
        return ckpt__err_prefix(rc, "chunk %lld is corrupt", (long long)m->id);
    if (rc)
        return ckpt__err_prefix(rc, "chunk %lld", (long long)m->id);
    return CKPT_OK;
}

int ckpt__chunk_read(ckpt_store *s, ckpt__chunk_io *io, const ckpt__chunk_meta *m, void *dst)
{
    int rc;
    if (m->codec == CKPT__CODEC_DELTA) {
        if (m->base_id <= 0 || m->base_id == m->id)
            return ckpt__err(CKPT_ECORRUPT, "chunk %lld: delta without a valid base",
                             (long long)m->id);
        if (io->base_id != m->base_id) {
            ckpt__chunk_meta bm;
            if ((rc = ckpt__chunk_meta_get(s, m->base_id, &bm)))
                return ckpt__err_prefix(rc, "base of chunk %lld", (long long)m->id);
            if (bm.codec == CKPT__CODEC_DELTA)
                return ckpt__err(CKPT_ECORRUPT, "chunk %lld: its base %lld is itself a delta",
                                 (long long)m->id, (long long)bm.id);
            io->base_id = 0;
            if ((rc = ckpt__grow(&io->base, &io->base_cap, bm.raw_len)) ||
                (rc = read_plain(s, io, &bm, io->base, NULL, 0)) || (rc = ckpt__chunk_check(&bm, io->base)))
                return ckpt__err_prefix(rc, "base of chunk %lld", (long long)m->id);
            io->base_id = bm.id;
            io->base_len = bm.raw_len;
        }
        rc = read_plain(s, io, m, dst, io->base, io->base_len);
    } else {
        rc = read_plain(s, io, m, dst, NULL, 0);
    }
    if (rc)
        return rc;
    return ckpt__chunk_check(m, dst);
}

int ckpt__chunk_insert(ckpt_store *s, const uint8_t hash[16], int codec, int64_t base_id,
                       size_t raw_len, const void *payload, size_t payload_len, int64_t *out_id)
{
    sqlite3_stmt *st;
    int rc = ckpt__prepare(s->cdb,
                           "INSERT INTO chunks(hash, codec, base_id, raw_len, data) VALUES (?, ?, ?, ?, ?)",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, hash, 16, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, codec);
    if (base_id > 0)
        sqlite3_bind_int64(st, 3, base_id);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, (int64_t)raw_len);
    sqlite3_bind_blob64(st, 5, payload, payload_len, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return ckpt__sqlerr(s->cdb, r, "storing a chunk");
    *out_id = sqlite3_last_insert_rowid(s->cdb);
    return CKPT_OK;
}

int ckpt__chunk_decode(ckpt__codec_ctx *c, const ckpt__chunk_meta *m, const void *payload,
                       const void *base, size_t base_len, void *dst)
{
    int rc;
    if (m->codec == CKPT__CODEC_RAW) {
        if (payload != dst)
            memcpy(dst, payload, m->raw_len);
    } else {
        rc = ckpt__codec_decode(c, m->codec, payload, m->stored_len, base, base_len, dst,
                                m->raw_len);
        if (rc == CKPT_ECORRUPT)
            return ckpt__err_prefix(rc, "chunk %lld is corrupt", (long long)m->id);
        if (rc)
            return ckpt__err_prefix(rc, "chunk %lld", (long long)m->id);
    }
    return ckpt__chunk_check(m, dst);
}
