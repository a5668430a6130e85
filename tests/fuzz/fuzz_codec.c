/*
 * fuzz_codec.c - the chunk codecs. Byte 0 bit 7 chooses:
 *  0: decode an untrusted payload. Byte 0 bits 0-2 = codec id (0..7, so
 *     unknown ids too), bit 3 = no base pointer, bit 4 = chunk length taken
 *     from the payload's raw-length field (bytes 4..7) rather than the
 *     payload length. Bytes 1..2 = base length B (u16le). Then the payload;
 *     the base is the input's last B bytes when the input is long enough,
 *     else B bytes of a pattern. Decoding must fail cleanly or succeed, and
 *     succeed the same way twice.
 *  1: encode/decode round trip. Byte 0 bits 0-1 = mode (auto, raw, planes,
 *     delta), bits 2-3 = element size 1/2/4/8, bit 4 = also check that a
 *     short output buffer is refused; byte 1 = zstd level; byte 2 = base
 *     kind (none, the chunk with sparse changes, a prefix of it, a longer
 *     one, arbitrary bytes), byte 3 = its parameter; the rest is the chunk.
 *     The decoded bytes must equal the input exactly.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz_common.h"

/* The decoder allocates up to the chunk length: keep that modest. */
#define MAX_DECODE_N ((size_t)4 << 20)

static ckpt__codec_ctx *ctx;

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void fuzz_decode(const uint8_t *data, size_t size)
{
    if (size < 3)
        return;
    int codec = data[0] & 7, nobase = (data[0] >> 3) & 1, n_from_payload = (data[0] >> 4) & 1;
    size_t bn = (size_t)data[1] | (size_t)data[2] << 8;
    const uint8_t *p = data + 3;
    size_t pn = size - 3;
    uint8_t *base = malloc(bn ? bn : 1);
    if (pn >= bn + 1 && bn) {
        pn -= bn;
        memcpy(base, p + pn, bn);
    } else {
        memset(base, 0x33, bn);
    }
    size_t n = n_from_payload && pn >= 8 ? rd32(p + 4) : pn;
    if (n > MAX_DECODE_N)
        n %= MAX_DECODE_N;
    /* Exact-size copies: any read past an end is caught. */
    uint8_t *pay = malloc(pn ? pn : 1), *dst = malloc(n ? n : 1), *dst2 = malloc(n ? n : 1);
    memcpy(pay, p, pn);
    const uint8_t *b = nobase ? NULL : base;
    size_t bl = nobase ? 0 : bn;
    int rc = fz_rc(ckpt__codec_decode(ctx, codec, pay, pn, b, bl, dst, n), "ckpt__codec_decode");
    FZ_CHECK(rc == CKPT_OK || rc == CKPT_ECORRUPT || rc == CKPT_ENOMEM ||
                 (rc == CKPT_EINVAL && codec == CKPT__CODEC_DELTA && !b),
             "decode of codec %d returned %d", codec, rc);
    if (rc == CKPT_OK) {
        FZ_CHECK(codec >= CKPT__CODEC_RAW && codec <= CKPT__CODEC_DELTA, "codec %d decoded", codec);
        if (codec == CKPT__CODEC_RAW)
            FZ_CHECK(pn == n && memcmp(dst, pay, n) == 0, "raw decode changed the bytes");
        if (n <= 65536) {
            int rc2 = ckpt__codec_decode(ctx, codec, pay, pn, b, bl, dst2, n);
            FZ_CHECK(rc2 == CKPT_OK && memcmp(dst, dst2, n) == 0, "a second decode differs");
        }
    }
    free(pay);
    free(dst);
    free(dst2);
    free(base);
}

static void fuzz_roundtrip(const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    static const int modes[4] = {CKPT_CODEC_AUTO, CKPT_CODEC_RAW, CKPT_CODEC_PLANES,
                                 CKPT_CODEC_DELTA};
    int mode = modes[data[0] & 3];
    size_t es = (size_t)1 << ((data[0] >> 2) & 3);
    int short_cap = (data[0] >> 4) & 1;
    /* High levels are slow on big chunks: keep them to small ones. */
    int level = 1 + data[1] % (size > 4096 ? 3 : 19);
    int bkind = data[2] % 5;
    unsigned param = data[3];
    const uint8_t *src = data + 4;
    size_t n = size - 4;

    uint8_t *s = malloc(n ? n : 1);
    memcpy(s, src, n);
    size_t bn = 0;
    uint8_t *base = NULL;
    switch (bkind) {
    case 1: /* the chunk with a change every (param + 1) * 37 bytes */
    case 2: /* a prefix of that */
    case 3: /* longer than the chunk */
        bn = bkind == 1 ? n : bkind == 2 ? n * (param % 8) / 8 : n + 1 + param;
        base = malloc(bn ? bn : 1);
        for (size_t i = 0; i < bn; i++)
            base[i] = i < n ? s[i] : (uint8_t)i;
        for (size_t i = param % 37; i < bn; i += ((size_t)param + 1) * 37)
            base[i] ^= (uint8_t)(1 + param);
        break;
    case 4: /* arbitrary bytes: the chunk reversed */
        bn = n;
        base = malloc(bn ? bn : 1);
        for (size_t i = 0; i < bn; i++)
            base[i] = s[n - 1 - i];
        break;
    }
    size_t cap = mode == CKPT_CODEC_RAW ? n : ckpt__codec_bound(n);
    uint8_t *enc = malloc(cap ? cap : 1);
    int codec = -1;
    size_t len = 0;
    int rc = fz_rc(ckpt__codec_encode(ctx, mode, level, es, s, n, base, bn, enc, cap, &codec, &len),
                   "ckpt__codec_encode");
    FZ_CHECK(rc == CKPT_OK || rc == CKPT_ENOMEM, "encode returned %d", rc);
    if (rc == CKPT_OK) {
        FZ_CHECK(len <= n, "payload of %zu bytes for a %zu-byte chunk", len, n);
        FZ_CHECK(codec == CKPT__CODEC_RAW || (codec == CKPT__CODEC_PLANES && mode != CKPT_CODEC_RAW) ||
                     (codec == CKPT__CODEC_DELTA && bn > 0 &&
                      (mode == CKPT_CODEC_AUTO || mode == CKPT_CODEC_DELTA)),
                 "mode %d with a %zu-byte base gave codec %d", mode, bn, codec);
        uint8_t *pay = malloc(len ? len : 1), *dst = malloc(n ? n : 1);
        memcpy(pay, enc, len);
        rc = fz_rc(ckpt__codec_decode(ctx, codec, pay, len, base, bn, dst, n), "decoding an encoded chunk");
        FZ_CHECK(rc == CKPT_OK, "an encoded chunk does not decode: %s", ckpt_errmsg());
        FZ_CHECK(memcmp(dst, s, n) == 0,
                 "round trip changed the bytes (mode %d, es %zu, level %d, codec %d, base %zu)",
                 mode, es, level, codec, bn);
        if (codec == CKPT__CODEC_DELTA && bn > 0) {
            /* The wrong base length is caught, not decoded. */
            rc = ckpt__codec_decode(ctx, codec, pay, len, base, bn - 1, dst, n);
            FZ_CHECK(rc == CKPT_ECORRUPT, "a delta decoded against a shorter base: %d", rc);
        }
        free(pay);
        free(dst);
    }
    if (short_cap && mode != CKPT_CODEC_RAW && n > 0) {
        rc = ckpt__codec_encode(ctx, mode, level, es, s, n, base, bn, enc, cap - 1, &codec, &len);
        FZ_CHECK(rc == CKPT_ERANGE, "encode into %zu bytes (bound %zu) gave %d", cap - 1, cap, rc);
    }
    free(enc);
    free(base);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx && ckpt__codec_ctx_new(&ctx) != CKPT_OK)
        abort();
    if (size < 1)
        return 0;
    if (data[0] & 0x80)
        fuzz_roundtrip(data, size);
    else
        fuzz_decode(data, size);
    return 0;
}
