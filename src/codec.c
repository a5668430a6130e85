/*
 * codec.c - chunk codecs (see codec.h): byte-plane split/merge, optional XOR
 * against a base chunk, zstd on the planes a sample shows to be compressible,
 * and a strict decoder for the resulting self-describing payload.
 */
/* For ZSTD_customMem, ZSTD_initStaticCCtx, ZSTD_estimateCCtxSize and
 * ZSTD_c_literalCompressionMode: exported by libzstd.so all the same. */
#define ZSTD_STATIC_LINKING_ONLY
#include "codec.h"

#include <stdint.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "error.h"

/*
 * PLANES / DELTA payload (all integers little-endian):
 *   0  u8  format version (1)
 *   1  u8  codec id (2 planes, 3 delta), so a wrong id in the store is caught
 *   2  u8  elem size E: 1, 2, 4 or 8
 *   3  u8  flags, 0
 *   4  u32 raw length n (the decoded chunk's length)
 *   8  u32 base length (delta: the base chunk's length; planes: 0)
 *  12  E x { u8 mode (0 raw, 1 zstd frame), u32 stored length }
 * then the E planes in order (plane k = byte k of each of the n / E whole
 * elements: n / E bytes when raw), then the n % E trailing bytes, raw.
 * DELTA applies all of this to x[i] = src[i] ^ base[i] for i < base length,
 * x[i] = src[i] beyond. RAW has no header: the payload is the chunk.
 */
#define FMT_VERSION 1
#define HDR_FIXED 12
#define PLANE_DESC 5
enum { PM_RAW = 0, PM_ZSTD = 1 };

/* How the encoder stores a plane. ENTROPY (any level): zstd's fast strategy
 * with match search mostly off and Huffman-coded literals, about 2.5x faster
 * than plain level 1 on float exponent planes and no worse; LZ (level 1): plain
 * level 1, much better on planes with long runs (sparse XOR deltas) or
 * repeats (integer ranges); LEVEL: the caller's level 2..19 as zstd sets it. */
enum { CH_RAW = 0, CH_ENTROPY = 1, CH_LZ = 2, CH_LEVEL = 3 };
/* For ZSTD_fast, targetLength is the match-search step: this large a step
 * leaves nearly all bytes to the literal (Huffman) coder. */
#define ENTROPY_TARGET_LENGTH 1024

/* A plane is compressed only if that saves 5%; shorter planes stay raw (a
 * zstd frame alone costs ~10 bytes). */
#define MIN_ZSTD_PLANE 64
/* The probe compresses SAMPLE_SEGS runs of elements, SAMPLE_ELEMS in all,
 * spread over the chunk; a chunk of at most SAMPLE_ELEMS elements is probed whole. */
#define SAMPLE_ELEMS 8192
#define SAMPLE_SEGS 4
/* Delta must beat planes by 1/32 (decoding it needs the base chunk too). */
#define DELTA_MARGIN_SHIFT 5

struct ckpt__codec_ctx {
    /* Level-1 settings run on a static context in a workspace sized once
     * for any input: a dynamic one regrows after zstd shrinks it (it does
     * after 128 small inputs in a row, e.g. a run of bias tensors). */
    ZSTD_CCtx *cctx; /* static, in cws; NULL if the allocator's alignment won't do */
    void *cws;
    ZSTD_CCtx *cctx_hi; /* dynamic: levels 2..19, made on first use */
    ZSTD_DCtx *dctx;
    int params, params_hi; /* parameter set applied to each (see set_params), -1 none */
    uint8_t *buf;   /* encode: one compressed plane; decode: the zstd planes */
    size_t buf_cap;
    uint8_t *sample; /* sample planes: 2 variants x 8 planes x SAMPLE_ELEMS */
    uint8_t *probe;  /* probe output, SAMPLE_ELEMS bytes */
};

typedef struct plan {
    int delta;      /* 1: planes of src ^ base */
    uint8_t ch[8];  /* CH_* per plane */
    uint64_t est;   /* estimated payload bytes */
} plan;

/* ---------------------------------------------------------------- helpers */

static void *z_alloc(void *opaque, size_t n)
{
    (void)opaque;
    return ckpt__malloc(n);
}
static void z_free(void *opaque, void *p)
{
    (void)opaque;
    ckpt__free(p);
}
static const ZSTD_customMem zmem = {z_alloc, z_free, NULL};

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int valid_es(size_t es)
{
    return es == 1 || es == 2 || es == 4 || es == 8;
}

/* The largest compressed size that still saves 5% of len. */
static size_t zcap(size_t len)
{
    return len ? (len * 19 - 1) / 20 : 0;
}

static int ensure_buf(ckpt__codec_ctx *c, size_t need)
{
    if (need <= c->buf_cap)
        return CKPT_OK;
    /* Contents need not survive, so free + malloc rather than realloc's copy. */
    ckpt__free(c->buf);
    c->buf_cap = 0;
    c->buf = ckpt__malloc(need);
    if (!c->buf)
        return ckpt__err(CKPT_ENOMEM, "codec: out of memory for a %zu-byte scratch buffer", need);
    c->buf_cap = need;
    return CKPT_OK;
}

/* ---------------------------------------------------------------- split / merge
 * Plane k of element e is byte e * E + k. The loops work in blocks of BLK
 * elements with a constant trip count and restrict pointers: that is the
 * shape gcc -O2's cheap vectoriser accepts (10+ GB/s for E=4 here, against
 * 1.4 GB/s scalar). XOR variants fold the delta into the same pass. */
#define BLK 32
#define RD_PLAIN(a) s[a]
#define RD_XOR(a) (uint8_t)(s[a] ^ b[a])

#define DEF_SPLIT2(NAME, RD)                                                               \
    static void NAME(const uint8_t *restrict s, const uint8_t *restrict b, size_t ne,        \
                     uint8_t *restrict p0, uint8_t *restrict p1)                              \
    {                                                                                        \
        size_t i = 0;                                                                        \
        (void)b;                                                                             \
        for (; i + BLK <= ne; i += BLK)                                                      \
            for (size_t j = 0; j < BLK; j++) {                                               \
                p0[i + j] = RD(2 * (i + j));                                                 \
                p1[i + j] = RD(2 * (i + j) + 1);                                             \
            }                                                                                \
        for (; i < ne; i++) {                                                                \
            p0[i] = RD(2 * i);                                                               \
            p1[i] = RD(2 * i + 1);                                                           \
        }                                                                                    \
    }
#define DEF_SPLIT4(NAME, RD)                                                               \
    static void NAME(const uint8_t *restrict s, const uint8_t *restrict b, size_t ne,        \
                     uint8_t *restrict p0, uint8_t *restrict p1, uint8_t *restrict p2,        \
                     uint8_t *restrict p3)                                                    \
    {                                                                                        \
        size_t i = 0;                                                                        \
        (void)b;                                                                             \
        for (; i + BLK <= ne; i += BLK)                                                      \
            for (size_t j = 0; j < BLK; j++) {                                               \
                p0[i + j] = RD(4 * (i + j));                                                 \
                p1[i + j] = RD(4 * (i + j) + 1);                                             \
                p2[i + j] = RD(4 * (i + j) + 2);                                             \
                p3[i + j] = RD(4 * (i + j) + 3);                                             \
            }                                                                                \
        for (; i < ne; i++) {                                                                \
            p0[i] = RD(4 * i);                                                               \
            p1[i] = RD(4 * i + 1);                                                           \
            p2[i] = RD(4 * i + 2);                                                           \
            p3[i] = RD(4 * i + 3);                                                           \
        }                                                                                    \
    }
#define DEF_SPLIT8(NAME, RD)                                                               \
    static void NAME(const uint8_t *restrict s, const uint8_t *restrict b, size_t ne,        \
                     uint8_t *restrict p0, uint8_t *restrict p1, uint8_t *restrict p2,        \
                     uint8_t *restrict p3, uint8_t *restrict p4, uint8_t *restrict p5,        \
                     uint8_t *restrict p6, uint8_t *restrict p7)                              \
    {                                                                                        \
        size_t i = 0;                                                                        \
        (void)b;                                                                             \
        for (; i + BLK <= ne; i += BLK)                                                      \
            for (size_t j = 0; j < BLK; j++) {                                               \
                p0[i + j] = RD(8 * (i + j));                                                 \
                p1[i + j] = RD(8 * (i + j) + 1);                                             \
                p2[i + j] = RD(8 * (i + j) + 2);                                             \
                p3[i + j] = RD(8 * (i + j) + 3);                                             \
                p4[i + j] = RD(8 * (i + j) + 4);                                             \
                p5[i + j] = RD(8 * (i + j) + 5);                                             \
                p6[i + j] = RD(8 * (i + j) + 6);                                             \
                p7[i + j] = RD(8 * (i + j) + 7);                                             \
            }                                                                                \
        for (; i < ne; i++) {                                                                \
            p0[i] = RD(8 * i);                                                               \
            p1[i] = RD(8 * i + 1);                                                           \
            p2[i] = RD(8 * i + 2);                                                           \
            p3[i] = RD(8 * i + 3);                                                           \
            p4[i] = RD(8 * i + 4);                                                           \
            p5[i] = RD(8 * i + 5);                                                           \
            p6[i] = RD(8 * i + 6);                                                           \
            p7[i] = RD(8 * i + 7);                                                           \
        }                                                                                    \
    }
DEF_SPLIT2(split2, RD_PLAIN)
DEF_SPLIT2(split2x, RD_XOR)
DEF_SPLIT4(split4, RD_PLAIN)
DEF_SPLIT4(split4x, RD_XOR)
DEF_SPLIT8(split8, RD_PLAIN)
DEF_SPLIT8(split8x, RD_XOR)

/* Merge: plane bytes back into elements, XORed with b[] in the X variants. */
#define WR_PLAIN(a, v) d[a] = (v)
#define WR_XOR(a, v) d[a] = (uint8_t)((v) ^ b[a])

#define DEF_MERGE2(NAME, WR)                                                               \
    static void NAME(uint8_t *restrict d, const uint8_t *restrict b, size_t ne,              \
                     const uint8_t *restrict p0, const uint8_t *restrict p1)                  \
    {                                                                                        \
        size_t i = 0;                                                                        \
        (void)b;                                                                             \
        for (; i + BLK <= ne; i += BLK)                                                      \
            for (size_t j = 0; j < BLK; j++) {                                               \
                WR(2 * (i + j), p0[i + j]);                                                  \
                WR(2 * (i + j) + 1, p1[i + j]);                                              \
            }                                                                                \
        for (; i < ne; i++) {                                                                \
            WR(2 * i, p0[i]);                                                                \
            WR(2 * i + 1, p1[i]);                                                            \
        }                                                                                    \
    }
#define DEF_MERGE4(NAME, WR)                                                               \
    static void NAME(uint8_t *restrict d, const uint8_t *restrict b, size_t ne,              \
                     const uint8_t *restrict p0, const uint8_t *restrict p1,                  \
                     const uint8_t *restrict p2, const uint8_t *restrict p3)                  \
    {                                                                                        \
        size_t i = 0;                                                                        \
        (void)b;                                                                             \
        for (; i + BLK <= ne; i += BLK)                                                      \
            for (size_t j = 0; j < BLK; j++) {                                               \
                WR(4 * (i + j), p0[i + j]);                                                  \
                WR(4 * (i + j) + 1, p1[i + j]);                                              \
                WR(4 * (i + j) + 2, p2[i + j]);                                              \
                WR(4 * (i + j) + 3, p3[i + j]);                                              \
            }                                                                                \
        for (; i < ne; i++) {                                                                \
            WR(4 * i, p0[i]);                                                                \
            WR(4 * i + 1, p1[i]);                                                            \
            WR(4 * i + 2, p2[i]);                                                            \
            WR(4 * i + 3, p3[i]);                                                            \
        }                                                                                    \
    }
#define DEF_MERGE8(NAME, WR)                                                               \
    static void NAME(uint8_t *restrict d, const uint8_t *restrict b, size_t ne,              \
                     const uint8_t *restrict p0, const uint8_t *restrict p1,                  \
                     const uint8_t *restrict p2, const uint8_t *restrict p3,                  \
                     const uint8_t *restrict p4, const uint8_t *restrict p5,                  \
                     const uint8_t *restrict p6, const uint8_t *restrict p7)                  \
    {                                                                                        \
        size_t i = 0;                                                                        \
        (void)b;                                                                             \
        for (; i + BLK <= ne; i += BLK)                                                      \
            for (size_t j = 0; j < BLK; j++) {                                               \
                WR(8 * (i + j), p0[i + j]);                                                  \
                WR(8 * (i + j) + 1, p1[i + j]);                                              \
                WR(8 * (i + j) + 2, p2[i + j]);                                              \
                WR(8 * (i + j) + 3, p3[i + j]);                                              \
                WR(8 * (i + j) + 4, p4[i + j]);                                              \
                WR(8 * (i + j) + 5, p5[i + j]);                                              \
                WR(8 * (i + j) + 6, p6[i + j]);                                              \
                WR(8 * (i + j) + 7, p7[i + j]);                                              \
            }                                                                                \
        for (; i < ne; i++) {                                                                \
            WR(8 * i, p0[i]);                                                                \
            WR(8 * i + 1, p1[i]);                                                            \
            WR(8 * i + 2, p2[i]);                                                            \
            WR(8 * i + 3, p3[i]);                                                            \
            WR(8 * i + 4, p4[i]);                                                            \
            WR(8 * i + 5, p5[i]);                                                            \
            WR(8 * i + 6, p6[i]);                                                            \
            WR(8 * i + 7, p7[i]);                                                            \
        }                                                                                    \
    }
DEF_MERGE2(merge2, WR_PLAIN)
DEF_MERGE2(merge2x, WR_XOR)
DEF_MERGE4(merge4, WR_PLAIN)
DEF_MERGE4(merge4x, WR_XOR)
DEF_MERGE8(merge8, WR_PLAIN)
DEF_MERGE8(merge8x, WR_XOR)

static void xor_bytes(uint8_t *restrict d, const uint8_t *restrict s, const uint8_t *restrict b,
                      size_t n)
{
    size_t i = 0;
    for (; i + BLK <= n; i += BLK)
        for (size_t j = 0; j < BLK; j++)
            d[i + j] = (uint8_t)(s[i + j] ^ b[i + j]);
    for (; i < n; i++)
        d[i] = (uint8_t)(s[i] ^ b[i]);
}

/* ne whole elements at s (XORed with b unless b is NULL) into pl[k][off..). */
static void split_run(size_t es, const uint8_t *s, const uint8_t *b, size_t ne, uint8_t *const *pl,
                      size_t off)
{
    if (ne == 0)
        return;
    switch (es) {
    case 1:
        if (b)
            xor_bytes(pl[0] + off, s, b, ne);
        else
            memcpy(pl[0] + off, s, ne);
        break;
    case 2:
        (b ? split2x : split2)(s, b, ne, pl[0] + off, pl[1] + off);
        break;
    case 4:
        (b ? split4x : split4)(s, b, ne, pl[0] + off, pl[1] + off, pl[2] + off, pl[3] + off);
        break;
    default:
        (b ? split8x : split8)(s, b, ne, pl[0] + off, pl[1] + off, pl[2] + off, pl[3] + off,
                               pl[4] + off, pl[5] + off, pl[6] + off, pl[7] + off);
        break;
    }
}

static void merge_run(size_t es, uint8_t *d, const uint8_t *b, size_t ne,
                      const uint8_t *const *pl, size_t off)
{
    if (ne == 0)
        return;
    switch (es) {
    case 1:
        if (b)
            xor_bytes(d, pl[0] + off, b, ne);
        else
            memcpy(d, pl[0] + off, ne);
        break;
    case 2:
        (b ? merge2x : merge2)(d, b, ne, pl[0] + off, pl[1] + off);
        break;
    case 4:
        (b ? merge4x : merge4)(d, b, ne, pl[0] + off, pl[1] + off, pl[2] + off, pl[3] + off);
        break;
    default:
        (b ? merge8x : merge8)(d, b, ne, pl[0] + off, pl[1] + off, pl[2] + off, pl[3] + off,
                               pl[4] + off, pl[5] + off, pl[6] + off, pl[7] + off);
        break;
    }
}

/* Elements [e0, e0 + ne) of src into planes pl[k][off..), XORing byte i with
 * base[i] for i < base_n (base NULL: no XOR). */
static void split_elems(size_t es, const uint8_t *src, const uint8_t *base, size_t base_n,
                        size_t e0, size_t ne, uint8_t *const *pl, size_t off)
{
    size_t end = e0 + ne, a = e0;
    size_t eb = base ? base_n / es : 0; /* elements wholly inside the base */
    if (a < eb) {
        size_t x_end = end < eb ? end : eb;
        split_run(es, src + a * es, base + a * es, x_end - a, pl, off);
        off += x_end - a;
        a = x_end;
    }
    if (a < end && base && a * es < base_n) { /* the element the base ends in */
        for (size_t k = 0; k < es; k++) {
            size_t i = a * es + k;
            pl[k][off] = (uint8_t)(src[i] ^ (i < base_n ? base[i] : 0));
        }
        off++;
        a++;
    }
    split_run(es, src + a * es, NULL, end - a, pl, off);
}

/* The inverse for elements [0, ne): dst from planes, XOR as above. */
static void merge_elems(size_t es, uint8_t *dst, const uint8_t *base, size_t base_n, size_t ne,
                        const uint8_t *const *pl)
{
    size_t a = 0;
    size_t eb = base ? base_n / es : 0;
    if (eb > 0) {
        size_t x_end = ne < eb ? ne : eb;
        merge_run(es, dst, base, x_end, pl, 0);
        a = x_end;
    }
    if (a < ne && base && a * es < base_n) {
        for (size_t k = 0; k < es; k++) {
            size_t i = a * es + k;
            dst[i] = (uint8_t)(pl[k][a] ^ (i < base_n ? base[i] : 0));
        }
        a++;
    }
    merge_run(es, dst + a * es, NULL, ne - a, pl, a);
}

/* ---------------------------------------------------------------- zstd */

/* Applies parameter set ch (CH_ENTROPY, CH_LZ, CH_LEVEL with level) to z,
 * unless *cur says it is already in place. */
static int set_params(ZSTD_CCtx *z, int *cur, int ch, int level)
{
    int key = ch == CH_LEVEL ? 100 + level : ch;
    size_t r;
    if (*cur == key)
        return CKPT_OK;
    *cur = -1;
    /* Resets the session too: a compression that ran out of room leaves
     * one open, and parameters alone cannot be reset then. */
    r = ZSTD_CCtx_reset(z, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, ch == CH_LEVEL ? level : 1);
    if (!ZSTD_isError(r) && ch == CH_ENTROPY) {
        /* Without forced literal compression, zstd stores literals raw
         * when targetLength > 0 under ZSTD_fast; a libzstd that refuses it gets
         * plain level 1 rather than no compression. */
        if (!ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_literalCompressionMode,
                                                 ZSTD_ps_enable))) {
            r = ZSTD_CCtx_setParameter(z, ZSTD_c_strategy, ZSTD_fast);
            if (!ZSTD_isError(r))
                r = ZSTD_CCtx_setParameter(z, ZSTD_c_targetLength, ENTROPY_TARGET_LENGTH);
        }
    }
    if (ZSTD_isError(r))
        return ckpt__err(CKPT_ERROR, "codec: setting zstd parameters: %s", ZSTD_getErrorName(r));
    *cur = key;
    return CKPT_OK;
}

static int hi_ctx(ckpt__codec_ctx *c)
{
    if (!c->cctx_hi) {
        c->cctx_hi = ZSTD_createCCtx_advanced(zmem);
        if (!c->cctx_hi)
            return ckpt__err(CKPT_ENOMEM, "codec: out of memory for a zstd context");
        c->params_hi = -1;
    }
    return CKPT_OK;
}

/* Compresses src[0..len) into dst[0..cap). *out is the frame size, or 0 when
 * it does not fit in cap (so the plane is to stay raw). */
static int zcompress(ckpt__codec_ctx *c, int ch, int level, void *dst, size_t cap,
                     const void *src, size_t len, size_t *out)
{
    int use_static = ch != CH_LEVEL && c->cctx;
    size_t r;
    int rc;
    *out = 0;
    for (;;) {
        if (!use_static && (rc = hi_ctx(c)) != CKPT_OK)
            return rc;
        rc = use_static ? set_params(c->cctx, &c->params, ch, level)
                        : set_params(c->cctx_hi, &c->params_hi, ch, level);
        if (rc)
            return rc;
        r = ZSTD_compress2(use_static ? c->cctx : c->cctx_hi, dst, cap, src, len);
        if (!ZSTD_isError(r))
            break;
        if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
            return CKPT_OK;
        if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation && use_static) {
            use_static = 0; /* workspace estimate too small: should not happen */
            continue;
        }
        if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation)
            return ckpt__err(CKPT_ENOMEM, "codec: zstd ran out of memory compressing %zu bytes",
                             len);
        return ckpt__err(CKPT_ERROR, "codec: zstd failed compressing %zu bytes: %s", len,
                         ZSTD_getErrorName(r));
    }
    *out = r;
    return CKPT_OK;
}

/* ---------------------------------------------------------------- context */

int ckpt__codec_ctx_new(ckpt__codec_ctx **out)
{
    ckpt__codec_ctx *c;
    *out = NULL;
    c = ckpt__calloc(1, sizeof *c);
    if (!c)
        return ckpt__err(CKPT_ENOMEM, "codec: out of memory for a codec context");
    c->params = c->params_hi = -1;
    {
        /* Level 1's largest workspace: about 570 KiB. */
        size_t ws = ZSTD_estimateCCtxSize(1);
        c->cws = ckpt__malloc(ws);
        if (c->cws) {
            c->cctx = ZSTD_initStaticCCtx(c->cws, ws);
            if (!c->cctx) {
                ckpt__free(c->cws);
                c->cws = NULL;
                c->cctx_hi = ZSTD_createCCtx_advanced(zmem);
            }
        }
    }
    c->dctx = ZSTD_createDCtx_advanced(zmem);
    c->sample = ckpt__malloc((size_t)2 * 8 * SAMPLE_ELEMS);
    c->probe = ckpt__malloc(SAMPLE_ELEMS);
    if (!(c->cctx || c->cctx_hi) || !c->dctx || !c->sample || !c->probe) {
        ckpt__codec_ctx_free(c);
        return ckpt__err(CKPT_ENOMEM, "codec: out of memory for a codec context");
    }
    *out = c;
    return CKPT_OK;
}

void ckpt__codec_ctx_free(ckpt__codec_ctx *c)
{
    if (!c)
        return;
    ZSTD_freeCCtx(c->cctx_hi); /* the static one lives in cws */
    ckpt__free(c->cws);
    ZSTD_freeDCtx(c->dctx);
    ckpt__free(c->buf);
    ckpt__free(c->sample);
    ckpt__free(c->probe);
    ckpt__free(c);
}

size_t ckpt__codec_bound(size_t n)
{
    return n > SIZE_MAX - CKPT__CODEC_HDR_MAX ? SIZE_MAX : n + CKPT__CODEC_HDR_MAX;
}

const char *ckpt__codec_name(int codec)
{
    switch (codec) {
    case CKPT__CODEC_RAW: return "raw";
    case CKPT__CODEC_PLANES: return "planes";
    case CKPT__CODEC_DELTA: return "delta";
    default: return "unknown";
    }
}

/* ---------------------------------------------------------------- encode */

/* Fills p: per plane, raw or which zstd setting, and the payload size that
 * gives, from compressing a sample of the planes (of src ^ base when
 * p->delta). Costs ~2% of encoding a 4 MiB chunk; skipping zstd on
 * incompressible planes (low mantissa bytes) saves far more. */
static int probe(ckpt__codec_ctx *c, int level, size_t es, const uint8_t *src, size_t n,
                 const uint8_t *base, size_t base_n, plan *p)
{
    size_t ne = n / es, m = ne < SAMPLE_ELEMS ? ne : SAMPLE_ELEMS;
    uint8_t *sp[8] = {0};
    int rc;
    p->est = HDR_FIXED + PLANE_DESC * es + (n - ne * es);
    for (size_t k = 0; k < es; k++)
        sp[k] = c->sample + ((size_t)p->delta * 8 + k) * SAMPLE_ELEMS;
    if (ne < MIN_ZSTD_PLANE) {
        memset(p->ch, CH_RAW, sizeof p->ch);
        p->est += ne * es;
        return CKPT_OK;
    }
    if (ne <= SAMPLE_ELEMS) {
        split_elems(es, src, p->delta ? base : NULL, base_n, 0, ne, sp, 0);
    } else {
        size_t seg = SAMPLE_ELEMS / SAMPLE_SEGS;
        for (size_t s = 0; s < SAMPLE_SEGS; s++) {
            size_t e0 = (ne - seg) / (SAMPLE_SEGS - 1) * s;
            split_elems(es, src, p->delta ? base : NULL, base_n, e0, seg, sp, s * seg);
        }
    }
    /* Mode by mode rather than plane by plane: switching zstd parameters
     * makes the next compression clear its tables. */
    {
        size_t best[8] = {0};
        int alt_ch = level == 1 ? CH_LZ : CH_LEVEL;
        for (size_t k = 0; k < es; k++) {
            rc = zcompress(c, CH_ENTROPY, 1, c->probe, zcap(m), sp[k], m, &best[k]);
            if (rc)
                return rc;
            p->ch[k] = best[k] ? CH_ENTROPY : CH_RAW;
        }
        /* Runs (sparse XOR deltas) and repeats (integer ranges) need LZ,
         * which entropy coding alone misses (an i64 arange: 10x against
         * 900x). At level 1, LZ must win by 10%: it is 2-3x slower on dense
         * planes (float exponents) and no better there. Higher levels pay for
         * ratio; even there entropy coding alone often wins on float planes. */
        for (size_t k = 0; k < es; k++) {
            size_t alt = 0;
            rc = zcompress(c, alt_ch, level, c->probe, zcap(m), sp[k], m, &alt);
            if (rc)
                return rc;
            if (alt && (!best[k] || (level == 1 ? alt * 10 < best[k] * 9 : alt < best[k]))) {
                p->ch[k] = (uint8_t)alt_ch;
                best[k] = alt;
            }
        }
        for (size_t k = 0; k < es; k++)
            p->est += best[k] ? ((uint64_t)ne * best[k] + m - 1) / m : ne;
    }
    return CKPT_OK;
}

/* Writes the payload of plan p into dst (>= n + header bytes). The planes are
 * split straight into dst as if all raw; then, plane by plane, compressed
 * planes are copied down from scratch and later raw planes moved down after
 * them. Low (incompressible) bytes come first in little-endian data, so the
 * raw planes usually need no move at all. */
static int encode_planes(ckpt__codec_ctx *c, int level, size_t es, const uint8_t *src, size_t n,
                         const uint8_t *base, size_t base_n, const plan *p, uint8_t *dst,
                         size_t *out_n)
{
    size_t hl = HDR_FIXED + PLANE_DESC * es, ne = n / es, w = hl;
    const uint8_t *xb = p->delta ? base : NULL;
    uint8_t *pl[8] = {0};
    int rc;

    for (size_t k = 0; k < es; k++)
        pl[k] = dst + hl + k * ne;
    split_elems(es, src, xb, base_n, 0, ne, pl, 0);
    for (size_t k = 0; k < es; k++) {
        size_t stored = 0;
        uint8_t mode = PM_RAW;
        if (p->ch[k] != CH_RAW) {
            rc = ensure_buf(c, zcap(ne));
            if (rc)
                return rc;
            rc = zcompress(c, p->ch[k], level, c->buf, zcap(ne), pl[k], ne, &stored);
            if (rc)
                return rc;
            if (stored) {
                memcpy(dst + w, c->buf, stored);
                mode = PM_ZSTD;
            }
        }
        if (mode == PM_RAW) {
            if (dst + w != pl[k])
                memmove(dst + w, pl[k], ne);
            stored = ne;
        }
        dst[HDR_FIXED + PLANE_DESC * k] = mode;
        wr32(dst + HDR_FIXED + PLANE_DESC * k + 1, (uint32_t)stored);
        w += stored;
    }
    for (size_t i = ne * es; i < n; i++)
        dst[w++] = (uint8_t)(src[i] ^ (xb && i < base_n ? xb[i] : 0));
    dst[0] = FMT_VERSION;
    dst[1] = p->delta ? CKPT__CODEC_DELTA : CKPT__CODEC_PLANES;
    dst[2] = (uint8_t)es;
    dst[3] = 0;
    wr32(dst + 4, (uint32_t)n);
    wr32(dst + 8, p->delta ? (uint32_t)base_n : 0);
    *out_n = w;
    return CKPT_OK;
}

int ckpt__codec_encode(ckpt__codec_ctx *c, int mode, int level, size_t elem_size,
                       const void *src, size_t n, const void *base, size_t base_n, void *dst,
                       size_t cap, int *out_codec, size_t *out_n)
{
    const uint8_t *s = src, *b = base;
    plan pp, dp, *best = &pp;
    int rc;

    if (!c || !out_codec || !out_n || (!src && n) || (!dst && cap))
        return ckpt__err(CKPT_EINVAL, "codec encode: NULL argument");
    *out_codec = CKPT__CODEC_RAW;
    *out_n = 0;
    if (mode < CKPT_CODEC_AUTO || mode > CKPT_CODEC_DELTA)
        return ckpt__err(CKPT_EINVAL, "codec encode: unknown codec mode %d", mode);
    if (level < 1 || level > 19)
        return ckpt__err(CKPT_EINVAL, "codec encode: zstd level %d is outside 1..19", level);
    if (!valid_es(elem_size))
        return ckpt__err(CKPT_EINVAL, "codec encode: element size %zu is not 1, 2, 4 or 8",
                         elem_size);
    if (n > CKPT__CODEC_MAX_N)
        return ckpt__err(CKPT_EINVAL, "codec encode: chunk of %zu bytes exceeds the maximum %zu",
                         n, CKPT__CODEC_MAX_N);
    if ((!base && base_n) || base_n > CKPT__CODEC_MAX_N)
        return ckpt__err(CKPT_EINVAL, "codec encode: bad base chunk (%zu bytes%s)", base_n,
                         base ? "" : ", NULL pointer");

    if (mode != CKPT_CODEC_RAW && n > 0) {
        if (cap < ckpt__codec_bound(n))
            return ckpt__err(CKPT_ERANGE,
                             "codec encode: output buffer of %zu bytes is below the %zu bytes "
                             "needed for a %zu-byte chunk",
                             cap, ckpt__codec_bound(n), n);
        pp.delta = 0;
        rc = probe(c, level, elem_size, s, n, NULL, 0, &pp);
        if (rc)
            return rc;
        if (mode != CKPT_CODEC_PLANES && base_n > 0) {
            uint64_t limit = pp.est < n ? pp.est : n;
            dp.delta = 1;
            rc = probe(c, level, elem_size, s, n, b, base_n, &dp);
            if (rc)
                return rc;
            if (dp.est < limit - (limit >> DELTA_MARGIN_SHIFT))
                best = &dp;
        }
        /* Auto at level 1 (the default, for speed) keeps a full chunk raw
         * unless planes save a quarter of it: float32 weights shrink only
         * ~1.2x, and decoding them halved restore speed (ckpt-bench,
         * restore_vs_raw_read 0.50 -> 0.93 with this rule, 1 GiB). Deltas,
         * explicit planes and higher levels take any saving. */
        if (best->est < n && (mode != CKPT_CODEC_AUTO || level > 1 || best->delta ||
                              best->est <= n - (n >> 2))) {
            size_t len;
            rc = encode_planes(c, level, elem_size, s, n, b, base_n, best, dst, &len);
            if (rc)
                return rc;
            if (len < n) {
                *out_codec = best->delta ? CKPT__CODEC_DELTA : CKPT__CODEC_PLANES;
                *out_n = len;
                return CKPT_OK;
            }
        }
    }
    if (cap < n)
        return ckpt__err(CKPT_ERANGE,
                         "codec encode: output buffer of %zu bytes is below the %zu-byte chunk",
                         cap, n);
    if (n)
        memcpy(dst, src, n);
    *out_codec = CKPT__CODEC_RAW;
    *out_n = n;
    return CKPT_OK;
}

/* ---------------------------------------------------------------- decode */

static int decode_planes(ckpt__codec_ctx *c, int codec, const uint8_t *p, size_t pn,
                         const uint8_t *base, size_t base_n, uint8_t *dst, size_t n)
{
    const char *name = ckpt__codec_name(codec);
    const uint8_t *pl[8] = {0};
    size_t es, hl, ne, off, zneed = 0, zoff = 0;
    uint32_t raw_len, blen;

    if (pn < HDR_FIXED)
        return ckpt__err(CKPT_ECORRUPT,
                         "%s payload of %zu bytes is shorter than its %d-byte header", name, pn,
                         HDR_FIXED);
    if (p[0] != FMT_VERSION)
        return ckpt__err(CKPT_ECORRUPT,
                         "%s payload: format version %u at byte 0 (this build reads version %d)",
                         name, p[0], FMT_VERSION);
    if (p[1] != codec)
        return ckpt__err(CKPT_ECORRUPT,
                         "%s payload: codec id %u at byte 1 does not match the chunk's codec %d",
                         name, p[1], codec);
    es = p[2];
    if (!valid_es(es))
        return ckpt__err(CKPT_ECORRUPT,
                         "%s payload: element size %zu at byte 2 is not 1, 2, 4 or 8", name, es);
    if (p[3] != 0)
        return ckpt__err(CKPT_ECORRUPT, "%s payload: unknown flags 0x%02x at byte 3", name, p[3]);
    raw_len = rd32(p + 4);
    if (raw_len != n)
        return ckpt__err(CKPT_ECORRUPT,
                         "%s payload: raw length %u at byte 4 does not match the chunk length %zu",
                         name, raw_len, n);
    blen = rd32(p + 8);
    if (codec == CKPT__CODEC_PLANES && blen != 0)
        return ckpt__err(CKPT_ECORRUPT, "%s payload: base length %u at byte 8 (want 0)", name,
                         blen);
    if (codec == CKPT__CODEC_DELTA) {
        if (!base)
            return ckpt__err(CKPT_EINVAL, "%s payload: decoding needs the base chunk", name);
        if (blen != base_n)
            return ckpt__err(CKPT_ECORRUPT,
                             "%s payload: encoded against a %u-byte base (byte 8), but the base "
                             "chunk given has %zu bytes",
                             name, blen, base_n);
    } else {
        base = NULL;
    }
    hl = HDR_FIXED + PLANE_DESC * es;
    if (pn < hl)
        return ckpt__err(CKPT_ECORRUPT,
                         "%s payload of %zu bytes is shorter than its %zu-byte header", name, pn,
                         hl);
    ne = n / es;
    /* First pass: every length is checked before anything is allocated. */
    off = hl;
    for (size_t k = 0; k < es; k++) {
        size_t d = HDR_FIXED + PLANE_DESC * k;
        uint8_t mode = p[d];
        size_t len = rd32(p + d + 1);
        if (mode == PM_RAW) {
            if (len != ne)
                return ckpt__err(CKPT_ECORRUPT,
                                 "%s payload: raw plane %zu has length %zu at byte %zu, want %zu",
                                 name, k, len, d + 1, ne);
        } else if (mode == PM_ZSTD) {
            if (len == 0 || len > ne)
                return ckpt__err(CKPT_ECORRUPT,
                                 "%s payload: zstd plane %zu has length %zu at byte %zu, want "
                                 "1..%zu",
                                 name, k, len, d + 1, ne);
            zneed += ne;
        } else {
            return ckpt__err(CKPT_ECORRUPT, "%s payload: plane %zu has unknown mode %u at byte %zu",
                             name, k, mode, d);
        }
        if (len > pn - off)
            return ckpt__err(CKPT_ECORRUPT,
                             "%s payload: plane %zu (%zu bytes from byte %zu) runs past the "
                             "payload end at %zu",
                             name, k, len, off, pn);
        off += len;
    }
    if (pn - off != n - ne * es)
        return ckpt__err(CKPT_ECORRUPT,
                         "%s payload: %zu bytes follow the planes at byte %zu, want %zu trailing "
                         "bytes",
                         name, pn - off, off, n - ne * es);
    if (zneed) {
        int rc = ensure_buf(c, zneed);
        if (rc)
            return rc;
    }
    off = hl;
    for (size_t k = 0; k < es; k++) {
        size_t d = HDR_FIXED + PLANE_DESC * k, len = rd32(p + d + 1);
        if (p[d] == PM_RAW) {
            pl[k] = p + off;
        } else {
            size_t r = ZSTD_decompressDCtx(c->dctx, c->buf + zoff, ne, p + off, len);
            if (ZSTD_isError(r)) {
                if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation)
                    return ckpt__err(CKPT_ENOMEM, "%s payload: zstd ran out of memory", name);
                return ckpt__err(CKPT_ECORRUPT,
                                 "%s payload: zstd plane %zu (%zu bytes at byte %zu): %s", name,
                                 k, len, off, ZSTD_getErrorName(r));
            }
            if (r != ne)
                return ckpt__err(CKPT_ECORRUPT,
                                 "%s payload: zstd plane %zu at byte %zu decodes to %zu bytes, "
                                 "want %zu",
                                 name, k, off, r, ne);
            pl[k] = c->buf + zoff;
            zoff += ne;
        }
        off += len;
    }
    merge_elems(es, dst, base, base_n, ne, pl);
    for (size_t i = ne * es; i < n; i++)
        dst[i] = (uint8_t)(p[off++] ^ (base && i < base_n ? base[i] : 0));
    return CKPT_OK;
}

int ckpt__codec_decode(ckpt__codec_ctx *c, int codec, const void *payload, size_t payload_n,
                       const void *base, size_t base_n, void *dst, size_t n)
{
    if (!c || (!payload && payload_n) || (!dst && n) || (!base && base_n))
        return ckpt__err(CKPT_EINVAL, "codec decode: NULL argument");
    if (n > CKPT__CODEC_MAX_N)
        return ckpt__err(CKPT_ECORRUPT, "codec decode: chunk length %zu exceeds the maximum %zu",
                         n, CKPT__CODEC_MAX_N);
    switch (codec) {
    case CKPT__CODEC_RAW:
        if (payload_n != n)
            return ckpt__err(CKPT_ECORRUPT,
                             "raw payload has %zu bytes, but the chunk length is %zu", payload_n,
                             n);
        if (n)
            memcpy(dst, payload, n);
        return CKPT_OK;
    case CKPT__CODEC_PLANES:
    case CKPT__CODEC_DELTA:
        return decode_planes(c, codec, payload, payload_n, base, base_n, dst, n);
    default:
        return ckpt__err(CKPT_ECORRUPT, "codec decode: unknown codec id %d", codec);
    }
}
