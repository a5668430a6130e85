/*
 * codec.h - chunk codecs: RAW (bytes as they are), PLANES (byte planes by
 * element width, zstd on the planes where it pays) and DELTA (XOR against
 * the base chunk, then PLANES). Encoding runs on worker threads, one context each.
 */
#ifndef CKPT_CODEC_H
#define CKPT_CODEC_H

#include <stddef.h>

#include "ckpt.h"

/* Codec ids, stored next to each payload. Never renumbered. */
enum { CKPT__CODEC_RAW = 1, CKPT__CODEC_PLANES = 2, CKPT__CODEC_DELTA = 3 };

/* Largest chunk the codecs handle (CKPT_PARAM_CHUNK_SIZE's maximum). */
#define CKPT__CODEC_MAX_N ((size_t)64 << 20)
/* Largest PLANES/DELTA header: 12 fixed bytes + 5 per plane, 8 planes. */
#define CKPT__CODEC_HDR_MAX 52

/* Per-thread state: zstd contexts and scratch buffers, grown on demand and
 * kept, so steady-state encoding and decoding allocate nothing. A context
 * must be used by one thread at a time. */
typedef struct ckpt__codec_ctx ckpt__codec_ctx;

/* Errors: CKPT_ENOMEM. */
int ckpt__codec_ctx_new(ckpt__codec_ctx **out);
/* NULL is a no-op. */
void ckpt__codec_ctx_free(ckpt__codec_ctx *c);

/* The dst capacity ckpt__codec_encode needs for n input bytes (any mode).
 * Every payload it returns is at most n bytes long (a PLANES/DELTA payload
 * is kept only when smaller than n, else RAW is stored); the extra
 * CKPT__CODEC_HDR_MAX bytes are working room. */
size_t ckpt__codec_bound(size_t n);

/* Encodes the chunk src[0..n) (n <= CKPT__CODEC_MAX_N) into dst.
 * mode: CKPT_CODEC_AUTO or CKPT_CODEC_DELTA: the smallest of delta (when
 * base_n > 0; chosen only if clearly smaller than planes, since decoding it
 * needs the base), planes, raw. CKPT_CODEC_PLANES: planes, or raw if planes is
 * not smaller (base ignored). CKPT_CODEC_RAW: the bytes as they are.
 * level: zstd level 1..19; per plane, a compressed sample chooses between
 * zstd tuned for entropy coding only and zstd at that level (at level 1 the
 * latter must be 10% smaller, being slower); planes saving under 5% stay raw.
 * elem_size: dtype width, 1, 2, 4 or 8. base: the decoded bytes of the same
 * tensor's chunk in the parent checkpoint, or NULL (base_n must then be 0);
 * a DELTA payload records base_n and decodes only against that many bytes.
 * cap must be >= ckpt__codec_bound(n), except for CKPT_CODEC_RAW where n is
 * enough. On success *out_codec is CKPT__CODEC_*, *out_n the payload length
 * (<= n). dst must not overlap src or base.
 * Errors: CKPT_EINVAL (mode, level, elem_size, NULL pointers, n too big),
 * CKPT_ERANGE (cap too small), CKPT_ENOMEM, CKPT_ERROR (zstd failed). */
int ckpt__codec_encode(ckpt__codec_ctx *c, int mode, int level, size_t elem_size,
                       const void *src, size_t n, const void *base, size_t base_n, void *dst,
                       size_t cap, int *out_codec, size_t *out_n);

/* Decodes payload into dst, which must be exactly n bytes: the chunk's raw
 * length as recorded by the store. base/base_n (the decoded base chunk) are
 * required for DELTA and ignored otherwise; dst must not overlap them or the
 * payload. The payload is untrusted: every field is checked against n, base_n
 * and payload_n before use, and nothing is allocated beyond n bytes (n itself
 * at most CKPT__CODEC_MAX_N); dst's content is unspecified after an error.
 * Errors: CKPT_ECORRUPT (malformed payload, unknown codec, n or base_n not
 * matching the payload; the message names the field and its byte offset),
 * CKPT_EINVAL (NULL pointers, DELTA without base), CKPT_ENOMEM. */
int ckpt__codec_decode(ckpt__codec_ctx *c, int codec, const void *payload, size_t payload_n,
                       const void *base, size_t base_n, void *dst, size_t n);

/* "raw", "planes", "delta"; "unknown" for anything else. */
const char *ckpt__codec_name(int codec);

#endif
