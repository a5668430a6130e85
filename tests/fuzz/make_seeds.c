/*
 * make_seeds.c - writes the hand-made seed inputs of every harness into
 * OUTDIR/<harness>/seed-*: YAML bombs and edge cases, safetensors files of
 * every dtype, codec payloads from the encoder, stores made by the library
 * and SQLite files of other applications, store edit scripts, CLI
 * arguments. Run by make_seeds.sh; the committed corpora started from it.
 */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"
#include "error.h"
#include "fuzz_common.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)data, (void)size;
    return 0;
}

static const char *outdir;

static void seed(const char *harness, const char *name, const void *data, size_t n)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", outdir, harness);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/%s/seed-%s", outdir, harness, name);
    fz_write_file(p, data, n);
}

/* ---------------------------------------------------------------- buffers */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf *b, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    puts_(b, tmp);
}

/* ---------------------------------------------------------------- config */

static void config_seeds(void)
{
    static const struct {
        const char *name, *yaml;
    } small[] = {
        {"empty", ""},
        {"null", "~\n"},
        {"doc-markers", "---\n...\n"},
        {"scalars", "i: 42\nneg: -7\nhex: 0x1F\noct: 0o17\nf: 2.5\ne: 1e-3\ninf: -.inf\nnan: .NaN\n"
                    "t: True\nf2: false\nn: null\ns: hello\nq: \"quoted\\n\"\nsq: 'single'\n"},
        {"nested", "model:\n  layers: [784, 32, 10]\n  act: relu\n  opt:\n    name: adam\n"
                   "    betas: [0.9, 0.999]\n"},
        {"seq-of-maps", "layers:\n  - {width: 32, act: relu}\n  - width: 10\n    act: softmax\n"
                        "mixed: [1, {a: 2}, [3, 4]]\n"},
        {"list-strings", "l: [relu, \"say \\\"hi\\\"\", 'back\\slash', 1, 0x1F, 2.5, True, ~, \"\", "
                         "\"\\u2028\", \"tab\\there\"]\n"},
        {"empty-list-map", "a: []\nb: {}\nc: [[]]\n"},
        {"block-scalars", "lit: |\n  line1\n  line2\nfold: >-\n  a\n  b\n"},
        {"tags-ok", "a: !!str 1\nb: !!int 2\nc: !!float 3\nd: !!bool true\ne: !!null ''\n"},
        {"tags-bad", "a: !!int abc\n"},
        {"tag-local", "a: !foo 1\n"},
        {"tag-directive", "%TAG !! tag:example.com,2000:\n---\na: !!int 1\n"},
        {"tag-on-map", "a: !!map {b: 1}\n"},
        {"anchor", "a: &x 1\nb: *x\n"},
        {"merge-key", "base: &b {x: 1}\nd:\n  <<: *b\n"},
        {"dup-key", "a: 1\na: 2\n"},
        {"dup-key-quoted", "1: a\n\"1\": b\n"},
        {"dot-key", "a.b: 1\n"},
        {"empty-key", "\"\": 1\n"},
        {"null-key", "? \n: 1\n"},
        {"complex-key", "? [a, b]\n: 1\n"},
        {"nul-escape", "a: \"x\\0y\"\n"},
        {"nul-raw", "a: x\0y\n"},
        {"control-key", "\"a\\x01\": 1\n"},
        {"ls-key", "\"a\\u2028b\": 1\n"},
        {"bom", "\xef\xbb\xbf" "a: 1\n"},
        {"utf16", "\xff\xfe" "a\0:\0 \0" "1\0\n\0"},
        {"bad-utf8", "a: \xc3\x28\n"},
        {"overlong-utf8", "a: \xc0\xaf\n"},
        {"int-range", "big: 9223372036854775808\nsmall: -9223372036854775809\nok: 9223372036854775807\n"},
        {"two-docs", "a: 1\n---\nb: 2\n"},
        {"top-seq", "- 1\n- 2\n"},
        {"top-scalar", "hello\n"},
        {"syntax-error", "a: [1, 2\nb: }\n"},
        {"tab-indent", "a:\n\tb: 1\n"},
        {"yes-no", "a: yes\nb: no\nc: on\nd: off\ne: Yes\n"},
        {"floats", "a: .5\nb: 5.\nc: +1.5e+10\nd: 1_000\ne: 0x\nf: 0o8\ng: -0x1\nh: +.inf\ni: .Inf\n"},
        {"comment-only", "# nothing here\n"},
        {"flow-map-top", "{a: 1, b: [2, 3], c: {d: e}}\n"},
        {"quoted-key-dot", "\"a.b\": 1\n"},
        {"long-key-ok", NULL}, /* built below */
    };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
        if (!small[i].yaml)
            continue;
        size_t n = strlen(small[i].yaml);
        if (!strcmp(small[i].name, "nul-raw"))
            n = 8;
        if (!strcmp(small[i].name, "utf16"))
            n = 12;
        seed("config", small[i].name, small[i].yaml, n);
    }
    const char *files[] = {"tools/configs/fashion-mlp.yaml", "tools/configs/fashion-mlp-large.yaml"};
    for (int i = 0; i < 2; i++) {
        size_t n;
        char *p = fz_read_file(files[i], &n);
        if (p) {
            seed("config", strrchr(files[i], '/') + 1, p, n);
            free(p);
        }
    }
    buf b = {0};
    /* billion laughs: aliases must be refused, never expanded */
    puts_(&b, "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (char c = 'b'; c <= 'j'; c++)
        putf(&b, "%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", c, c, c - 1, c - 1, c - 1,
             c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
    seed("config", "bomb-billion-laughs", b.p, b.n);
    b.n = 0;
    /* deep nesting: flow sequences, flow mappings, block mappings */
    for (int i = 0; i < 10000; i++)
        puts_(&b, "[");
    for (int i = 0; i < 10000; i++)
        puts_(&b, "]");
    seed("config", "bomb-deep-flow-seq", b.p, b.n);
    b.n = 0;
    puts_(&b, "a: ");
    for (int i = 0; i < 10000; i++)
        puts_(&b, "[");
    for (int i = 0; i < 10000; i++)
        puts_(&b, "]");
    puts_(&b, "\n");
    seed("config", "bomb-deep-flow-seq-in-map", b.p, b.n);
    b.n = 0;
    puts_(&b, "a:\n");
    for (int i = 0; i < 10000; i++)
        puts_(&b, "- ");
    puts_(&b, "x\n");
    seed("config", "bomb-deep-block-seq", b.p, b.n);
    b.n = 0;
    puts_(&b, "a: ");
    for (int i = 0; i < 5000; i++)
        puts_(&b, "{a: ");
    puts_(&b, "1");
    for (int i = 0; i < 5000; i++)
        puts_(&b, "}");
    puts_(&b, "\n");
    seed("config", "bomb-deep-flow-map", b.p, b.n);
    b.n = 0;
    for (int i = 0; i < 70; i++) {
        for (int k = 0; k < i; k++)
            puts_(&b, " ");
        puts_(&b, "k:\n");
    }
    seed("config", "deep-block-70", b.p, b.n);
    b.n = 0;
    for (int i = 0; i < 64; i++) {
        for (int k = 0; k < i; k++)
            puts_(&b, " ");
        puts_(&b, i == 63 ? "k: 1\n" : "k:\n");
    }
    seed("config", "deep-block-64", b.p, b.n);
    /* huge scalars: just under the 1 MiB document limit */
    b.n = 0;
    puts_(&b, "k: ");
    for (int i = 0; i < 1000000 / 64; i++)
        puts_(&b, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    puts_(&b, "\n");
    seed("config", "bomb-huge-scalar", b.p, b.n);
    b.n = 0;
    puts_(&b, "l: [");
    for (int i = 0; i < 20000; i++)
        puts_(&b, i ? ",\"\\t\"" : "\"\\t\"");
    puts_(&b, "]\n");
    seed("config", "bomb-list-escapes", b.p, b.n);
    /* many parameters and keys */
    b.n = 0;
    for (int i = 0; i < 10000; i++)
        putf(&b, "k%d: %d\n", i, i);
    seed("config", "many-keys", b.p, b.n);
    b.n = 0;
    puts_(&b, "l:\n");
    for (int i = 0; i < 10000; i++)
        puts_(&b, "- {a: 1}\n");
    seed("config", "many-seq-maps", b.p, b.n);
    /* a key path at the 1024-byte limit, and one beyond */
    for (int over = 0; over < 2; over++) {
        b.n = 0;
        int depth = 0;
        size_t path = 0;
        while (path + 32 + (depth ? 1 : 0) <= 1024 + (size_t)over * 40) {
            for (int k = 0; k < depth; k++)
                puts_(&b, " ");
            puts_(&b, "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk:\n");
            path += 32 + (depth ? 1 : 0);
            depth++;
        }
        for (int k = 0; k < depth; k++)
            puts_(&b, " ");
        puts_(&b, "z: 1\n");
        seed("config", over ? "long-key-over" : "long-key-near", b.p, b.n);
    }
    free(b.p);
}

/* ---------------------------------------------------------------- safetensors */

static void st_file(const char *name, const ckpt__st_tensor *t, size_t n, const char *const *mk,
                    const char *const *mv, size_t nm, const uint8_t *data, size_t dn)
{
    char *hdr;
    size_t hl;
    if (ckpt__st_write_header(t, n, mk, mv, nm, &hdr, &hl) != CKPT_OK) {
        fprintf(stderr, "%s: %s\n", name, ckpt_errmsg());
        exit(1);
    }
    uint8_t *img = malloc(hl + dn + 1);
    memcpy(img, hdr, hl);
    memcpy(img + hl, data, dn);
    seed("safetensors", name, img, hl + dn);
    seed("st_import", name, img, hl + dn);
    ckpt__free(hdr);
    free(img);
}

static void st_raw(const char *name, const char *json, const uint8_t *data, size_t dn)
{
    size_t jl = strlen(json);
    uint8_t *img = malloc(8 + jl + dn + 1);
    for (int i = 0; i < 8; i++)
        img[i] = (uint8_t)((uint64_t)jl >> (8 * i));
    memcpy(img + 8, json, jl);
    memcpy(img + 8 + jl, data, dn);
    seed("safetensors", name, img, 8 + jl + dn);
    seed("st_import", name, img, 8 + jl + dn);
    free(img);
}

static void safetensors_seeds(void)
{
    uint8_t data[4096];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    /* every dtype, scalar, empty, 8 dims */
    ckpt__st_tensor t[12];
    memset(t, 0, sizeof t);
    static const int dts[] = {CKPT_F64, CKPT_F32, CKPT_F16, CKPT_BF16, CKPT_I64,
                              CKPT_I32, CKPT_I16, CKPT_I8,  CKPT_U8,   CKPT_BOOL};
    static char names[12][16];
    uint64_t off = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "t.%s", ckpt_dtype_name(dts[i]));
        t[i].name = names[i];
        t[i].dtype = dts[i];
        t[i].ndim = 2;
        t[i].shape[0] = 3;
        t[i].shape[1] = i + 1;
        t[i].begin = off;
        off += 3 * (uint64_t)(i + 1) * ckpt__st_dtype_size(dts[i]);
        t[i].end = off;
    }
    t[10].name = "scalar";
    t[10].dtype = CKPT_I64;
    t[10].begin = off;
    t[10].end = off += 8;
    t[11].name = "empty";
    t[11].dtype = CKPT_F32;
    t[11].ndim = 8;
    for (int d = 0; d < 8; d++)
        t[11].shape[d] = d == 3 ? 0 : 2;
    t[11].begin = t[11].end = off;
    for (size_t i = 0; i < off; i++)
        if (i < sizeof data && (i % 2) == 0)
            data[i] = (uint8_t)(data[i] & 1); /* bools stay 0/1 */
    const char *mk[] = {"format", "ckpt.kind.scalar", "ckpt.kind.t.F32", "note"};
    const char *mv[] = {"pt", "state", "optimizer", "caf\xc3\xa9 \xe2\x80\xa8 \"q\" \\"};
    st_file("all-dtypes", t, 12, mk, mv, 4, data, (size_t)off);
    ckpt__st_tensor one = t[1];
    one.begin = 0;
    one.end = t[1].end - t[1].begin;
    st_file("one-tensor", &one, 1, NULL, NULL, 0, data, (size_t)one.end);
    st_file("no-tensors", NULL, 0, mk, mv, 1, NULL, 0);
    st_file("empty-header", NULL, 0, NULL, NULL, 0, NULL, 0);
    /* reversed order in the header: offsets need not follow it */
    ckpt__st_tensor rev[3];
    for (int i = 0; i < 3; i++) {
        rev[i] = t[2 - i];
        rev[i].name = names[2 - i];
    }
    st_file("reversed", rev, 3, NULL, NULL, 0, data, (size_t)t[2].end);
    /* unicode and long names */
    static char longname[300];
    memset(longname, 'n', 299);
    ckpt__st_tensor u = one;
    u.name = "\xe6\x9d\x83\xe9\x87\x8d.w\xc3\xa9ight";
    st_file("unicode-name", &u, 1, NULL, NULL, 0, data, (size_t)u.end);
    u.name = longname;
    st_file("long-name", &u, 1, NULL, NULL, 0, data, (size_t)u.end);

    /* hand-written JSON: escapes, whitespace, numbers, nesting, errors */
    st_raw("json-escapes",
           "{\"a\\u0062\\n\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
           "\"__metadata__\":{\"k\\\"\":\"v\\ud83d\\ude00\\/\"}}",
           data, 2);
    st_raw("json-spaces", " \t\n{ \"x\" : { \"shape\" : [ ] , \"dtype\" : \"BOOL\" , "
                          "\"data_offsets\" : [ 0 , 1 ] } }   ",
           (const uint8_t *)"\x01", 1);
    st_raw("json-nul-escape", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
           data, 1);
    st_raw("json-lone-surrogate", "{\"a\\ud800\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
           data, 1);
    st_raw("json-float-shape", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}",
           data, 1);
    st_raw("json-neg-shape", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}",
           data, 1);
    st_raw("json-big-number",
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551617],\"data_offsets\":[0,1]}}",
           data, 1);
    st_raw("json-extra-field",
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":[[[{}]]]}}", data, 1);
    st_raw("json-deep", "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", data, 0);
    st_raw("json-dup-key", "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
           data, 1);
    st_raw("json-9-dims",
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", data, 1);
    st_raw("json-trailing-comma", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],},}",
           data, 1);
    st_raw("json-meta-nested", "{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", data, 0);
    st_raw("json-not-object", "[1,2,3]", data, 0);
    st_raw("json-bad-utf8", "{\"\xc3\x28\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
           data, 1);
    st_raw("json-exp-number", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1e0],\"data_offsets\":[0,1]}}",
           data, 1);
    st_raw("json-leading-zero", "{\"a\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}",
           data, 1);
    seed("safetensors", "short", "\x01\x02", 2);
    seed("safetensors", "zero-len", "\0\0\0\0\0\0\0\0", 8);
    seed("safetensors", "huge-len", "\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10);
}

/* ---------------------------------------------------------------- codec */

static void codec_seeds(void)
{
    ckpt__codec_ctx *c;
    if (ckpt__codec_ctx_new(&c))
        exit(1);
    static const size_t ns[] = {0, 1, 7, 100, 4099, 20000};
    static const size_t es[] = {1, 2, 4, 8};
    uint64_t x = 1;
    int k = 0;
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        for (size_t ei = 0; ei < 4; ei++)
            for (int kind = 0; kind < 3; kind++)
                for (int withbase = 0; withbase < 2; withbase++) {
                    size_t n = ns[ni];
                    if ((ni + ei + (size_t)kind + (size_t)withbase) % 3 != 0)
                        continue; /* a third of the combinations: keep the corpus small */
                    uint8_t *src = malloc(n + 1), *base = malloc(n + 1);
                    for (size_t i = 0; i < n; i++) {
                        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                        if (kind == 0) { /* smooth f32-like values */
                            float f = (float)((i * 37) % 101) / 64.0f - 0.8f;
                            uint8_t fb[4];
                            memcpy(fb, &f, 4);
                            src[i] = fb[i % 4];
                        } else if (kind == 1) {
                            src[i] = (uint8_t)(x >> 56);
                        } else {
                            src[i] = (uint8_t)(i % 8 == 0 ? i / 8 : 0);
                        }
                    }
                    memcpy(base, src, n);
                    for (size_t i = 3; i < n; i += 97)
                        base[i] ^= 0x40;
                    size_t bn = withbase ? n : 0;
                    size_t cap = ckpt__codec_bound(n);
                    uint8_t *enc = malloc(cap + 1);
                    int codec;
                    size_t len;
                    if (ckpt__codec_encode(c, CKPT_CODEC_AUTO, 1, es[ei], src, n,
                                           withbase ? base : NULL, bn, enc, cap, &codec, &len)) {
                        fprintf(stderr, "encode: %s\n", ckpt_errmsg());
                        exit(1);
                    }
                    /* decode seed: op, base length, payload, base */
                    buf b = {0};
                    uint8_t hdr[3] = {(uint8_t)(codec | (codec != CKPT__CODEC_RAW ? 0x10 : 0)),
                                      (uint8_t)(codec == CKPT__CODEC_DELTA ? bn : 0),
                                      (uint8_t)((codec == CKPT__CODEC_DELTA ? bn : 0) >> 8)};
                    put(&b, hdr, 3);
                    put(&b, enc, len);
                    if (codec == CKPT__CODEC_DELTA)
                        put(&b, base, bn);
                    char name[64];
                    snprintf(name, sizeof name, "dec-%s-n%zu-e%zu-k%d-%d", ckpt__codec_name(codec),
                             n, es[ei], kind, k++);
                    seed("codec", name, b.p, b.n);
                    /* round-trip seed: mode, level, base kind, param, chunk */
                    if (n <= 4099) {
                        b.n = 0;
                        uint8_t rt[4] = {(uint8_t)(0x80 | (uint8_t)(withbase ? 3 : kind) |
                                                   (uint8_t)(ei << 2)),
                                         (uint8_t)(kind * 5), (uint8_t)(withbase ? 1 : 0), 2};
                        put(&b, rt, 4);
                        put(&b, src, n);
                        snprintf(name, sizeof name, "rt-n%zu-e%zu-k%d-%d", n, es[ei], kind, k++);
                        seed("codec", name, b.p, b.n);
                    }
                    free(b.p);
                    free(src);
                    free(base);
                    free(enc);
                }
    ckpt__codec_ctx_free(c);
}

/* ---------------------------------------------------------------- stores */

static void sqlite_file(const char *name, const char *sql, int mode)
{
    const char *p = fz_path("other.db");
    fz_remove_store(p);
    sqlite3 *db;
    if (sqlite3_open(p, &db) != SQLITE_OK || sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", name, sqlite3_errmsg(db));
        exit(1);
    }
    sqlite3_close(db);
    size_t n;
    uint8_t *f = fz_read_file(p, &n);
    uint8_t *in = malloc(n + 1);
    in[0] = (uint8_t)mode;
    memcpy(in + 1, f, n);
    seed("store_open", name, in, n + 1);
    free(in);
    free(f);
    fz_remove_store(p);
}

static void store_seeds(void)
{
    const char *tpl = fz_path("tpl");
    fz_make_template_store(tpl, 1);
    size_t mn, cn;
    uint8_t *m = fz_read_file(tpl, &mn), *c = fz_read_file(fz_path("tpl-chunks"), &cn);
    buf b = {0};
    for (int mode = 0; mode < 4; mode++) {
        b.n = 0;
        uint8_t mb = (uint8_t)mode;
        put(&b, &mb, 1);
        if (mode == 2) {
            uint8_t len[4] = {(uint8_t)mn, (uint8_t)(mn >> 8), (uint8_t)(mn >> 16),
                              (uint8_t)(mn >> 24)};
            put(&b, len, 4);
            put(&b, m, mn);
            put(&b, c, cn);
        } else {
            put(&b, mode == 1 ? c : m, mode == 1 ? cn : mn);
        }
        char name[32];
        snprintf(name, sizeof name, "template-mode%d", mode);
        seed("store_open", name, b.p, b.n);
    }
    /* the template main file cut short */
    b.n = 0;
    put(&b, "\0", 1);
    put(&b, m, mn / 2);
    seed("store_open", "template-main-half", b.p, b.n);
    /* an older schema: the main file needs migration 2 */
    {
        sqlite3 *db;
        if (sqlite3_open(tpl, &db) != SQLITE_OK ||
            sqlite3_exec(db, "DROP VIEW v_runs; PRAGMA user_version=1", NULL, NULL, NULL) !=
                SQLITE_OK)
            exit(1);
        sqlite3_close(db);
        size_t on;
        uint8_t *old = fz_read_file(tpl, &on);
        b.n = 0;
        put(&b, "\0", 1);
        put(&b, old, on);
        seed("store_open", "template-schema-v1", b.p, b.n);
        free(old);
    }
    fz_remove_store(tpl);
    /* a new empty store */
    ckpt_store *s;
    ckpt_open_opts o = {0, 1000, CKPT_DURABLE_OFF};
    if (ckpt_open(&s, tpl, &o) != CKPT_OK)
        exit(1);
    ckpt_close(s);
    free(m);
    free(c);
    static const char *const vac[] = {"tpl-chunks", "tpl"};
    for (int i = 0; i < 2; i++) {
        sqlite3 *db;
        if (sqlite3_open(fz_path(vac[i]), &db) != SQLITE_OK ||
            sqlite3_exec(db, "PRAGMA journal_mode=DELETE; PRAGMA page_size=1024; VACUUM", NULL,
                         NULL, NULL) != SQLITE_OK)
            exit(1);
        sqlite3_close(db);
    }
    m = fz_read_file(tpl, &mn);
    c = fz_read_file(fz_path("tpl-chunks"), &cn);
    b.n = 0;
    uint8_t two[5] = {2, (uint8_t)mn, (uint8_t)(mn >> 8), (uint8_t)(mn >> 16), (uint8_t)(mn >> 24)};
    put(&b, two, 5);
    put(&b, m, mn);
    put(&b, c, cn);
    seed("store_open", "new-empty-store", b.p, b.n);
    fz_remove_store(tpl);
    free(m);
    free(c);
    free(b.p);

    /* other applications' files */
    sqlite_file("other-app", "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);"
                             "INSERT INTO notes(body) VALUES ('hello'), ('world');", 3);
    sqlite_file("other-app-id", "PRAGMA application_id=1234; CREATE TABLE t(x);", 3);
    sqlite_file("empty-db-with-id", "PRAGMA application_id=1667985524;", 3);
    sqlite_file("newer-version",
                "PRAGMA application_id=1667985524; PRAGMA user_version=99; CREATE TABLE meta(key "
                "TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
                0);
    sqlite_file("ckpt-id-wrong-tables", "PRAGMA application_id=1667985524; PRAGMA user_version=2;"
                                        "CREATE TABLE meta(k, v); CREATE VIEW runs AS SELECT 1 AS name;",
                0);
    sqlite_file("wal-mode-other", "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(3000));", 3);
    sqlite_file("chunk-id-as-main", "PRAGMA application_id=1667985507; CREATE TABLE chunks(x);", 0);
    seed("store_open", "text-file", "\x03hello, this is not a database\n", 31);
    seed("store_open", "empty-file", "\x03", 1);
    seed("store_open", "magic-only", "\x03SQLite format 3\0", 17);
    uint8_t garbage[600];
    memcpy(garbage, "\x00SQLite format 3\0\x10\x00\x01\x01\x00\x40\x20\x20", 25);
    for (size_t i = 25; i < sizeof garbage; i++)
        garbage[i] = (uint8_t)(i * 31);
    seed("store_open", "magic-garbage", garbage, sizeof garbage);
}

static void store_sql_seeds(void)
{
    /* No edits: the template as built. Then each schema edit alone, and
     * for every column an UPDATE to an interesting value and a byte patch. */
    seed("store_sql", "no-edits", "", 0);
    for (unsigned i = 0; i < 20; i++) {
        uint8_t e[2] = {4, (uint8_t)i};
        char name[32];
        snprintf(name, sizeof name, "schema-edit-%u", i);
        seed("store_sql", name, e, 2);
    }
    static const int ncols[] = {11, 6, 4, 10, 11, 4, 4, 2, 6, 2};
    int k = 0;
    for (unsigned t = 0; t < 10; t++)
        for (int c = 0; c < ncols[t]; c++) {
            char name[48];
            /* UPDATE t.c of row 1 to an interesting int */
            uint8_t up[6] = {0, (uint8_t)t, (uint8_t)c, 1, 3, (uint8_t)(k * 7 % 27)};
            snprintf(name, sizeof name, "update-t%u-c%d", t, c);
            seed("store_sql", name, up, 6);
            if (t == 4 || t == 8 || (t == 0 && c == 4)) {
                /* patch 4 bytes at offset 13 of row 0 */
                uint8_t pa[10] = {3, (uint8_t)t, (uint8_t)c, 0, 13, 0, 3, 0xff, 0x00, 0x7f};
                snprintf(name, sizeof name, "patch-t%u-c%d", t, c);
                seed("store_sql", name, pa, 10);
            }
            k++;
        }
    /* id pointing at another row's id; a copy of a row */
    uint8_t ref[6] = {5, 3, 6, 0, 2, 0}; /* checkpoints.parent_id of row 0 = row 2's */
    seed("store_sql", "parent-from-row", ref, 5);
    uint8_t cp[8] = {2, 8, 1, 0, 6, 16, 'h', 'a'}; /* copy chunk 0 with a new hash */
    seed("store_sql", "copy-chunk", cp, 8);
}

static void ref_seeds(void)
{
    static const char *const refs[] = {
        "run", "run@0", "run@12", "a@b@1", "@1", "run@", "run@-1", "run@+1", "run@ 1", "run@1x",
        "run@9223372036854775807", "run@9223372036854775808", "run@007", "r\x01x", "r\x7f",
        "-5", "0", "007", "-0", "18446744073709551616", "-9223372036854775808",
        "-9223372036854775809", "", "-", "1e3", "0x10", " 1", "1 ", "+1", "caf\xc3\xa9@3",
    };
    static const uint8_t caps[] = {0, 1, 4, 64, 255};
    int k = 0;
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
        uint8_t b[300];
        size_t n = strlen(refs[i]);
        b[0] = caps[i % 5] ? caps[i % 5] : 16;
        b[1] = (uint8_t)(i % 9);
        b[2] = (uint8_t)(8 - i % 9);
        memcpy(b + 3, refs[i], n);
        char name[32];
        snprintf(name, sizeof name, "arg-%d", k++);
        seed("ref", name, b, n + 3);
    }
    uint8_t b[300];
    b[0] = 255, b[1] = 0, b[2] = 8;
    memset(b + 3, 'r', 257);
    seed("ref", "long-run-257", b, 260);
    memcpy(b + 3 + 256, "@5", 2);
    seed("ref", "long-run-256", b, 261);
    b[0] = 0;
    seed("ref", "cap-0", b, 6);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR (run from the source root)\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    mkdir(outdir, 0777);
    config_seeds();
    safetensors_seeds();
    codec_seeds();
    store_seeds();
    store_sql_seeds();
    ref_seeds();
    return 0;
}
