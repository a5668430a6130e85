/*
 * test_safetensors.c - the safetensors header parser/validator (one test per
 * rule an untrusted file can break), the header writer, and import/export
 * through a store.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

#include "testutil.h"

#include "ckpt.h"
#include "error.h"
#include "safetensors.h"

#define FNAME "m.safetensors"

static int parse(const char *json, uint64_t data_size, ckpt__st_header *h)
{
    return ckpt__st_parse_header(json, strlen(json), data_size, FNAME, h);
}

/* json must be rejected with CKPT_EINVAL, the message naming the file and
 * containing frag (and frag2 if given). */
static void expect_bad(const char *json, uint64_t data_size, const char *frag, const char *frag2)
{
    ckpt__st_header h;
    int rc = parse(json, data_size, &h);
    const char *msg = ckpt_errmsg();
    int ok = rc == CKPT_EINVAL && strstr(msg, FNAME) && strstr(msg, frag) &&
             (!frag2 || strstr(msg, frag2));
    if (!ok) {
        print_error("json: %s\nrc=%d msg: %s\nwanted: \"%s\" \"%s\"\n", json, rc, msg, frag,
                    frag2 ? frag2 : "");
        if (rc == CKPT_OK)
            ckpt__st_header_free(&h);
        fail();
    }
    /* a failed parse leaves nothing to free */
    assert_null(h.t);
    assert_null(h.pool);
    assert_int_equal(h.n, 0);
}

/* A file image: 8-byte length, json padded with spaces to pad_to bytes (0:
 * no padding), then dn bytes of data. */
static unsigned char *mkfile(const char *json, size_t pad_to, const void *data, size_t dn,
                             size_t *size)
{
    size_t jn = strlen(json), n = jn > pad_to ? jn : pad_to;
    unsigned char *b = malloc(8 + n + dn);
    assert_non_null(b);
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)((uint64_t)n >> (8 * k));
    memcpy(b + 8, json, jn);
    memset(b + 8 + jn, ' ', n - jn);
    if (dn)
        memcpy(b + 8 + n, data, dn);
    *size = 8 + n + dn;
    return b;
}

/* ------------------------------------------------------------ valid input */

static void test_st__parses_tensors_in_header_order_with_metadata(void **state)
{
    (void)state;
    ckpt__st_header h;
    const char *json =
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]},"
        "\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
        "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}";
    assert_int_equal(parse(json, 32, &h), CKPT_OK);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.t[0].name, "w");
    assert_int_equal(h.t[0].dtype, CKPT_F32);
    assert_int_equal(h.t[0].ndim, 2);
    assert_int_equal(h.t[0].shape[0], 2);
    assert_int_equal(h.t[0].shape[1], 3);
    assert_int_equal(h.t[0].begin, 8);
    assert_int_equal(h.t[0].end, 32);
    assert_string_equal(h.t[1].name, "b");
    assert_int_equal(h.t[1].dtype, CKPT_I64);
    assert_int_equal(h.t[1].begin, 0);
    assert_int_equal(h.t[1].end, 8);
    assert_int_equal(h.nmeta, 2);
    assert_string_equal(h.meta_key[0], "format");
    assert_string_equal(h.meta_val[0], "pt");
    assert_string_equal(h.meta_key[1], "note");
    assert_string_equal(h.meta_val[1], "x");
    assert_int_equal(h.header_len, strlen(json));
    ckpt__st_header_free(&h);
    assert_null(h.t);
    ckpt__st_header_free(&h); /* idempotent */
}

/* The example file from the reference implementation's documentation:
 * unpadded 60-byte header, I32 [2,2]. */
static void test_st__reference_example_file_is_accepted(void **state)
{
    (void)state;
    static const char file[] =
        "<\0\0\0\0\0\0\0"
        "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}"
        "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    ckpt__st_header h;
    assert_int_equal(ckpt__st_parse_file(file, sizeof file - 1, FNAME, &h), CKPT_OK);
    assert_int_equal(h.header_len, 60);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.t[0].name, "test");
    assert_int_equal(h.t[0].dtype, CKPT_I32);
    assert_int_equal(h.t[0].ndim, 2);
    assert_int_equal(h.t[0].end, 16);
    assert_int_equal(h.nmeta, 0);
    ckpt__st_header_free(&h);
}

static void test_st__space_padded_header_is_accepted(void **state)
{
    (void)state;
    const char *json = "{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}";
    size_t size;
    unsigned char *f = mkfile(json, 64, "xyz", 3, &size);
    ckpt__st_header h;
    assert_int_equal(ckpt__st_parse_file(f, size, FNAME, &h), CKPT_OK);
    assert_int_equal(h.header_len, 64);
    assert_int_equal(h.t[0].dtype, CKPT_U8);
    ckpt__st_header_free(&h);
    free(f);
}

static void test_st__json_whitespace_between_tokens_is_accepted(void **state)
{
    (void)state;
    ckpt__st_header h;
    assert_int_equal(parse("{ \"a\" :\t{\n\"dtype\" : \"BOOL\" ,\r\n \"shape\" : [ ] ,"
                           " \"data_offsets\" : [ 0 , 1 ] } }\n\t ",
                           1, &h),
                     CKPT_OK);
    assert_int_equal(h.t[0].dtype, CKPT_BOOL);
    assert_int_equal(h.t[0].ndim, 0);
    ckpt__st_header_free(&h);
}

static void test_st__every_supported_dtype_maps_with_its_size(void **state)
{
    (void)state;
    static const struct {
        const char *st;
        int dtype;
        unsigned size;
    } tab[] = {{"F64", CKPT_F64, 8}, {"F32", CKPT_F32, 4}, {"F16", CKPT_F16, 2},
               {"BF16", CKPT_BF16, 2}, {"I64", CKPT_I64, 8}, {"I32", CKPT_I32, 4},
               {"I16", CKPT_I16, 2}, {"I8", CKPT_I8, 1},   {"U8", CKPT_U8, 1},
               {"BOOL", CKPT_BOOL, 1}};
    for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++) {
        char json[160];
        snprintf(json, sizeof json, "{\"t\":{\"dtype\":\"%s\",\"shape\":[5],\"data_offsets\":[0,%u]}}",
                 tab[k].st, 5 * tab[k].size);
        ckpt__st_header h;
        assert_int_equal(parse(json, 5 * tab[k].size, &h), CKPT_OK);
        assert_int_equal(h.t[0].dtype, tab[k].dtype);
        ckpt__st_header_free(&h);
        assert_string_equal(ckpt__st_dtype_name(tab[k].dtype), tab[k].st);
        assert_int_equal(ckpt__st_dtype_size(tab[k].dtype), tab[k].size);
        /* the size matters: one element too many is rejected */
        snprintf(json, sizeof json, "{\"t\":{\"dtype\":\"%s\",\"shape\":[5],\"data_offsets\":[0,%u]}}",
                 tab[k].st, 6 * tab[k].size);
        expect_bad(json, 6 * tab[k].size, "need", NULL);
    }
    assert_null(ckpt__st_dtype_name(0));
    assert_int_equal(ckpt__st_dtype_size(99), 0);
}

static void test_st__scalars_and_empty_tensors_tile_correctly(void **state)
{
    (void)state;
    ckpt__st_header h;
    /* a scalar, two empty tensors sharing an offset, an 8-D tensor */
    assert_int_equal(
        parse("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
              "\"e1\":{\"dtype\":\"F32\",\"shape\":[0,7],\"data_offsets\":[8,8]},"
              "\"e2\":{\"dtype\":\"I8\",\"shape\":[3,0],\"data_offsets\":[8,8]},"
              "\"d8\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[8,10]}}",
              10, &h),
        CKPT_OK);
    assert_int_equal(h.n, 4);
    assert_int_equal(h.t[0].ndim, 0);
    assert_int_equal(h.t[1].shape[1], 7);
    assert_int_equal(h.t[3].ndim, 8);
    ckpt__st_header_free(&h);
    /* no tensors at all, no data */
    assert_int_equal(parse("{}", 0, &h), CKPT_OK);
    assert_int_equal(h.n, 0);
    ckpt__st_header_free(&h);
    assert_int_equal(parse("{\"__metadata__\":{}}", 0, &h), CKPT_OK);
    assert_int_equal(h.n, 0);
    assert_int_equal(h.nmeta, 0);
    ckpt__st_header_free(&h);
}

static void test_st__string_escapes_decode_to_utf8(void **state)
{
    (void)state;
    ckpt__st_header h;
    assert_int_equal(
        parse("{\"__metadata__\":{\"k\":\"q\\\"b\\\\s\\/n\\nt\\tr\\rb\\bf\\f\"},"
              "\"caf\\u00e9\\u20ac\\ud83d\\ude00\\u0041\":"
              "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
              "\"raw\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\":"
              "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
              2, &h),
        CKPT_OK);
    assert_string_equal(h.meta_val[0], "q\"b\\s/n\nt\tr\rb\bf\f");
    assert_string_equal(h.t[0].name, "caf\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                                     "A");
    assert_string_equal(h.t[1].name, "raw\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    ckpt__st_header_free(&h);
}

static void test_st__u64_offsets_are_exact_up_to_the_maximum(void **state)
{
    (void)state;
    /* 2^64-1 parses as a number (then fails the size check), 2^64 does not */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
               "\"data_offsets\":[18446744073709551614,18446744073709551615]}}",
               1, "beyond the end", "18446744073709551615");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
               "\"data_offsets\":[0,18446744073709551616]}}",
               1, "data_offsets[1] is 18446744073709551616", "\"a\"");
    /* shape entries must fit in int64 */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,1]}}",
               1, "shape[0] is 9223372036854775808", NULL);
}

/* ------------------------------------------------------------ file sizes */

static void test_st__header_length_over_100mib_is_rejected(void **state)
{
    (void)state;
    uint64_t ds = 0;
    assert_int_equal(ckpt__st_check_sizes(UINT64_MAX, CKPT__ST_MAX_HEADER + 1, FNAME, &ds),
                     CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "header length 104857601"));
    assert_non_null(strstr(ckpt_errmsg(), FNAME));
    assert_int_equal(ckpt__st_check_sizes(UINT64_MAX, UINT64_MAX, FNAME, &ds), CKPT_EINVAL);
    /* exactly the limit is fine */
    assert_int_equal(ckpt__st_check_sizes(8 + CKPT__ST_MAX_HEADER, CKPT__ST_MAX_HEADER, FNAME, &ds),
                     CKPT_OK);
    assert_int_equal(ds, 0);
    /* and parse_header applies the cap too */
    char c = '{';
    ckpt__st_header h;
    assert_int_equal(ckpt__st_parse_header(&c, (size_t)CKPT__ST_MAX_HEADER + 1, 0, FNAME, &h),
                     CKPT_EINVAL);
}

static void test_st__header_length_beyond_file_is_rejected(void **state)
{
    (void)state;
    uint64_t ds = 0;
    assert_int_equal(ckpt__st_check_sizes(100, 93, FNAME, &ds), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "header length 93"));
    assert_non_null(strstr(ckpt_errmsg(), "92 bytes after it"));
    assert_int_equal(ckpt__st_check_sizes(100, 92, FNAME, &ds), CKPT_OK);
    assert_int_equal(ds, 0);
    assert_int_equal(ckpt__st_check_sizes(7, 0, FNAME, &ds), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "too short"));
    /* through a whole image: declared 200, present 60 */
    static const char file[] =
        "\xc8\0\0\0\0\0\0\0"
        "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    ckpt__st_header h;
    assert_int_equal(ckpt__st_parse_file(file, sizeof file - 1, FNAME, &h), CKPT_EINVAL);
    assert_int_equal(ckpt__st_parse_file(file, 5, FNAME, &h), CKPT_EINVAL);
}

static void test_st__file_longer_than_the_tensors_is_rejected(void **state)
{
    (void)state;
    const char *json = "{\"a\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    unsigned char data[5] = {1, 2, 3, 4, 5};
    size_t size;
    unsigned char *f = mkfile(json, 0, data, 5, &size);
    ckpt__st_header h;
    assert_int_equal(ckpt__st_parse_file(f, size, FNAME, &h), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "1 trailing bytes"));
    assert_int_equal(ckpt__st_parse_file(f, size - 1, FNAME, &h), CKPT_OK);
    ckpt__st_header_free(&h);
    free(f);
    expect_bad("{}", 3, "no tensors, but 3 bytes", NULL);
}

static void test_st__file_shorter_than_the_tensors_is_rejected(void **state)
{
    (void)state;
    const char *json = "{\"a\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    size_t size;
    unsigned char *f = mkfile(json, 0, "abcd", 4, &size);
    ckpt__st_header h;
    assert_int_equal(ckpt__st_parse_file(f, size - 1, FNAME, &h), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "beyond the end of the 3-byte data section"));
    assert_non_null(strstr(ckpt_errmsg(), "\"a\""));
    free(f);
}

/* ------------------------------------------------------------ JSON syntax */

static void test_st__invalid_json_is_rejected_with_its_offset(void **state)
{
    (void)state;
    /* file offset = 8 + index in the header */
    expect_bad("{\"a\" {}}", 0, "file offset 13", "expected ':'");
    expect_bad("{\"a\":{},}", 0, "file offset 16", "expected a string key");
    expect_bad("{'a':{}}", 0, "expected a string key", NULL);
    expect_bad("{\"a\":{}", 0, "unexpected end of header", NULL);
    expect_bad("{\"a", 0, "unterminated string", NULL);
    expect_bad("{\"a\":[1 2]}", 0, "expected ',' or ']'", NULL);
    expect_bad("{\"a\":[1,]}", 0, "unexpected character ']'", NULL);
    expect_bad("{\"a\":tru}", 0, "unexpected character", NULL);
    expect_bad("{\"a\":01}", 0, "leading zero", NULL);
    expect_bad("{\"a\":1.}", 0, "no digit after '.'", NULL);
    expect_bad("{\"a\":1e}", 0, "exponent", NULL);
    expect_bad("{\"a\":-}", 0, "invalid number", NULL);
    expect_bad("{\"a\":+1}", 0, "unexpected character '+'", NULL);
    expect_bad("{\"a\":\"x\ty\"}", 0, "control character 0x09", NULL);
    expect_bad("{\"a\":\"\\x\"}", 0, "invalid escape", NULL);
    expect_bad("", 0, "empty", NULL);
    expect_bad(" {}", 0, "does not start with '{'", NULL);
    expect_bad("[]", 0, "does not start with '{'", NULL);
    expect_bad("{\"a\":\x01}", 0, "unexpected byte 0x01", NULL);
}

static void test_st__trailing_garbage_is_rejected(void **state)
{
    (void)state;
    expect_bad("{}x", 0, "file offset 10", "after the end");
    expect_bad("{} {}", 0, "after the end", NULL);
    ckpt__st_header h;
    assert_int_equal(ckpt__st_parse_header("{}  \0", 5, 0, FNAME, &h), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "file offset 12"));
    assert_int_equal(parse("{} \t\r\n   ", 0, &h), CKPT_OK);
    ckpt__st_header_free(&h);
}

static void test_st__duplicate_keys_are_rejected(void **state)
{
    (void)state;
    /* duplicate tensor names */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
               3, "duplicate key \"a\"", "file offset 113");
    /* the same name once escaped, once raw */
    expect_bad("{\"\\u00e9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
               2, "duplicate key \"\xc3\xa9\"", NULL);
    /* inside a tensor entry */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"dtype\":\"I8\",\"data_offsets\":[0,1]}}",
               1, "duplicate key \"dtype\"", NULL);
    /* inside __metadata__, and __metadata__ twice */
    expect_bad("{\"__metadata__\":{\"k\":\"1\",\"j\":\"2\",\"k\":\"3\"}}", 0,
               "duplicate key \"k\"", NULL);
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key \"__metadata__\"",
               NULL);
    /* prefixes are not duplicates */
    ckpt__st_header h;
    assert_int_equal(parse("{\"__metadata__\":{\"k\":\"1\",\"kk\":\"2\",\"\":\"3\"}}", 0, &h),
                     CKPT_OK);
    assert_int_equal(h.nmeta, 3);
    ckpt__st_header_free(&h);
}

static void test_st__many_keys_duplicate_found_in_large_object(void **state)
{
    (void)state;
    /* 2000 tensors then a repeat of the 1000th: needs the sorted check */
    size_t cap = 2001 * 80 + 16, n = 0;
    char *json = malloc(cap);
    assert_non_null(json);
    n += (size_t)snprintf(json + n, cap - n, "{");
    for (int k = 0; k <= 2000; k++) {
        int id = k == 2000 ? 1000 : k;
        n += (size_t)snprintf(json + n, cap - n,
                              "%s\"t%d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                              k ? "," : "", id, k, k + 1);
    }
    snprintf(json + n, cap - n, "}");
    expect_bad(json, 2001, "duplicate key \"t1000\"", NULL);
    /* without the repeat it is valid */
    char *cut = strstr(json, ",\"t1000\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2000");
    assert_non_null(cut);
    memcpy(cut, "}", 2);
    ckpt__st_header h;
    assert_int_equal(parse(json, 2000, &h), CKPT_OK);
    assert_int_equal(h.n, 2000);
    assert_string_equal(h.t[1999].name, "t1999");
    ckpt__st_header_free(&h);
    free(json);
}

static void test_st__nesting_deeper_than_16_is_rejected(void **state)
{
    (void)state;
    char json[128];
    /* root object + 16 arrays = 17 levels */
    snprintf(json, sizeof json, "{\"a\":%.*s%.*s}", 16, "[[[[[[[[[[[[[[[[[[[[", 16,
             "]]]]]]]]]]]]]]]]]]]]");
    expect_bad(json, 0, "nested deeper than 16", "file offset 28");
    /* 16 levels is valid JSON; the schema then rejects it */
    snprintf(json, sizeof json, "{\"a\":%.*s%.*s}", 15, "[[[[[[[[[[[[[[[[[[[[", 15,
             "]]]]]]]]]]]]]]]]]]]]");
    expect_bad(json, 0, "entry is an array", NULL);
    /* a hostile depth far beyond the cap must not recurse that deep */
    size_t deep = 100000;
    char *big = malloc(deep + 8);
    assert_non_null(big);
    memcpy(big, "{\"a\":", 5);
    memset(big + 5, '[', deep);
    big[5 + deep] = 0;
    expect_bad(big, 0, "nested deeper", NULL);
    free(big);
}

static void test_st__arrays_longer_than_64_items_are_rejected(void **state)
{
    (void)state;
    char json[512];
    size_t n = (size_t)snprintf(json, sizeof json, "{\"a\":[0");
    for (int k = 1; k < 65; k++)
        n += (size_t)snprintf(json + n, sizeof json - n, ",0");
    snprintf(json + n, sizeof json - n, "]}");
    expect_bad(json, 0, "array of more than 64 items", "file offset 13");
    /* 64 is fine as JSON (the schema then says what is wrong) */
    memcpy(strstr(json, ",0]}"), "]}", 3);
    expect_bad(json, 0, "entry is an array", NULL);
}

static void test_st__invalid_utf8_is_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\x80",             /* lone continuation byte */
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong '/' */
        "\xed\xa0\x80",     /* UTF-16 surrogate D800 */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80", /* invalid lead */
        "\xff",
        "\xe2\x82",         /* truncated before the closing quote */
        "\xc3\x28",         /* bad continuation */
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char json[128];
        snprintf(json, sizeof json,
                 "{\"a%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", bad[k]);
        expect_bad(json, 1, "invalid UTF-8", "file offset 11");
    }
    /* outside strings a non-ASCII byte is a syntax error */
    expect_bad("{\xc3\xa9:1}", 0, "expected a string key", NULL);
}

static void test_st__bad_unicode_escapes_are_rejected(void **state)
{
    (void)state;
    expect_bad("{\"\\u12\":{}}", 0, "4 hex digits", "file offset 10");
    expect_bad("{\"\\uZZZZ\":{}}", 0, "4 hex digits", NULL);
    expect_bad("{\"\\u12", 0, "4 hex digits", NULL);
    expect_bad("{\"\\udc00\":{}}", 0, "lone low surrogate", NULL);
    expect_bad("{\"\\ud800\":{}}", 0, "high surrogate not followed", NULL);
    expect_bad("{\"\\ud800x\":{}}", 0, "high surrogate not followed", NULL);
    expect_bad("{\"\\ud800\\u0041\":{}}", 0, "high surrogate not followed", NULL);
    expect_bad("{\"\\ud800\\ud800\":{}}", 0, "high surrogate not followed", NULL);
    /* the highest code point is fine */
    ckpt__st_header h;
    assert_int_equal(parse("{\"__metadata__\":{\"\\udbff\\udfff\":\"\\uFFFF\"}}", 0, &h), CKPT_OK);
    assert_string_equal(h.meta_key[0], "\xf4\x8f\xbf\xbf");
    assert_string_equal(h.meta_val[0], "\xef\xbf\xbf");
    ckpt__st_header_free(&h);
}

/* ------------------------------------------------------------ schema */

static void test_st__unknown_and_unsupported_dtypes_are_rejected(void **state)
{
    (void)state;
    expect_bad("{\"w\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16,
               "unknown dtype \"F128\"", "tensor \"w\"");
    expect_bad("{\"w\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
               "unsupported dtype \"U16\"", "tensor \"w\"");
    expect_bad("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
               "unsupported dtype \"F8_E4M3\"", NULL);
    expect_bad("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "unknown dtype \"f32\"", NULL);
    expect_bad("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "dtype is a number", NULL);
    expect_bad("{\"w\":{\"dtype\":null,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is null",
               NULL);
}

static void test_st__shape_size_mismatch_is_rejected(void **state)
{
    (void)state;
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
               "span 20 bytes but dtype and shape need 24", "tensor \"w\"");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", 0, "need 4", NULL);
}

static void test_st__shape_product_overflow_is_rejected(void **state)
{
    (void)state;
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,16],"
               "\"data_offsets\":[0,0]}}",
               0, "[4294967296, 4294967296, 16] x 1 bytes overflows", "tensor \"w\"");
    /* product fits in u64, times the element size does not */
    expect_bad("{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,536870912],"
               "\"data_offsets\":[0,0]}}",
               0, "x 8 bytes overflows", NULL);
    /* an overflow before a zero dimension is still rejected */
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,16,0],"
               "\"data_offsets\":[0,0]}}",
               0, "overflows", NULL);
}

static void test_st__bad_shapes_are_rejected(void **state)
{
    (void)state;
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
               "9 dimensions, more than 8", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1,
               "shape[0] is -1, not a non-negative integer", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,2.0],\"data_offsets\":[0,2]}}", 2,
               "shape[1] is 2.0", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[1e1],\"data_offsets\":[0,10]}}", 10,
               "shape[0] is 1e1", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[\"2\"],\"data_offsets\":[0,2]}}", 2,
               "shape[0] is a string", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":{},\"data_offsets\":[0,2]}}", 2,
               "shape is an object", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[-0],\"data_offsets\":[0,0]}}", 0,
               "shape[0] is -0", NULL);
}

static void test_st__bad_offsets_are_rejected(void **state)
{
    (void)state;
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,2]}}", 4,
               "[4, 2] end before begin", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0]}}", 2,
               "data_offsets has 1 entries", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2,4]}}", 4,
               "data_offsets has 3 entries", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":\"0,2\"}}", 2,
               "data_offsets is a string", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[-2,0]}}", 2,
               "data_offsets[0] is -2", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2.5]}}", 2,
               "data_offsets[1] is 2.5", NULL);
}

static void test_st__offsets_out_of_bounds_are_rejected(void **state)
{
    (void)state;
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 5,
               "[2, 6] go beyond the end of the 5-byte data section", "tensor \"w\"");
}

static void test_st__gap_between_tensors_is_rejected(void **state)
{
    (void)state;
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
               5, "tensor \"b\": 1 unused bytes at data offsets [2, 3)", NULL);
    /* a gap at the start */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", 3,
               "unused bytes at data offsets [0, 1)", NULL);
}

static void test_st__overlapping_tensors_are_rejected(void **state)
{
    (void)state;
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
               6, "\"b\": data_offsets [2, 6] overlap tensor \"a\" which ends at 4", NULL);
    /* full aliasing: the same range twice */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               4, "overlap", NULL);
}

static void test_st__tensors_not_covering_the_data_are_rejected(void **state)
{
    (void)state;
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
               6, "end at data offset 4 but the data section has 6 bytes", "2 trailing bytes");
}

static void test_st__bad_names_and_entries_are_rejected(void **state)
{
    (void)state;
    expect_bad("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
               "empty tensor name", NULL);
    expect_bad("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
               "contains \\u0000", NULL);
    expect_bad("{\"w\":[1]}", 0, "tensor \"w\"", "entry is an array");
    expect_bad("{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "missing key \"dtype\"", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, "missing key \"shape\"",
               NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "missing key \"data_offsets\"", NULL);
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"offsets\":1}}", 1,
               "unknown key \"offsets\"", NULL);
}

static void test_st__metadata_must_map_strings_to_strings(void **state)
{
    (void)state;
    expect_bad("{\"__metadata__\":{\"a\":\"x\",\"n\":1}}", 0,
               "__metadata__ value of \"n\"", "is a number, not a string");
    expect_bad("{\"__metadata__\":{\"o\":{}}}", 0, "is an object, not a string", NULL);
    expect_bad("{\"__metadata__\":[]}", 0, "__metadata__ (file offset 24) is an array", NULL);
    expect_bad("{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "\"k\"", "contains \\u0000");
}

/* Random damage to a valid header must give CKPT_OK or CKPT_EINVAL, never a
 * crash (ASan/UBSan watch), and whatever is accepted must tile the data. */
static void test_st__random_damage_never_crashes(void **state)
{
    (void)state;
    const char *good =
        "{\"__metadata__\":{\"k\":\"v\\u00e9\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
        "\"b\\ud83d\\ude00\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]}}";
    size_t n = strlen(good);
    char *buf = malloc(n);
    assert_non_null(buf);
    uint64_t rnd[4];
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, good, n);
        tu_fill_random(rnd, sizeof rnd, (uint64_t)iter);
        size_t len = n;
        int flips = 1 + (int)(rnd[0] % 3);
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)(rnd[1 + f] % n);
            buf[at] = (char)(rnd[1 + f] >> 32);
        }
        if (rnd[3] % 4 == 0)
            len = (size_t)(rnd[3] >> 8) % (n + 1);
        ckpt__st_header h;
        int rc = ckpt__st_parse_header(buf, len, 22, FNAME, &h);
        assert_true(rc == CKPT_OK || rc == CKPT_EINVAL);
        if (rc == CKPT_OK) {
            uint64_t total = 0;
            for (size_t k = 0; k < h.n; k++) {
                assert_true(h.t[k].end <= 22);
                total += h.t[k].end - h.t[k].begin;
            }
            assert_int_equal(total, 22);
            accepted++;
            ckpt__st_header_free(&h);
        }
    }
    /* flips inside metadata strings keep some files valid: the loop did
     * exercise the success path too */
    assert_true(accepted > 0);
    free(buf);
}

/* ------------------------------------------------------------ writer */

static void test_st__writer_output_is_byte_exact_and_padded(void **state)
{
    (void)state;
    ckpt__st_tensor t[2] = {
        {.name = "a", .dtype = CKPT_F32, .ndim = 2, .shape = {2, 1}, .begin = 0, .end = 8},
        {.name = "s", .dtype = CKPT_I64, .ndim = 0, .begin = 8, .end = 16},
    };
    const char *mk[] = {"k"}, *mv[] = {"v"};
    char *out;
    size_t n;
    assert_int_equal(ckpt__st_write_header(t, 2, mk, mv, 1, &out, &n), CKPT_OK);
    const char *want = "{\"__metadata__\":{\"k\":\"v\"},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[0,8]},"
                       "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]}}";
    size_t wn = strlen(want), padded = (wn + 7) / 8 * 8;
    assert_int_equal(n, 8 + padded);
    assert_int_equal(ckpt__st_read_u64le((const unsigned char *)out), padded);
    assert_memory_equal(out + 8, want, wn);
    for (size_t k = wn; k < padded; k++)
        assert_int_equal(out[8 + k], ' ');
    ckpt__free(out);

    /* no metadata: no __metadata__ key at all; no tensors: "{}" + 6 spaces */
    assert_int_equal(ckpt__st_write_header(NULL, 0, NULL, NULL, 0, &out, &n), CKPT_OK);
    assert_int_equal(n, 16);
    assert_memory_equal(out, "\x08\0\0\0\0\0\0\0{}      ", 16);
    ckpt__free(out);
}

static void test_st__writer_output_parses_back_identically(void **state)
{
    (void)state;
    ckpt__st_tensor t[3] = {
        {.name = "layer.0/w \"q\" \\ \x01\n\t\xc3\xa9\xf0\x9f\x98\x80", .dtype = CKPT_BF16,
         .ndim = 3, .shape = {2, 0, 5}, .begin = 0, .end = 0},
        {.name = "b", .dtype = CKPT_BOOL, .ndim = 1, .shape = {7}, .begin = 0, .end = 7},
        {.name = "d", .dtype = CKPT_F64, .ndim = 8, .shape = {1, 1, 1, 1, 1, 1, 1, 3}, .begin = 7,
         .end = 31},
    };
    const char *mk[] = {"ckpt.config", "ckpt.kind.b", "\x7f\x1f"};
    const char *mv[] = {"model:\n  width: \"64\"\n\ttab: '\\'\n", "rng", ""};
    char *out;
    size_t n;
    assert_int_equal(ckpt__st_write_header(t, 3, mk, mv, 3, &out, &n), CKPT_OK);
    assert_int_equal((n - 8) % 8, 0);
    /* the file image: header plus 31 data bytes */
    unsigned char *img = malloc(n + 31);
    assert_non_null(img);
    memcpy(img, out, n);
    memset(img + n, 0x5a, 31);
    ckpt__st_header h;
    assert_int_equal(ckpt__st_parse_file(img, n + 31, FNAME, &h), CKPT_OK);
    assert_int_equal(h.n, 3);
    for (size_t k = 0; k < 3; k++) {
        assert_string_equal(h.t[k].name, t[k].name);
        assert_int_equal(h.t[k].dtype, t[k].dtype);
        assert_int_equal(h.t[k].ndim, t[k].ndim);
        assert_memory_equal(h.t[k].shape, t[k].shape, sizeof(int64_t) * (size_t)t[k].ndim);
        assert_int_equal(h.t[k].begin, t[k].begin);
        assert_int_equal(h.t[k].end, t[k].end);
    }
    assert_int_equal(h.nmeta, 3);
    for (size_t k = 0; k < 3; k++) {
        assert_string_equal(h.meta_key[k], mk[k]);
        assert_string_equal(h.meta_val[k], mv[k]);
    }
    ckpt__st_header_free(&h);
    free(img);
    ckpt__free(out);
}

static void test_st__writer_rejects_what_it_cannot_encode(void **state)
{
    (void)state;
    char *out = (char *)1;
    size_t n = 1;
    ckpt__st_tensor t = {.name = "w", .dtype = CKPT_F32, .ndim = 1, .shape = {2}, .end = 8};
    const char *bad = "\xff";
    assert_int_equal(ckpt__st_write_header(&t, 1, &bad, &bad, 1, &out, &n), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "metadata key"));
    assert_non_null(strstr(ckpt_errmsg(), "not valid UTF-8"));
    assert_null(out);
    assert_int_equal(n, 0);
    t.name = "bad\xed\xa0\x80";
    assert_int_equal(ckpt__st_write_header(&t, 1, NULL, NULL, 0, &out, &n), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "tensor name"));
    t.name = "w";
    t.dtype = 42;
    assert_int_equal(ckpt__st_write_header(&t, 1, NULL, NULL, 0, &out, &n), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "unknown dtype 42"));
    t.dtype = CKPT_F32;
    t.shape[0] = -2;
    assert_int_equal(ckpt__st_write_header(&t, 1, NULL, NULL, 0, &out, &n), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "shape[0] is negative"));
    t.shape[0] = 2;
    t.ndim = 9;
    assert_int_equal(ckpt__st_write_header(&t, 1, NULL, NULL, 0, &out, &n), CKPT_EINVAL);
    t.ndim = 1;
    t.name = "__metadata__";
    assert_int_equal(ckpt__st_write_header(&t, 1, NULL, NULL, 0, &out, &n), CKPT_EINVAL);
    t.name = "";
    assert_int_equal(ckpt__st_write_header(&t, 1, NULL, NULL, 0, &out, &n), CKPT_EINVAL);
}

/* ------------------------------------------------------------ through a store */

static ckpt_store *open_store(const char *dir)
{
    ckpt_store *s = NULL;
    ckpt_open_opts o = {.durability = CKPT_DURABLE_OFF};
    assert_int_equal(ckpt_open(&s, tu_path(dir, "store.db"), &o), CKPT_OK);
    return s;
}

typedef struct src_tensor {
    const char *name;
    int kind, dtype, ndim;
    int64_t shape[CKPT_MAX_DIMS];
} src_tensor;

/* Reads tensor i of r whole (malloc'd). */
static unsigned char *read_tensor(ckpt_reader *r, size_t i, ckpt_tensor_info *ti)
{
    assert_int_equal(ckpt_reader_tensor(r, i, ti), CKPT_OK);
    unsigned char *b = malloc(ti->nbytes ? ti->nbytes : 1);
    assert_non_null(b);
    assert_int_equal(ckpt_reader_read(r, i, 0, b, ti->nbytes), CKPT_OK);
    return b;
}

static const char *meta(const ckpt__st_header *h, const char *key)
{
    for (size_t k = 0; k < h->nmeta; k++)
        if (strcmp(h->meta_key[k], key) == 0)
            return h->meta_val[k];
    return NULL;
}

/* Entries of dir whose name contains pattern ("" for all). */
static size_t count_dir_entries(const char *dir, const char *pattern)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c -F -e '%s'", dir, pattern);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    unsigned long n = 0;
    assert_int_equal(fscanf(p, "%lu", &n), 1);
    pclose(p);
    return (size_t)n;
}

/* A checkpoint with every kind, several dtypes, a scalar, an empty tensor
 * and one tensor larger than export's 8 MiB copy buffer. */
static const src_tensor SRC[] = {
    {"embed.weight", CKPT_KIND_MODEL, CKPT_F32, 2, {3000, 700}},
    {"layer.0/w \"q\" \xc3\xa9", CKPT_KIND_MODEL, CKPT_BF16, 3, {4, 5, 6}},
    {"opt.m", CKPT_KIND_OPTIMIZER, CKPT_F64, 1, {33}},
    {"opt.step", CKPT_KIND_OPTIMIZER, CKPT_I64, 0, {0}},
    {"rng", CKPT_KIND_RNG, CKPT_U8, 1, {17}},
    {"empty", CKPT_KIND_STATE, CKPT_I16, 2, {0, 9}},
    {"flags", CKPT_KIND_EXTRA, CKPT_BOOL, 1, {3}},
};
#define NSRC (sizeof SRC / sizeof SRC[0])
static const char SRC_CONFIG[] = "model:\n  width: 64\n  name: \"tiny \\\"q\\\"\"\nlr: 0.001\n";

static size_t src_bytes(size_t i)
{
    size_t n = ckpt_dtype_size(SRC[i].dtype);
    for (int d = 0; d < SRC[i].ndim; d++)
        n *= (size_t)SRC[i].shape[d];
    return n;
}

static void make_source(ckpt_store *s, unsigned char **data)
{
    assert_int_equal(ckpt_run_create(s, "src", SRC_CONFIG, strlen(SRC_CONFIG)), CKPT_OK);
    ckpt_writer *w;
    assert_int_equal(ckpt_writer_begin(&w, s, "src", 3, 300), CKPT_OK);
    for (size_t i = 0; i < NSRC; i++) {
        size_t n = src_bytes(i);
        data[i] = malloc(n ? n : 1);
        assert_non_null(data[i]);
        tu_fill_random(data[i], n, 1000 + i);
        if (SRC[i].dtype == CKPT_BOOL)
            for (size_t k = 0; k < n; k++)
                data[i][k] &= 1;
        assert_int_equal(ckpt_writer_put(w, SRC[i].name, SRC[i].kind, SRC[i].dtype, SRC[i].ndim,
                                         SRC[i].shape, data[i], n),
                         CKPT_OK);
    }
    assert_int_equal(ckpt_writer_commit(w, NULL), CKPT_OK);
}

static void test_st__export_import_export_roundtrips_everything(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    ckpt_store *s = open_store(dir);
    unsigned char *data[NSRC];
    make_source(s, data);

    const char *f1 = tu_path(dir, "one.safetensors");
    assert_int_equal(ckpt_export_safetensors(s, "src", CKPT_HEAD, f1), CKPT_OK);
    assert_int_equal(count_dir_entries(dir, ".tmp."), 0);

    /* the file, read by the independent validator */
    size_t fsize;
    unsigned char *img = tu_read_file(f1, &fsize);
    assert_non_null(img);
    ckpt__st_header h;
    assert_int_equal(ckpt__st_parse_file(img, fsize, f1, &h), CKPT_OK);
    assert_int_equal(h.header_len % 8, 0);
    assert_int_equal(h.n, NSRC);
    assert_string_equal(meta(&h, "ckpt.run"), "src");
    assert_string_equal(meta(&h, "ckpt.epoch"), "3");
    assert_string_equal(meta(&h, "ckpt.step"), "300");
    assert_string_equal(meta(&h, "ckpt.config"), SRC_CONFIG);
    assert_string_equal(meta(&h, "ckpt.kind.opt.m"), "optimizer");
    assert_string_equal(meta(&h, "ckpt.kind.rng"), "rng");
    uint64_t off = 0;
    for (size_t i = 0; i < NSRC; i++) {
        assert_string_equal(h.t[i].name, SRC[i].name);
        assert_int_equal(h.t[i].dtype, SRC[i].dtype);
        assert_int_equal(h.t[i].ndim, SRC[i].ndim);
        assert_memory_equal(h.t[i].shape, SRC[i].shape, sizeof(int64_t) * (size_t)SRC[i].ndim);
        assert_int_equal(h.t[i].begin, off);
        off = h.t[i].end;
        assert_int_equal(h.t[i].end - h.t[i].begin, src_bytes(i));
        if (src_bytes(i))
            assert_memory_equal(img + 8 + h.header_len + h.t[i].begin, data[i], src_bytes(i));
    }
    ckpt__st_header_free(&h);

    /* import into a new run: created with the exported config, checkpoint is head */
    int64_t id = 0;
    assert_int_equal(ckpt_import_safetensors(s, f1, "dst", 7, 70, &id), CKPT_OK);
    assert_true(id > 0);
    ckpt_checkpoint_info ci;
    assert_int_equal(ckpt_head(s, "dst", &ci), CKPT_OK);
    assert_int_equal(ci.id, id);
    assert_int_equal(ci.epoch, 7);
    assert_int_equal(ci.step, 70);
    assert_int_equal(ci.ntensors, NSRC);
    char *cfg = NULL;
    assert_int_equal(ckpt_run_config(s, "dst", &cfg), CKPT_OK);
    assert_non_null(cfg);
    assert_string_equal(cfg, SRC_CONFIG);
    ckpt_free(cfg);

    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open(&r, s, "dst", 7), CKPT_OK);
    assert_int_equal(ckpt_reader_count(r), NSRC);
    for (size_t i = 0; i < NSRC; i++) {
        ckpt_tensor_info ti;
        unsigned char *b = read_tensor(r, i, &ti);
        assert_string_equal(ti.name, SRC[i].name);
        assert_int_equal(ti.kind, SRC[i].kind);
        assert_int_equal(ti.dtype, SRC[i].dtype);
        assert_int_equal(ti.ndim, SRC[i].ndim);
        assert_memory_equal(ti.shape, SRC[i].shape, sizeof(int64_t) * (size_t)SRC[i].ndim);
        assert_int_equal(ti.nbytes, src_bytes(i));
        if (ti.nbytes)
            assert_memory_equal(b, data[i], ti.nbytes);
        free(b);
    }
    ckpt_reader_close(r);

    /* export of the imported copy: same data section, same tensor table */
    const char *f2 = tu_path(dir, "two.safetensors");
    assert_int_equal(ckpt_export_safetensors(s, "dst", 7, f2), CKPT_OK);
    size_t fsize2;
    unsigned char *img2 = tu_read_file(f2, &fsize2);
    assert_non_null(img2);
    ckpt__st_header h1, h2;
    assert_int_equal(ckpt__st_parse_file(img, fsize, f1, &h1), CKPT_OK);
    assert_int_equal(ckpt__st_parse_file(img2, fsize2, f2, &h2), CKPT_OK);
    assert_int_equal(fsize2 - 8 - h2.header_len, fsize - 8 - h1.header_len);
    assert_memory_equal(img2 + 8 + h2.header_len, img + 8 + h1.header_len,
                        fsize - 8 - h1.header_len);
    assert_string_equal(meta(&h2, "ckpt.run"), "dst");
    assert_string_equal(meta(&h2, "ckpt.epoch"), "7");
    assert_string_equal(meta(&h2, "ckpt.config"), SRC_CONFIG);
    for (size_t i = 0; i < NSRC; i++) {
        assert_string_equal(h2.t[i].name, h1.t[i].name);
        assert_int_equal(h2.t[i].begin, h1.t[i].begin);
        assert_int_equal(h2.t[i].end, h1.t[i].end);
    }
    ckpt__st_header_free(&h1);
    ckpt__st_header_free(&h2);
    free(img);
    free(img2);
    for (size_t i = 0; i < NSRC; i++)
        free(data[i]);
    assert_int_equal(ckpt_close(s), CKPT_OK);
}

static void test_st__import_of_handcrafted_file_creates_run(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    ckpt_store *s = open_store(dir);
    /* the reference implementation's example, with non-zero data */
    static const char file[] =
        "<\0\0\0\0\0\0\0"
        "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}"
        "\1\0\0\0\2\0\0\0\3\0\0\0\4\0\0\0";
    const char *f = tu_path(dir, "ref.safetensors");
    assert_int_equal(tu_write_file(f, file, sizeof file - 1), 0);
    assert_int_equal(ckpt_import_safetensors(s, f, "ref", 0, 0, NULL), CKPT_OK);
    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open(&r, s, "ref", CKPT_HEAD), CKPT_OK);
    assert_string_equal(ckpt_reader_run(r), "ref");
    assert_int_equal(ckpt_reader_count(r), 1);
    ckpt_tensor_info ti;
    unsigned char *b = read_tensor(r, 0, &ti);
    assert_string_equal(ti.name, "test");
    assert_int_equal(ti.kind, CKPT_KIND_MODEL);
    assert_int_equal(ti.dtype, CKPT_I32);
    int32_t want[4] = {1, 2, 3, 4};
    assert_memory_equal(b, want, 16);
    free(b);
    ckpt_reader_close(r);
    assert_int_equal(ckpt_close(s), CKPT_OK);
}

static void test_st__import_kinds_come_from_metadata_when_valid(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    ckpt_store *s = open_store(dir);
    static const char tensors[] = "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                                  "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
                                  "\"c\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]},"
                                  "\"d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}";
    static const struct {
        const char *meta, *error; /* error: NULL if the import succeeds */
    } cases[] = {
        {"\"ckpt.kind.a\":\"optimizer\",\"ckpt.kind.b\":\"bogus\"", "\"ckpt.kind.b\" is 'bogus', not a kind"},
        {"\"ckpt.kind.a\":\"optimizer\",\"ckpt.kind.zz\":\"rng\"", "\"ckpt.kind.zz\" names no tensor"},
        {"\"ckpt.kind.a\":\"optimizer\",\"ckpt.kind.c\":\"state\",\"other\":\"x\"", NULL},
    };
    const char *f = tu_path(dir, "k.safetensors");
    for (size_t k = 0; k < 3; k++) {
        char json[1024];
        snprintf(json, sizeof json, "{\"__metadata__\":{%s},%s", cases[k].meta, tensors);
        size_t size;
        unsigned char *img = mkfile(json, 0, "xyz", 3, &size);
        assert_int_equal(tu_write_file(f, img, size), 0);
        free(img);
        int rc = ckpt_import_safetensors(s, f, "k", 1, 2, NULL);
        if (cases[k].error) {
            assert_int_equal(rc, CKPT_EINVAL);
            if (!strstr(ckpt_errmsg(), cases[k].error))
                fail_msg("case %zu: message '%s' lacks '%s'", k, ckpt_errmsg(), cases[k].error);
            ckpt_checkpoint_info ci;
            assert_int_equal(ckpt_head(s, "k", &ci), CKPT_ENOTFOUND); /* nothing stored */
        } else {
            assert_int_equal(rc, CKPT_OK);
        }
    }
    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open(&r, s, "k", 1), CKPT_OK);
    static const int want[] = {CKPT_KIND_OPTIMIZER, CKPT_KIND_MODEL, CKPT_KIND_STATE,
                               CKPT_KIND_MODEL};
    for (size_t i = 0; i < 4; i++) {
        ckpt_tensor_info ti;
        assert_int_equal(ckpt_reader_tensor(r, i, &ti), CKPT_OK);
        assert_int_equal(ti.kind, want[i]);
    }
    ckpt_reader_close(r);
    /* The same epoch and step again on the run's line: refused. */
    assert_int_equal(ckpt_import_safetensors(s, f, "k", 1, 2, NULL), CKPT_EEXISTS);
    ckpt_checkpoint_info first;
    assert_int_equal(ckpt_head(s, "k", &first), CKPT_OK);
    assert_int_equal(ckpt_import_safetensors(s, f, "k", 1, 3, NULL), CKPT_OK);
    /* Abandoned checkpoints do not count: after a rollback to (1, 2), the
     * abandoned (1, 3) may be imported again on the new line. */
    assert_int_equal(ckpt_rollback(s, "k", first.id), CKPT_OK);
    assert_int_equal(ckpt_import_safetensors(s, f, "k", 1, 2, NULL), CKPT_EEXISTS);
    assert_int_equal(ckpt_import_safetensors(s, f, "k", 1, 3, NULL), CKPT_OK);
    assert_int_equal(ckpt_close(s), CKPT_OK);
}

static void test_st__import_into_existing_run_keeps_config_and_moves_head(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    ckpt_store *s = open_store(dir);
    unsigned char *data[NSRC];
    make_source(s, data);
    const char *f = tu_path(dir, "x.safetensors");
    assert_int_equal(ckpt_export_safetensors(s, "src", 3, f), CKPT_OK);
    ckpt_checkpoint_info before, after;
    assert_int_equal(ckpt_head(s, "src", &before), CKPT_OK);
    int64_t id;
    assert_int_equal(ckpt_import_safetensors(s, f, "src", 4, 400, &id), CKPT_OK);
    assert_int_equal(ckpt_head(s, "src", &after), CKPT_OK);
    assert_int_equal(after.id, id);
    assert_int_equal(after.parent, before.id);
    char *cfg;
    assert_int_equal(ckpt_run_config(s, "src", &cfg), CKPT_OK);
    assert_string_equal(cfg, SRC_CONFIG);
    ckpt_free(cfg);
    for (size_t i = 0; i < NSRC; i++)
        free(data[i]);
    assert_int_equal(ckpt_close(s), CKPT_OK);
}

/* Nothing may reach the store from a file that fails validation, including
 * files the safetensors format allows but the writer would refuse. */
static void test_st__bad_file_import_leaves_store_unchanged(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    ckpt_store *s = open_store(dir);
    unsigned char *data[NSRC];
    make_source(s, data);
    ckpt_checkpoint_info before;
    assert_int_equal(ckpt_head(s, "src", &before), CKPT_OK);

    static const struct {
        const char *json;
        size_t pad, ndata;
        long cut; /* bytes removed from the end of the file */
        const char *frag;
    } bad[] = {
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}", 0, 4, 0, "unexpected end"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
         0, 4, 0, "overlap"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 64, 4, 1,
         "beyond the end"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 0, 4, 60, "header length"},
        {"{\"a\\u0001\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 0, 4, 0,
         "control character"},
        {"{\"a\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, 0,
         "unsupported dtype"},
    };
    unsigned char payload[8] = {9, 8, 7, 6, 5, 4, 3, 2};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        size_t size;
        unsigned char *img = mkfile(bad[k].json, bad[k].pad, payload, bad[k].ndata, &size);
        const char *f = tu_path(dir, "bad.safetensors");
        assert_int_equal(tu_write_file(f, img, size - (size_t)bad[k].cut), 0);
        free(img);
        int64_t id = -5;
        assert_int_equal(ckpt_import_safetensors(s, f, "new", 0, 0, &id), CKPT_EINVAL);
        if (!strstr(ckpt_errmsg(), bad[k].frag) || !strstr(ckpt_errmsg(), f)) {
            print_error("case %zu: %s\n", k, ckpt_errmsg());
            fail();
        }
        assert_int_equal(id, -5);
        ckpt_checkpoint_info ci;
        assert_int_equal(ckpt_head(s, "new", &ci), CKPT_ENOTFOUND);
        assert_int_equal(ckpt_import_safetensors(s, f, "src", 9, 9, NULL), CKPT_EINVAL);
        assert_int_equal(ckpt_head(s, "src", &ci), CKPT_OK);
        assert_int_equal(ci.id, before.id);
        assert_int_equal(ckpt_checkpoint_find(s, "src", 9, &ci), CKPT_ENOTFOUND);
    }
    /* files that are not there or not files */
    assert_int_equal(ckpt_import_safetensors(s, tu_path(dir, "missing"), "new", 0, 0, NULL),
                     CKPT_ENOTFOUND);
    assert_int_equal(ckpt_import_safetensors(s, dir, "new", 0, 0, NULL), CKPT_EINVAL);
    const char *empty = tu_path(dir, "empty.safetensors");
    assert_int_equal(tu_write_file(empty, "", 0), 0);
    assert_int_equal(ckpt_import_safetensors(s, empty, "new", 0, 0, NULL), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "too short"));
    /* a bad epoch is refused before the run is created */
    const char *good = tu_path(dir, "good.safetensors");
    assert_int_equal(ckpt_export_safetensors(s, "src", CKPT_HEAD, good), CKPT_OK);
    assert_int_equal(ckpt_import_safetensors(s, good, "new", -1, 0, NULL), CKPT_EINVAL);
    ckpt_checkpoint_info ci;
    assert_int_equal(ckpt_head(s, "new", &ci), CKPT_ENOTFOUND);
    /* a bad run name is refused by run creation */
    assert_int_equal(ckpt_import_safetensors(s, good, "a@b", 0, 0, NULL), CKPT_EINVAL);
    for (size_t i = 0; i < NSRC; i++)
        free(data[i]);
    assert_int_equal(ckpt_close(s), CKPT_OK);
}

static void test_st__failed_export_keeps_the_old_file_and_no_temp(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    ckpt_store *s = open_store(dir);
    unsigned char *data[NSRC];
    make_source(s, data);
    const char *sub = tu_path(dir, "out");
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir '%s'", sub);
    assert_int_equal(system(cmd), 0);
    const char *f = tu_path(sub, "m.safetensors");
    assert_int_equal(tu_write_file(f, "old", 3), 0);

    /* unknown run, unknown epoch */
    assert_int_equal(ckpt_export_safetensors(s, "nope", CKPT_HEAD, f), CKPT_ENOTFOUND);
    assert_non_null(strstr(ckpt_errmsg(), f));
    assert_int_equal(ckpt_export_safetensors(s, "src", 99, f), CKPT_ENOTFOUND);
    /* a directory that does not exist */
    assert_int_equal(ckpt_export_safetensors(s, "src", 3, tu_path(dir, "no/such/x")), CKPT_EIO);
    assert_non_null(strstr(ckpt_errmsg(), "no/such/x"));
    /* the target is a directory: the rename fails after the data is written */
    const char *d2 = tu_path(sub, "isdir");
    snprintf(cmd, sizeof cmd, "mkdir '%s' && touch '%s/keep'", d2, d2);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(ckpt_export_safetensors(s, "src", 3, d2), CKPT_EIO);
    assert_non_null(strstr(ckpt_errmsg(), "renaming"));
    /* a write fails half way (file size limit: EFBIG, the way ENOSPC would) */
    struct rlimit old_lim, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
    lim = old_lim;
    lim.rlim_cur = 1 << 20;
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = ckpt_export_safetensors(s, "src", 3, f);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
    signal(SIGXFSZ, old_sig);
    assert_int_equal(rc, CKPT_EFULL); /* EFBIG counts as a full disk */
    assert_non_null(strstr(ckpt_errmsg(), "writing"));
    assert_non_null(strstr(ckpt_errmsg(), ".tmp."));

    size_t n;
    char *old = tu_read_file(f, &n);
    assert_non_null(old);
    assert_int_equal(n, 3);
    assert_memory_equal(old, "old", 3);
    free(old);
    assert_int_equal(count_dir_entries(sub, ""), 2); /* m.safetensors and isdir: no temp file */

    /* and a successful export replaces it */
    assert_int_equal(ckpt_export_safetensors(s, "src", 3, f), CKPT_OK);
    unsigned char *img = tu_read_file(f, &n);
    assert_non_null(img);
    ckpt__st_header h;
    assert_int_equal(ckpt__st_parse_file(img, n, f, &h), CKPT_OK);
    ckpt__st_header_free(&h);
    free(img);
    assert_int_equal(count_dir_entries(sub, ""), 2);
    for (size_t i = 0; i < NSRC; i++)
        free(data[i]);
    assert_int_equal(ckpt_close(s), CKPT_OK);
}

/* ------------------------------------------------------------ allocation failures */

static long g_fail_at = -1, g_nalloc;
static void *fi_malloc(void *ctx, size_t n)
{
    (void)ctx;
    return g_nalloc++ == g_fail_at ? NULL : malloc(n);
}
static void *fi_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return g_nalloc++ == g_fail_at ? NULL : realloc(p, n);
}
static void fi_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

/* Failing each allocation in turn gives CKPT_ENOMEM and leaks nothing
 * (ASan/valgrind check the leaks). */
static void test_st__allocation_failures_are_clean(void **state)
{
    (void)state;
    ckpt_allocator a = {fi_malloc, fi_realloc, fi_free, NULL};
    assert_int_equal(ckpt_set_allocator(&a), CKPT_OK);
    char json[8192];
    size_t n = 0;
    n += (size_t)snprintf(json, sizeof json, "{\"__metadata__\":{\"a\":\"b\",\"c\":\"d\"}");
    for (int k = 0; k < 60; k++)
        n += (size_t)snprintf(json + n, sizeof json - n,
                              ",\"t%d\":{\"dtype\":\"U8\",\"shape\":[1,1],\"data_offsets\":[%d,%d]}",
                              k, k, k + 1);
    snprintf(json + n, sizeof json - n, "}");
    int ok_parse = 0, ok_write = 0;
    for (g_fail_at = 0; g_fail_at < 1000 && !(ok_parse && ok_write); g_fail_at++) {
        ckpt__st_header h;
        g_nalloc = 0;
        int rc = parse(json, 60, &h);
        assert_true(rc == CKPT_OK || rc == CKPT_ENOMEM);
        if (rc != CKPT_OK)
            continue;
        ok_parse = 1;
        char *out;
        size_t on;
        g_nalloc = 0;
        rc = ckpt__st_write_header(h.t, h.n, (const char *const *)h.meta_key,
                                   (const char *const *)h.meta_val, h.nmeta, &out, &on);
        assert_true(rc == CKPT_OK || rc == CKPT_ENOMEM);
        if (rc == CKPT_OK) {
            ok_write = 1;
            ckpt__free(out);
        }
        ckpt__st_header_free(&h);
    }
    ckpt_set_allocator(NULL);
    assert_true(ok_parse);
    assert_true(ok_write);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_st__parses_tensors_in_header_order_with_metadata),
        cmocka_unit_test(test_st__reference_example_file_is_accepted),
        cmocka_unit_test(test_st__space_padded_header_is_accepted),
        cmocka_unit_test(test_st__json_whitespace_between_tokens_is_accepted),
        cmocka_unit_test(test_st__every_supported_dtype_maps_with_its_size),
        cmocka_unit_test(test_st__scalars_and_empty_tensors_tile_correctly),
        cmocka_unit_test(test_st__string_escapes_decode_to_utf8),
        cmocka_unit_test(test_st__u64_offsets_are_exact_up_to_the_maximum),
        cmocka_unit_test(test_st__header_length_over_100mib_is_rejected),
        cmocka_unit_test(test_st__header_length_beyond_file_is_rejected),
        cmocka_unit_test(test_st__file_longer_than_the_tensors_is_rejected),
        cmocka_unit_test(test_st__file_shorter_than_the_tensors_is_rejected),
        cmocka_unit_test(test_st__invalid_json_is_rejected_with_its_offset),
        cmocka_unit_test(test_st__trailing_garbage_is_rejected),
        cmocka_unit_test(test_st__duplicate_keys_are_rejected),
        cmocka_unit_test(test_st__many_keys_duplicate_found_in_large_object),
        cmocka_unit_test(test_st__nesting_deeper_than_16_is_rejected),
        cmocka_unit_test(test_st__arrays_longer_than_64_items_are_rejected),
        cmocka_unit_test(test_st__invalid_utf8_is_rejected),
        cmocka_unit_test(test_st__bad_unicode_escapes_are_rejected),
        cmocka_unit_test(test_st__unknown_and_unsupported_dtypes_are_rejected),
        cmocka_unit_test(test_st__shape_size_mismatch_is_rejected),
        cmocka_unit_test(test_st__shape_product_overflow_is_rejected),
        cmocka_unit_test(test_st__bad_shapes_are_rejected),
        cmocka_unit_test(test_st__bad_offsets_are_rejected),
        cmocka_unit_test(test_st__offsets_out_of_bounds_are_rejected),
        cmocka_unit_test(test_st__gap_between_tensors_is_rejected),
        cmocka_unit_test(test_st__overlapping_tensors_are_rejected),
        cmocka_unit_test(test_st__tensors_not_covering_the_data_are_rejected),
        cmocka_unit_test(test_st__bad_names_and_entries_are_rejected),
        cmocka_unit_test(test_st__metadata_must_map_strings_to_strings),
        cmocka_unit_test(test_st__random_damage_never_crashes),
        cmocka_unit_test(test_st__writer_output_is_byte_exact_and_padded),
        cmocka_unit_test(test_st__writer_output_parses_back_identically),
        cmocka_unit_test(test_st__writer_rejects_what_it_cannot_encode),
        cmocka_unit_test(test_st__allocation_failures_are_clean),
        cmocka_unit_test(test_st__export_import_export_roundtrips_everything),
        cmocka_unit_test(test_st__import_of_handcrafted_file_creates_run),
        cmocka_unit_test(test_st__import_kinds_come_from_metadata_when_valid),
        cmocka_unit_test(test_st__import_into_existing_run_keeps_config_and_moves_head),
        cmocka_unit_test(test_st__bad_file_import_leaves_store_unchanged),
        cmocka_unit_test(test_st__failed_export_keeps_the_old_file_and_no_temp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
