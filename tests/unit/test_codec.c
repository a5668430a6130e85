/* test_codec.c - chunk codecs: bit-exact round trips for every dtype width,
 * codec mode and awkward length, the encoder's choices, and a decoder that
 * rejects truncated, bit-flipped and crafted payloads without crashing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "testutil.h"

#include "codec.h"
#include "error.h"

/* error.c's allocator switch, without SQLite's (ckpt_set_allocator lives in store.c). */

static const int all_modes[] = {CKPT_CODEC_AUTO, CKPT_CODEC_RAW, CKPT_CODEC_PLANES,
                                CKPT_CODEC_DELTA};
static const size_t all_es[] = {1, 2, 4, 8};

/* ---------------------------------------------------------------- data */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Roughly normal (Irwin-Hall, 12 uniforms), mean 0, standard deviation 1. */
static float rng_normal(uint64_t *s)
{
    double sum = 0;
    for (int i = 0; i < 12; i++)
        sum += (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sum - 6.0);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Crude f32 -> f16 bits: enough to get f16-shaped exponent planes. */
static uint16_t f16_bits(float f)
{
    uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000;
    int32_t e = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    if (e <= 0)
        return (uint16_t)sign;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    return (uint16_t)(sign | (uint32_t)e << 10 | ((u >> 13) & 0x3ff));
}

/* Weights as training leaves them: normal, standard deviation 0.02. */
static float *trained_f32(size_t count, uint64_t seed)
{
    float *a = malloc(count * sizeof *a);
    assert_non_null(a);
    for (size_t i = 0; i < count; i++)
        a[i] = 0.02f * rng_normal(&seed);
    return a;
}

/* One optimizer step later: every weight moves by about 1e-3 of itself. */
static float *updated_f32(const float *a, size_t count, uint64_t seed)
{
    float *b = malloc(count * sizeof *b);
    assert_non_null(b);
    for (size_t i = 0; i < count; i++)
        b[i] = a[i] - 0.001f * (a[i] + 0.01f * rng_normal(&seed));
    return b;
}

static uint16_t *to_bf16(const float *a, size_t count)
{
    uint16_t *h = malloc(count * sizeof *h);
    assert_non_null(h);
    for (size_t i = 0; i < count; i++)
        h[i] = (uint16_t)(f32_bits(a[i]) >> 16);
    return h;
}

static void *dup_exact(const void *p, size_t n)
{
    void *d = malloc(n ? n : 1);
    assert_non_null(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

/* ---------------------------------------------------------------- helpers */

static int setup(void **state)
{
    ckpt__codec_ctx *c;
    if (ckpt__codec_ctx_new(&c) != CKPT_OK)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ckpt__codec_ctx_free(*state);
    return 0;
}

typedef struct encoded {
    int codec;
    size_t n; /* payload length */
    uint8_t *p; /* exactly n bytes (ASan sees any over-read) */
} encoded;

static encoded encode_ok(ckpt__codec_ctx *c, int mode, int level, size_t es, const void *src,
                         size_t n, const void *base, size_t base_n)
{
    size_t cap = mode == CKPT_CODEC_RAW ? n : ckpt__codec_bound(n);
    uint8_t *buf = malloc(cap ? cap : 1);
    encoded e = {-1, 0, NULL};
    assert_non_null(buf);
    assert_int_equal(ckpt__codec_encode(c, mode, level, es, src, n, base, base_n, buf, cap,
                                        &e.codec, &e.n),
                     CKPT_OK);
    assert_true(e.n <= n);
    assert_true(e.codec >= CKPT__CODEC_RAW && e.codec <= CKPT__CODEC_DELTA);
    if (e.codec == CKPT__CODEC_RAW) {
        assert_int_equal(e.n, n);
        if (n)
            assert_memory_equal(buf, src, n);
    }
    if (mode == CKPT_CODEC_RAW)
        assert_int_equal(e.codec, CKPT__CODEC_RAW);
    if (mode == CKPT_CODEC_PLANES || base_n == 0)
        assert_int_not_equal(e.codec, CKPT__CODEC_DELTA);
    e.p = dup_exact(buf, e.n);
    free(buf);
    return e;
}

static void decode_equal(ckpt__codec_ctx *c, const encoded *e, const void *src, size_t n,
                         const void *base, size_t base_n)
{
    uint8_t *dec = malloc(n ? n : 1);
    assert_non_null(dec);
    assert_int_equal(ckpt__codec_decode(c, e->codec, e->p, e->n, base, base_n, dec, n), CKPT_OK);
    if (n)
        assert_memory_equal(dec, src, n);
    free(dec);
}

/* Encodes with mode, checks the decode is bit-exact, returns the codec. */
static int roundtrip(ckpt__codec_ctx *c, int mode, int level, size_t es, const void *src,
                     size_t n, const void *base, size_t base_n, size_t *out_n)
{
    void *s = dup_exact(src, n);
    void *b = base ? dup_exact(base, base_n) : NULL;
    encoded e = encode_ok(c, mode, level, es, s, n, b, base_n);
    decode_equal(c, &e, s, n, b, base_n);
    if (out_n)
        *out_n = e.n;
    free(e.p);
    free(s);
    free(b);
    return e.codec;
}

/* Every mode, with and without the base. */
static void roundtrip_all_modes(ckpt__codec_ctx *c, size_t es, const void *src, size_t n,
                                const void *base, size_t base_n)
{
    for (size_t m = 0; m < sizeof all_modes / sizeof all_modes[0]; m++) {
        roundtrip(c, all_modes[m], 1, es, src, n, NULL, 0, NULL);
        if (base)
            roundtrip(c, all_modes[m], 1, es, src, n, base, base_n, NULL);
    }
}

/* A chunk of count elements of width es: trained-like values (so planes
 * compress and the PLANES path really runs; 2-byte ones as f16 if f16, else
 * bf16) with specials[] every 7th. */
static uint8_t *chunk_with_specials(size_t es, int f16, size_t count, const uint64_t *specials,
                                    size_t nspecials, uint64_t seed)
{
    uint8_t *d = malloc(count * es);
    assert_non_null(d);
    for (size_t i = 0; i < count; i++) {
        float f = 0.02f * rng_normal(&seed);
        uint64_t v;
        if (i % 7 == 3)
            v = specials[(i / 7) % nspecials];
        else if (es == 8) {
            double x = f;
            memcpy(&v, &x, 8);
        } else if (es == 4)
            v = f32_bits(f);
        else if (es == 2)
            v = f16 ? f16_bits(f) : f32_bits(f) >> 16;
        else
            v = (uint8_t)(int8_t)(f * 1000);
        memcpy(d + i * es, &v, es); /* little-endian host */
    }
    return d;
}

/* The base: the same chunk with every 5th element's low byte changed, which
 * keeps NaNs NaN but changes their payload. */
static uint8_t *perturbed(const uint8_t *d, size_t es, size_t count)
{
    uint8_t *b = dup_exact(d, count * es);
    for (size_t i = 0; i < count; i += 5)
        b[i * es] ^= 1;
    return b;
}

static void check_specials(ckpt__codec_ctx *c, size_t es, int f16, const uint64_t *specials,
                           size_t ns, uint64_t seed)
{
    size_t count = 4096;
    uint8_t *d = chunk_with_specials(es, f16, count, specials, ns, seed);
    uint8_t *b = perturbed(d, es, count);
    roundtrip_all_modes(c, es, d, count * es, b, count * es);
    /* The specials survive the real transform, not only the raw fallback. */
    assert_int_equal(roundtrip(c, CKPT_CODEC_PLANES, 1, es, d, count * es, NULL, 0, NULL),
                     CKPT__CODEC_PLANES);
    assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 1, es, d, count * es, b, count * es, NULL),
                     CKPT__CODEC_DELTA);
    /* Chunk cut off mid-element, as a tensor's last chunk may be. */
    for (size_t cut = 1; cut < es; cut++)
        roundtrip_all_modes(c, es, d, count * es - cut, b, count * es);
    free(d);
    free(b);
}

/* ---------------------------------------------------------------- round trips */

static void test_codec__raw_mode_payload_is_the_bytes_unchanged(void **state)
{
    ckpt__codec_ctx *c = *state;
    uint8_t src[1000], dst[1000];
    int codec = 0;
    size_t n = 0;
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = 0; /* compressible, yet RAW must not compress */
    assert_int_equal(ckpt__codec_encode(c, CKPT_CODEC_RAW, 1, 4, src, sizeof src, NULL, 0, dst,
                                        sizeof dst, &codec, &n),
                     CKPT_OK);
    assert_int_equal(codec, CKPT__CODEC_RAW);
    assert_int_equal(n, sizeof src);
    assert_memory_equal(dst, src, sizeof src);
}

static void test_codec__f32_roundtrip_nan_payloads_inf_denormals_negzero(void **state)
{
    static const uint64_t sp[] = {
        0x7f800001, /* signalling NaN, payload 1 */
        0x7fa5a5a5, /* signalling NaN with payload bits */
        0x7fc00000, /* quiet NaN */
        0x7fc12345, /* quiet NaN with payload */
        0xffc00001, /* negative quiet NaN */
        0xff800001, /* negative signalling NaN */
        0x7f800000, /* +inf */
        0xff800000, /* -inf */
        0x00000001, /* smallest denormal */
        0x807fffff, /* largest negative denormal */
        0x00400000, /* denormal */
        0x80000000, /* -0 */
        0x00000000, /* +0 */
        0x7f7fffff, /* FLT_MAX */
        0x00800000, /* FLT_MIN */
    };
    check_specials(*state, 4, 0, sp, sizeof sp / sizeof sp[0], 1);
}

static void test_codec__f64_roundtrip_nan_payloads_inf_denormals_negzero(void **state)
{
    static const uint64_t sp[] = {
        0x7ff0000000000001ULL, 0x7ff4deadbeef0001ULL, 0x7ff8000000000000ULL,
        0x7ff8000000c0ffeeULL, 0xfff8000000000001ULL, 0x7ff0000000000000ULL,
        0xfff0000000000000ULL, 0x0000000000000001ULL, 0x800fffffffffffffULL,
        0x8000000000000000ULL, 0x0000000000000000ULL, 0x7fefffffffffffffULL,
    };
    check_specials(*state, 8, 0, sp, sizeof sp / sizeof sp[0], 2);
}

static void test_codec__f16_roundtrip_nan_payloads_inf_denormals_negzero(void **state)
{
    static const uint64_t sp[] = {0x7c01, 0x7d55, 0x7e00, 0x7e3f, 0xfe01, 0x7c00, 0xfc00,
                                  0x0001, 0x83ff, 0x8000, 0x0000, 0x7bff};
    check_specials(*state, 2, 1, sp, sizeof sp / sizeof sp[0], 3);
}

static void test_codec__bf16_roundtrip_nan_payloads_inf_denormals_negzero(void **state)
{
    static const uint64_t sp[] = {0x7f81, 0x7fa5, 0x7fc0, 0x7fc1, 0xffc1, 0x7f80, 0xff80,
                                  0x0001, 0x807f, 0x8000, 0x0000, 0x7f7f};
    check_specials(*state, 2, 0, sp, sizeof sp / sizeof sp[0], 4);
}

static void test_codec__integer_and_bool_dtypes_roundtrip(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t count = 5000;
    uint64_t seed = 5;
    int64_t *i64 = malloc(count * 8), *i64b;
    int32_t *i32 = malloc(count * 4);
    int16_t *i16 = malloc(count * 2);
    int8_t *i8 = malloc(count);
    uint8_t *u8 = malloc(count), *bl = malloc(count);
    assert_true(i64 && i32 && i16 && i8 && u8 && bl);
    for (size_t i = 0; i < count; i++) {
        uint64_t r = rng_next(&seed);
        i64[i] = i % 100 == 0 ? (i % 200 ? INT64_MIN : INT64_MAX) : (int64_t)(r % 2001) - 1000;
        i32[i] = i % 100 == 0 ? INT32_MIN : (int32_t)(r % 65536) - 32768;
        i16[i] = (int16_t)(r >> 20);
        i8[i] = (int8_t)(r % 7) - 3;
        u8[i] = (uint8_t)(r >> 40);
        bl[i] = (uint8_t)(r >> 63);
    }
    i64b = dup_exact(i64, count * 8);
    for (size_t i = 0; i < count; i += 3)
        i64b[i] = (int64_t)((uint64_t)i64b[i] + 1);
    roundtrip_all_modes(c, 8, i64, count * 8, i64b, count * 8);
    roundtrip_all_modes(c, 4, i32, count * 4, NULL, 0);
    roundtrip_all_modes(c, 2, i16, count * 2, NULL, 0);
    roundtrip_all_modes(c, 1, i8, count, NULL, 0);
    roundtrip_all_modes(c, 1, u8, count, NULL, 0);
    roundtrip_all_modes(c, 1, bl, count, u8, count);
    /* Small integers and booleans are mostly zero bytes: planes must pay. */
    assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 1, 8, i64, count * 8, NULL, 0, NULL),
                     CKPT__CODEC_PLANES);
    assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 1, 1, bl, count, NULL, 0, NULL),
                     CKPT__CODEC_PLANES);
    free(i64);
    free(i64b);
    free(i32);
    free(i16);
    free(i8);
    free(u8);
    free(bl);
}

static void test_codec__all_zero_chunk_compresses_to_almost_nothing(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t n = 1 << 20, len = 0;
    uint8_t *z = calloc(1, n);
    assert_non_null(z);
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 1, all_es[k], z, n, NULL, 0, &len),
                         CKPT__CODEC_PLANES);
        assert_true(len < 300);
        roundtrip_all_modes(c, all_es[k], z, n - 3, z, n);
    }
    free(z);
}

static void test_codec__random_bytes_stay_raw_in_every_mode(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t n = 300000;
    uint8_t *r = malloc(n), *b = malloc(n);
    assert_true(r && b);
    tu_fill_random(r, n, 7);
    tu_fill_random(b, n, 8);
    for (size_t k = 0; k < 4; k++)
        for (size_t m = 0; m < 4; m++)
            assert_int_equal(roundtrip(c, all_modes[m], 1, all_es[k], r, n, b, n, NULL),
                             CKPT__CODEC_RAW);
    free(r);
    free(b);
}

static void test_codec__odd_and_tiny_lengths_roundtrip(void **state)
{
    ckpt__codec_ctx *c = *state;
    static const size_t lens[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 17, 63, 64, 65, 127, 511,
                                  513, 1023, 4097, 8195, 65537};
    size_t maxn = 65537 + 64;
    uint8_t *d = malloc(maxn), *b = malloc(maxn);
    uint64_t seed = 9;
    assert_true(d && b);
    /* Compressible bytes (small values), so long-enough chunks take the planes path. */
    for (size_t i = 0; i < maxn; i++)
        d[i] = (uint8_t)(rng_next(&seed) % 5);
    memcpy(b, d, maxn);
    for (size_t i = 0; i < maxn; i += 11)
        b[i] ^= 0x10;
    for (size_t k = 0; k < 4; k++)
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            size_t n = lens[l];
            roundtrip_all_modes(c, all_es[k], d, n, b, n);
            roundtrip_all_modes(c, all_es[k], d, n, b, n + 7);
            if (n > 3)
                roundtrip_all_modes(c, all_es[k], d, n, b, n - 3);
            /* Long enough for planes: the tail bytes go through them. */
            if (n >= 4097)
                assert_int_equal(roundtrip(c, CKPT_CODEC_PLANES, 1, all_es[k], d, n, NULL, 0,
                                           NULL),
                                 CKPT__CODEC_PLANES);
        }
    free(d);
    free(b);
}

static void test_codec__delta_base_shorter_or_longer_than_chunk(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t count = 20000, n = count * 4;
    float *a = trained_f32(count + 1100, 11);
    uint8_t *src = (uint8_t *)a;
    uint8_t *base = dup_exact(src, n + 4400);
    /* The base is the same chunk with a few weights nudged. */
    for (size_t i = 0; i < count; i += 97)
        base[i * 4] ^= 3;
    /* Lengths ending inside an element, on element boundaries, far shorter, longer. */
    static const size_t delta_of[] = {0, 1, 2, 3, 4, 5, 41, 4001};
    for (size_t i = 0; i < sizeof delta_of / sizeof delta_of[0]; i++) {
        size_t shorter = n - delta_of[i], longer = n + delta_of[i];
        assert_int_equal(roundtrip(c, CKPT_CODEC_DELTA, 1, 4, src, n, base, shorter, NULL),
                         CKPT__CODEC_DELTA);
        assert_int_equal(roundtrip(c, CKPT_CODEC_DELTA, 1, 4, src, n, base, longer, NULL),
                         CKPT__CODEC_DELTA);
        /* Chunk not a multiple of the element size against either. */
        roundtrip(c, CKPT_CODEC_DELTA, 1, 4, src, n - 1, base, shorter, NULL);
        roundtrip(c, CKPT_CODEC_DELTA, 1, 4, src, n - 3, base, longer, NULL);
    }
    /* A base of a few bytes only: XOR touches those, the rest is planes as is. */
    roundtrip_all_modes(c, 4, src, n, base, 1);
    roundtrip_all_modes(c, 4, src, n, base, 6);
    free(a);
    free(base);
}

static void test_codec__higher_levels_roundtrip(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t count = 30000;
    float *a = trained_f32(count, 12), *b = updated_f32(a, count, 13);
    static const int levels[] = {2, 3, 9, 19};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        roundtrip(c, CKPT_CODEC_AUTO, levels[i], 4, b, count * 4, a, count * 4, NULL);
        roundtrip(c, CKPT_CODEC_PLANES, levels[i], 4, a, count * 4 - 2, NULL, 0, NULL);
    }
    free(a);
    free(b);
}

/* ---------------------------------------------------------------- choices */

/* Auto at level 1 stores trained float32 raw (planes would save less than a
 * quarter and halve restore speed); planes mode and higher levels take the
 * ~1.2x. */
static void test_codec__trained_f32_raw_at_auto_level1_planes_otherwise(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t count = 1 << 18, n = count * 4, len = 0;
    float *a = trained_f32(count, 21);
    assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 1, 4, a, n, NULL, 0, &len), CKPT__CODEC_RAW);
    assert_int_equal(len, n);
    assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 3, 4, a, n, NULL, 0, &len),
                     CKPT__CODEC_PLANES);
    assert_int_equal(roundtrip(c, CKPT_CODEC_PLANES, 1, 4, a, n, NULL, 0, &len),
                     CKPT__CODEC_PLANES);
    /* ~1.2x measured: the exponent plane shrinks ~3x, mantissa planes stay raw. */
    assert_true((double)n / (double)len > 1.12);
    assert_true((double)n / (double)len < 1.4);
    printf("# trained f32, 1 MiB: planes %.3fx\n", (double)n / (double)len);
    free(a);
}

static void test_codec__auto_picks_delta_for_small_updates(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t count = 1 << 18, n = count * 4, len_planes = 0, len_delta = 0;
    float *a = trained_f32(count, 22), *b = updated_f32(a, count, 23);
    assert_int_equal(roundtrip(c, CKPT_CODEC_PLANES, 1, 4, b, n, NULL, 0, &len_planes),
                     CKPT__CODEC_PLANES);
    assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 1, 4, b, n, a, n, &len_delta),
                     CKPT__CODEC_DELTA);
    assert_true(len_delta < len_planes - len_planes / 32);
    /* PLANES mode ignores the base. */
    assert_int_equal(roundtrip(c, CKPT_CODEC_PLANES, 1, 4, b, n, a, n, NULL),
                     CKPT__CODEC_PLANES);
    printf("# f32 one step apart: planes %.3fx, delta %.3fx\n", (double)n / len_planes,
           (double)n / len_delta);
    free(a);
    free(b);
}

static void test_codec__auto_picks_delta_for_bf16_small_updates(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t count = 1 << 18, n = count * 2, len = 0;
    float *a = trained_f32(count, 24), *b = updated_f32(a, count, 25);
    uint16_t *ha = to_bf16(a, count), *hb = to_bf16(b, count);
    assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 1, 2, hb, n, ha, n, &len),
                     CKPT__CODEC_DELTA);
    assert_true((double)n / (double)len > 2.0);
    printf("# bf16 one step apart: delta %.3fx\n", (double)n / len);
    free(a);
    free(b);
    free(ha);
    free(hb);
}

static void test_codec__auto_ignores_an_unrelated_base(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t count = 1 << 16, n = count * 4;
    float *a = trained_f32(count, 26), *other = trained_f32(count, 27);
    /* no delta: raw at level 1 (planes save too little), planes at 3 */
    assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 1, 4, a, n, other, n, NULL), CKPT__CODEC_RAW);
    assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 3, 4, a, n, other, n, NULL),
                     CKPT__CODEC_PLANES);
    free(a);
    free(other);
}

static void test_codec__identical_base_gives_tiny_delta(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t count = 1 << 18, n = count * 4, len = 0;
    float *a = trained_f32(count, 28);
    assert_int_equal(roundtrip(c, CKPT_CODEC_DELTA, 1, 4, a, n, a, n, &len), CKPT__CODEC_DELTA);
    assert_true(len < 300);
    free(a);
}

static void test_codec__integer_ranges_use_lz_not_only_entropy(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t count = 1 << 17, len = 0;
    int64_t *r = malloc(count * 8);
    assert_non_null(r);
    for (size_t i = 0; i < count; i++)
        r[i] = (int64_t)i;
    /* Entropy coding alone gets ~10x on this; LZ ~900x. */
    assert_int_equal(roundtrip(c, CKPT_CODEC_AUTO, 1, 8, r, count * 8, NULL, 0, &len),
                     CKPT__CODEC_PLANES);
    assert_true(len * 100 < count * 8);
    free(r);
}

/* ---------------------------------------------------------------- corrupt input */

/* Returns the decoder's verdict on a payload copied to an exact-size buffer. */
static int decode_rc(ckpt__codec_ctx *c, int codec, const uint8_t *p, size_t pn,
                     const void *base, size_t base_n, size_t n)
{
    uint8_t *cp = dup_exact(p, pn), *dst = malloc(n ? n : 1);
    int rc;
    assert_non_null(dst);
    rc = ckpt__codec_decode(c, codec, cp, pn, base, base_n, dst, n);
    free(cp);
    free(dst);
    return rc;
}

static void corrupt_checks(ckpt__codec_ctx *c, const encoded *e, const void *base,
                           size_t base_n, size_t n, size_t es)
{
    size_t hl = 12 + 5 * es;
    uint8_t *p = dup_exact(e->p, e->n);
    /* Every truncation: the plane lengths no longer add up. */
    for (size_t len = 0; len < e->n; len++)
        assert_int_equal(decode_rc(c, e->codec, p, len, base, base_n, n), CKPT_ECORRUPT);
    /* A byte too many. */
    {
        uint8_t *longer = malloc(e->n + 1);
        assert_non_null(longer);
        memcpy(longer, p, e->n);
        longer[e->n] = 0;
        assert_int_equal(decode_rc(c, e->codec, longer, e->n + 1, base, base_n, n),
                         CKPT_ECORRUPT);
        free(longer);
    }
    /* Every single-bit flip in the header is caught. */
    for (size_t i = 0; i < hl; i++)
        for (int bit = 0; bit < 8; bit++) {
            p[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(decode_rc(c, e->codec, p, e->n, base, base_n, n), CKPT_ECORRUPT);
            p[i] ^= (uint8_t)(1u << bit);
        }
    /* Flips in the body: a clean error or some bytes, never a crash. */
    for (size_t i = hl; i < e->n; i++) {
        p[i] ^= (uint8_t)(1u << (i % 8));
        int rc = decode_rc(c, e->codec, p, e->n, base, base_n, n);
        assert_true(rc == CKPT_OK || rc == CKPT_ECORRUPT);
        p[i] ^= (uint8_t)(1u << (i % 8));
    }
    /* Wrong chunk length or codec id. */
    assert_int_equal(decode_rc(c, e->codec, p, e->n, base, base_n, n + 1), CKPT_ECORRUPT);
    assert_int_equal(decode_rc(c, e->codec, p, e->n, base, base_n, n - 1), CKPT_ECORRUPT);
    assert_int_equal(decode_rc(c, e->codec == CKPT__CODEC_PLANES ? CKPT__CODEC_DELTA
                                                                 : CKPT__CODEC_PLANES,
                               p, e->n, base ? base : p, base ? base_n : 1, n),
                     CKPT_ECORRUPT);
    assert_int_equal(decode_rc(c, CKPT__CODEC_RAW, p, e->n, base, base_n, n), CKPT_ECORRUPT);
    assert_int_equal(decode_rc(c, 0, p, e->n, base, base_n, n), CKPT_ECORRUPT);
    assert_int_equal(decode_rc(c, 4, p, e->n, base, base_n, n), CKPT_ECORRUPT);
    assert_int_equal(decode_rc(c, -1, p, e->n, base, base_n, n), CKPT_ECORRUPT);
    free(p);
}

static void test_codec__decode_rejects_truncated_and_flipped_payloads(void **state)
{
    ckpt__codec_ctx *c = *state;
    size_t count = 1003, n = count * 4 + 3; /* with 3 trailing bytes */
    float *a = trained_f32(count + 1, 31), *b = updated_f32(a, count + 1, 32);
    encoded pe = encode_ok(c, CKPT_CODEC_PLANES, 1, 4, a, n, NULL, 0);
    encoded de = encode_ok(c, CKPT_CODEC_DELTA, 1, 4, b, n, a, n);
    assert_int_equal(pe.codec, CKPT__CODEC_PLANES);
    assert_int_equal(de.codec, CKPT__CODEC_DELTA);
    corrupt_checks(c, &pe, NULL, 0, n, 4);
    corrupt_checks(c, &de, a, n, n, 4);
    /* Delta: the base must be there and be the one it was encoded against. */
    assert_int_equal(decode_rc(c, CKPT__CODEC_DELTA, de.p, de.n, NULL, 0, n), CKPT_EINVAL);
    assert_int_equal(decode_rc(c, CKPT__CODEC_DELTA, de.p, de.n, a, n - 1, n), CKPT_ECORRUPT);
    assert_non_null(strstr(ckpt_errmsg(), "base"));
    free(pe.p);
    free(de.p);
    free(a);
    free(b);
}

static void test_codec__decode_rejects_raw_length_mismatch_and_huge_chunks(void **state)
{
    ckpt__codec_ctx *c = *state;
    uint8_t p[16] = {0}, dst[17];
    assert_int_equal(ckpt__codec_decode(c, CKPT__CODEC_RAW, p, 16, NULL, 0, dst, 16), CKPT_OK);
    assert_int_equal(ckpt__codec_decode(c, CKPT__CODEC_RAW, p, 16, NULL, 0, dst, 17),
                     CKPT_ECORRUPT);
    assert_int_equal(ckpt__codec_decode(c, CKPT__CODEC_RAW, p, 15, NULL, 0, dst, 16),
                     CKPT_ECORRUPT);
    /* A chunk length beyond the maximum is refused before dst is touched. */
    assert_int_equal(
        ckpt__codec_decode(c, CKPT__CODEC_PLANES, p, 16, NULL, 0, dst, CKPT__CODEC_MAX_N + 1),
        CKPT_ECORRUPT);
    assert_non_null(strstr(ckpt_errmsg(), "exceeds"));
}

/* Builds a PLANES header for n bytes of width es with the given plane
 * descriptors, followed by body. */
static size_t craft(uint8_t *out, size_t es, uint32_t n, const uint8_t *modes,
                    const uint32_t *lens, const uint8_t *body, size_t body_n)
{
    size_t o = 12;
    out[0] = 1;
    out[1] = CKPT__CODEC_PLANES;
    out[2] = (uint8_t)es;
    out[3] = 0;
    memcpy(out + 4, &n, 4);
    memset(out + 8, 0, 4);
    for (size_t k = 0; k < es; k++) {
        out[o++] = modes[k];
        memcpy(out + o, &lens[k], 4);
        o += 4;
    }
    memcpy(out + o, body, body_n);
    return o + body_n;
}

static void test_codec__decode_rejects_crafted_plane_descriptors(void **state)
{
    ckpt__codec_ctx *c = *state;
    uint8_t buf[4096], body[2048], frame[2048];
    size_t n = 1024, pn;
    memset(body, 0x5a, sizeof body);
    {
        /* Sane: two raw planes of 512 bytes decode. */
        uint8_t modes[2] = {0, 0};
        uint32_t lens[2] = {512, 512};
        pn = craft(buf, 2, (uint32_t)n, modes, lens, body, 1024);
        assert_int_equal(decode_rc(c, CKPT__CODEC_PLANES, buf, pn, NULL, 0, n), CKPT_OK);
    }
    {
        /* Lengths that would wrap a 32-bit sum, with a body that matches the wrap. */
        uint8_t modes[2] = {1, 1};
        uint32_t lens[2] = {0xffffffffu, 513};
        pn = craft(buf, 2, (uint32_t)n, modes, lens, body, 512);
        assert_int_equal(decode_rc(c, CKPT__CODEC_PLANES, buf, pn, NULL, 0, n), CKPT_ECORRUPT);
    }
    {
        /* A zstd plane whose frame holds more bytes than the plane. */
        size_t fl = ZSTD_compress(frame, sizeof frame, body, 600, 1);
        uint8_t modes[2] = {1, 0};
        uint32_t lens[2] = {(uint32_t)fl, 512};
        uint8_t both[2048];
        assert_false(ZSTD_isError(fl));
        memcpy(both, frame, fl);
        memcpy(both + fl, body, 512);
        pn = craft(buf, 2, (uint32_t)n, modes, lens, both, fl + 512);
        assert_int_equal(decode_rc(c, CKPT__CODEC_PLANES, buf, pn, NULL, 0, n), CKPT_ECORRUPT);
        assert_non_null(strstr(ckpt_errmsg(), "zstd plane 0"));
    }
    {
        /* A zstd plane whose frame holds fewer bytes than the plane. */
        size_t fl = ZSTD_compress(frame, sizeof frame, body, 500, 1);
        uint8_t modes[2] = {1, 0};
        uint32_t lens[2] = {(uint32_t)fl, 512};
        uint8_t both[2048];
        memcpy(both, frame, fl);
        memcpy(both + fl, body, 512);
        pn = craft(buf, 2, (uint32_t)n, modes, lens, both, fl + 512);
        assert_int_equal(decode_rc(c, CKPT__CODEC_PLANES, buf, pn, NULL, 0, n), CKPT_ECORRUPT);
    }
    {
        /* Garbage where a zstd frame should be. */
        uint8_t modes[2] = {1, 0};
        uint32_t lens[2] = {100, 512};
        pn = craft(buf, 2, (uint32_t)n, modes, lens, body, 612);
        assert_int_equal(decode_rc(c, CKPT__CODEC_PLANES, buf, pn, NULL, 0, n), CKPT_ECORRUPT);
    }
    {
        /* Unknown plane mode; zero-length zstd plane. */
        uint8_t modes[2] = {2, 0};
        uint32_t lens[2] = {512, 512};
        pn = craft(buf, 2, (uint32_t)n, modes, lens, body, 1024);
        assert_int_equal(decode_rc(c, CKPT__CODEC_PLANES, buf, pn, NULL, 0, n), CKPT_ECORRUPT);
        modes[0] = 1;
        lens[0] = 0;
        pn = craft(buf, 2, (uint32_t)n, modes, lens, body, 512);
        assert_int_equal(decode_rc(c, CKPT__CODEC_PLANES, buf, pn, NULL, 0, n), CKPT_ECORRUPT);
    }
    {
        /* Element size 3 and 16. */
        uint8_t modes[8] = {0};
        uint32_t lens[8] = {0};
        pn = craft(buf, 2, (uint32_t)n, modes, lens, body, 0);
        buf[2] = 3;
        assert_int_equal(decode_rc(c, CKPT__CODEC_PLANES, buf, pn, NULL, 0, n), CKPT_ECORRUPT);
        buf[2] = 16;
        assert_int_equal(decode_rc(c, CKPT__CODEC_PLANES, buf, pn, NULL, 0, n), CKPT_ECORRUPT);
    }
}

static void test_codec__decode_survives_random_garbage(void **state)
{
    ckpt__codec_ctx *c = *state;
    uint8_t buf[600], base[300];
    uint64_t seed = 41;
    tu_fill_random(base, sizeof base, 42);
    for (int iter = 0; iter < 3000; iter++) {
        size_t pn = rng_next(&seed) % sizeof buf, n = rng_next(&seed) % 700;
        int codec = (int)(rng_next(&seed) % 5);
        tu_fill_random(buf, pn, rng_next(&seed));
        /* Often a plausible header, so the checks past it run too. */
        if (pn >= 12 && iter % 2) {
            size_t es = all_es[iter / 2 % 4];
            buf[0] = 1;
            buf[1] = (uint8_t)(codec == 3 ? 3 : 2);
            buf[2] = (uint8_t)es;
            buf[3] = 0;
            memcpy(buf + 4, &(uint32_t){(uint32_t)n}, 4);
            memcpy(buf + 8, &(uint32_t){codec == 3 ? 300u : 0u}, 4);
            for (size_t k = 0; k < es && 12 + 5 * k + 5 <= pn; k++)
                buf[12 + 5 * k] &= 1;
        }
        int rc = decode_rc(c, codec, buf, pn, base, sizeof base, n);
        assert_true(rc == CKPT_OK || rc == CKPT_ECORRUPT);
    }
}

/* ---------------------------------------------------------------- arguments */

static void test_codec__encode_rejects_bad_arguments(void **state)
{
    ckpt__codec_ctx *c = *state;
    uint8_t src[256] = {0}, dst[256 + CKPT__CODEC_HDR_MAX];
    int codec;
    size_t n;
    assert_int_equal(ckpt__codec_encode(c, 0, 1, 3, src, 256, NULL, 0, dst, sizeof dst, &codec,
                                        &n),
                     CKPT_EINVAL);
    assert_int_equal(ckpt__codec_encode(c, 0, 0, 4, src, 256, NULL, 0, dst, sizeof dst, &codec,
                                        &n),
                     CKPT_EINVAL);
    assert_int_equal(ckpt__codec_encode(c, 0, 20, 4, src, 256, NULL, 0, dst, sizeof dst, &codec,
                                        &n),
                     CKPT_EINVAL);
    assert_int_equal(ckpt__codec_encode(c, 9, 1, 4, src, 256, NULL, 0, dst, sizeof dst, &codec,
                                        &n),
                     CKPT_EINVAL);
    assert_int_equal(ckpt__codec_encode(c, 0, 1, 4, src, 256, NULL, 5, dst, sizeof dst, &codec,
                                        &n),
                     CKPT_EINVAL);
    assert_int_equal(ckpt__codec_encode(c, 0, 1, 4, src, CKPT__CODEC_MAX_N + 1, NULL, 0, dst,
                                        sizeof dst, &codec, &n),
                     CKPT_EINVAL);
    /* Below the bound: refused, even though this chunk would shrink. */
    assert_int_equal(ckpt__codec_encode(c, 0, 1, 4, src, 256, NULL, 0, dst, 256, &codec, &n),
                     CKPT_ERANGE);
    /* RAW needs n bytes only. */
    assert_int_equal(ckpt__codec_encode(c, CKPT_CODEC_RAW, 1, 4, src, 256, NULL, 0, dst, 256,
                                        &codec, &n),
                     CKPT_OK);
    assert_int_equal(ckpt__codec_encode(c, CKPT_CODEC_RAW, 1, 4, src, 256, NULL, 0, dst, 255,
                                        &codec, &n),
                     CKPT_ERANGE);
    assert_int_equal(ckpt__codec_bound(1000), 1000 + CKPT__CODEC_HDR_MAX);
    assert_string_equal(ckpt__codec_name(CKPT__CODEC_RAW), "raw");
    assert_string_equal(ckpt__codec_name(CKPT__CODEC_PLANES), "planes");
    assert_string_equal(ckpt__codec_name(CKPT__CODEC_DELTA), "delta");
    assert_string_equal(ckpt__codec_name(99), "unknown");
}

/* ---------------------------------------------------------------- memory */

static long g_allocs;
static long g_fail_at; /* fail the g_fail_at-th allocation (1-based); 0 = never */

static void *count_malloc(void *ctx, size_t n)
{
    (void)ctx;
    if (g_fail_at && ++g_allocs == g_fail_at)
        return NULL;
    if (!g_fail_at)
        g_allocs++;
    return malloc(n);
}
static void *count_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (g_fail_at && ++g_allocs == g_fail_at)
        return NULL;
    if (!g_fail_at)
        g_allocs++;
    return realloc(p, n);
}
static void count_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}
static const ckpt_allocator counting = {count_malloc, count_realloc, count_free, NULL};

static void test_codec__steady_state_encode_decode_allocate_nothing(void **state)
{
    ckpt__codec_ctx *c;
    size_t count = 1 << 18, n = count * 4;
    float *a = trained_f32(count, 51), *b = updated_f32(a, count, 52);
    uint8_t *enc = malloc(ckpt__codec_bound(n)), *dec = malloc(n);
    int codec;
    size_t len;
    assert_true(enc && dec);
    g_allocs = 0;
    g_fail_at = 0;
    ckpt__set_allocator_only(&counting);
    assert_int_equal(ckpt__codec_ctx_new(&c), CKPT_OK);
    for (int round = 0; round < 3; round++) {
        if (round == 2)
            g_allocs = 0; /* the first two rounds may size the buffers */
        for (size_t sz = n; sz >= 1000; sz /= 3) {
            assert_int_equal(ckpt__codec_encode(c, CKPT_CODEC_AUTO, 1, 4, b, sz, a, sz, enc,
                                                ckpt__codec_bound(n), &codec, &len),
                             CKPT_OK);
            assert_int_equal(ckpt__codec_decode(c, codec, enc, len, a, sz, dec, sz), CKPT_OK);
            assert_int_equal(ckpt__codec_encode(c, CKPT_CODEC_AUTO, 1, 4, a, sz, NULL, 0, enc,
                                                ckpt__codec_bound(n), &codec, &len),
                             CKPT_OK);
            assert_int_equal(ckpt__codec_decode(c, codec, enc, len, NULL, 0, dec, sz), CKPT_OK);
        }
    }
    assert_int_equal(g_allocs, 0);
    ckpt__codec_ctx_free(c);
    ckpt__set_allocator_only(NULL);
    free(a);
    free(b);
    free(enc);
    free(dec);
}

static void test_codec__allocation_failures_return_enomem(void **state)
{
    size_t count = 1 << 16, n = count * 4;
    float *a = trained_f32(count, 61), *b = updated_f32(a, count, 62);
    uint8_t *enc = malloc(ckpt__codec_bound(n)), *dec = malloc(n);
    int done = 0;
    assert_true(enc && dec);
    for (long k = 1; k < 200 && !done; k++) {
        ckpt__codec_ctx *c = NULL;
        int rc, codec = 0;
        size_t len = 0;
        g_allocs = 0;
        g_fail_at = k;
        ckpt__set_allocator_only(&counting);
        rc = ckpt__codec_ctx_new(&c);
        if (rc == CKPT_OK)
            rc = ckpt__codec_encode(c, CKPT_CODEC_AUTO, 1, 4, b, n, a, n, enc,
                                    ckpt__codec_bound(n), &codec, &len);
        if (rc == CKPT_OK)
            rc = ckpt__codec_decode(c, codec, enc, len, a, n, dec, n);
        ckpt__codec_ctx_free(c);
        ckpt__set_allocator_only(NULL);
        if (rc == CKPT_OK) {
            assert_memory_equal(dec, b, n);
            done = 1;
        } else {
            assert_int_equal(rc, CKPT_ENOMEM);
        }
    }
    g_fail_at = 0;
    assert_true(done);
    free(a);
    free(b);
    free(enc);
    free(dec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec__raw_mode_payload_is_the_bytes_unchanged),
        cmocka_unit_test(test_codec__f32_roundtrip_nan_payloads_inf_denormals_negzero),
        cmocka_unit_test(test_codec__f64_roundtrip_nan_payloads_inf_denormals_negzero),
        cmocka_unit_test(test_codec__f16_roundtrip_nan_payloads_inf_denormals_negzero),
        cmocka_unit_test(test_codec__bf16_roundtrip_nan_payloads_inf_denormals_negzero),
        cmocka_unit_test(test_codec__integer_and_bool_dtypes_roundtrip),
        cmocka_unit_test(test_codec__all_zero_chunk_compresses_to_almost_nothing),
        cmocka_unit_test(test_codec__random_bytes_stay_raw_in_every_mode),
        cmocka_unit_test(test_codec__odd_and_tiny_lengths_roundtrip),
        cmocka_unit_test(test_codec__delta_base_shorter_or_longer_than_chunk),
        cmocka_unit_test(test_codec__higher_levels_roundtrip),
        cmocka_unit_test(test_codec__trained_f32_raw_at_auto_level1_planes_otherwise),
        cmocka_unit_test(test_codec__auto_picks_delta_for_small_updates),
        cmocka_unit_test(test_codec__auto_picks_delta_for_bf16_small_updates),
        cmocka_unit_test(test_codec__auto_ignores_an_unrelated_base),
        cmocka_unit_test(test_codec__identical_base_gives_tiny_delta),
        cmocka_unit_test(test_codec__integer_ranges_use_lz_not_only_entropy),
        cmocka_unit_test(test_codec__decode_rejects_truncated_and_flipped_payloads),
        cmocka_unit_test(test_codec__decode_rejects_raw_length_mismatch_and_huge_chunks),
        cmocka_unit_test(test_codec__decode_rejects_crafted_plane_descriptors),
        cmocka_unit_test(test_codec__decode_survives_random_garbage),
        cmocka_unit_test(test_codec__encode_rejects_bad_arguments),
        cmocka_unit_test(test_codec__steady_state_encode_decode_allocate_nothing),
        cmocka_unit_test(test_codec__allocation_failures_return_enomem),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
