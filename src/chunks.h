/*
 * chunks.h - content-addressed chunk storage in the chunk database: lookup
 * by hash, insert, and verified reads (decode + hash check) shared by the
 * writer (dedup confirmation, delta bases), the reader and verify.
 */
#ifndef CKPT_CHUNKS_H
#define CKPT_CHUNKS_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "store.h"

typedef struct ckpt__chunk_meta {
    int64_t id;
    int codec;
    int64_t base_id;
    size_t raw_len;
    size_t stored_len;
    uint8_t hash[16];
} ckpt__chunk_meta;

/* Scratch space for reads; owned by one thread. */
typedef struct ckpt__chunk_io {
    ckpt__codec_ctx *codec;
    uint8_t *payload; /* encoded bytes */
    size_t payload_cap;
    uint8_t *base; /* decoded delta base */
    size_t base_cap;
    int64_t base_id; /* which chunk base holds, 0 if none */
    size_t base_len;
} ckpt__chunk_io;

int ckpt__chunk_io_init(ckpt__chunk_io *io);
void ckpt__chunk_io_free(ckpt__chunk_io *io);

/* Metadata of chunk id. Errors: CKPT_ECORRUPT if it is missing. The _db
 * variant reads through another connection to the chunk file cpath. */
int ckpt__chunk_meta_get(ckpt_store *s, int64_t id, ckpt__chunk_meta *out);
int ckpt__chunk_meta_get_db(sqlite3 *db, const char *cpath, int64_t id, ckpt__chunk_meta *out);
/* Looks a chunk up by hash: 1 found (*out filled), 0 absent, <0 error. */
int ckpt__chunk_find(ckpt_store *s, const uint8_t hash[16], ckpt__chunk_meta *out);

/* Reads chunk m into dst (exactly m->raw_len bytes), decoding it and
 * checking its hash; never leaves unchecked bytes without an error.
 * Errors: CKPT_ECORRUPT (message names the chunk), CKPT_EIO, CKPT_EBUSY,
 * CKPT_ENOMEM. */
int ckpt__chunk_read(ckpt_store *s, ckpt__chunk_io *io, const ckpt__chunk_meta *m, void *dst);

/* The pieces of ckpt__chunk_read, for pipelines whose workers fetch
 * through their own connection (db) and decode: fetch copies the stored (encoded) bytes of
 * m into dst (m->stored_len bytes); decode turns them into m->raw_len
 * bytes at dst (payload may equal dst for raw chunks) and checks the hash;
 * check only checks the hash. Decode and check touch no SQLite. */
int ckpt__chunk_fetch_db(sqlite3 *db, const ckpt__chunk_meta *m, void *dst);
int ckpt__chunk_decode(ckpt__codec_ctx *c, const ckpt__chunk_meta *m, const void *payload,
                       const void *base, size_t base_len, void *dst);
int ckpt__chunk_check(const ckpt__chunk_meta *m, const void *data);

/* Inserts an encoded chunk; *out_id receives its id. Must run inside a
 * write transaction on s->cdb. */
int ckpt__chunk_insert(ckpt_store *s, const uint8_t hash[16], int codec, int64_t base_id,
                       size_t raw_len, const void *payload, size_t payload_len, int64_t *out_id);

/* The chunk ids of tensor i of an open reader (reader.c), for verify. */
int ckpt__reader_chunk_ids(ckpt_reader *r, size_t i, const int64_t **ids, size_t *n,
                           size_t *chunk_size);

#endif
