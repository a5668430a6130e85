/*
 * test_config.c - ckpt_config_flatten(): flattening, core-schema types, every
 * rejection of hostile configs (with where it was found), bombs and limits,
 * and ckpt__config_read_file().
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "ckpt.h"
#include "config.h"
#include "error.h"

/* in error.c; lets the test route ckpt__malloc without touching SQLite */

/* ---------------------------------------------------------------- helpers */

typedef struct param {
    char *key, *val;
    int type;
} param;

typedef struct collect {
    param *p;
    size_t n, cap;
    size_t stop_at; /* stop (return stop_rc) at the stop_at-th call; 0 never */
    int stop_rc;
} collect;

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

static int collect_fn(void *ctx, const char *key, const char *value, int type)
{
    collect *c = ctx;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->p = realloc(c->p, c->cap * sizeof *c->p);
        assert_non_null(c->p);
    }
    c->p[c->n++] = (param){xstrdup(key), xstrdup(value), type};
    if (c->stop_at && c->n == c->stop_at)
        return c->stop_rc;
    return 0;
}

static void collect_free(collect *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->p[i].key);
        free(c->p[i].val);
    }
    free(c->p);
    memset(c, 0, sizeof *c);
}

static int flatten(const char *yaml, collect *c)
{
    return ckpt_config_flatten(yaml, strlen(yaml), collect_fn, c);
}

static void check_param(const collect *c, size_t i, const char *key, const char *val, int type)
{
    if (i >= c->n)
        fail_msg("param %zu (%s) missing: only %zu params", i, key, c->n);
    if (strcmp(c->p[i].key, key) || strcmp(c->p[i].val, val) || c->p[i].type != type)
        fail_msg("param %zu: got (%s, %s, %d), want (%s, %s, %d)", i, c->p[i].key, c->p[i].val,
                 c->p[i].type, key, val, type);
}

/* The only param of "k: <text>". */
static void check_single(const char *yaml, const char *key, const char *val, int type)
{
    collect c = {0};
    int rc = flatten(yaml, &c);
    if (rc != CKPT_OK)
        fail_msg("'%s' rejected: %s", yaml, ckpt_errmsg());
    if (c.n != 1)
        fail_msg("'%s' gave %zu params", yaml, c.n);
    check_param(&c, 0, key, val, type);
    collect_free(&c);
}

/* Rejected with CKPT_EINVAL, no param emitted past the error, and every
 * needle in the message. */
static void reject_n(const char *yaml, size_t len, const char *const *needles)
{
    collect c = {0};
    int rc = ckpt_config_flatten(yaml, len, collect_fn, &c);
    const char *msg = ckpt_errmsg();
    if (rc != CKPT_EINVAL)
        fail_msg("'%.60s' gave %d, want CKPT_EINVAL (message: %s)", yaml, rc, msg);
    for (; *needles; needles++)
        if (!strstr(msg, *needles))
            fail_msg("message for '%.60s' is \"%s\": lacks \"%s\"", yaml, msg, *needles);
    collect_free(&c);
}
#define REJECT(yaml, ...) reject_n((yaml), strlen(yaml), (const char *const[]){__VA_ARGS__, NULL})
#define REJECT_N(yaml, len, ...) reject_n((yaml), (len), (const char *const[]){__VA_ARGS__, NULL})

static char *repeat(const char *prefix, const char *unit, size_t times, const char *suffix)
{
    size_t pl = strlen(prefix), ul = strlen(unit), sl = strlen(suffix);
    char *s = malloc(pl + ul * times + sl + 1);
    assert_non_null(s);
    memcpy(s, prefix, pl);
    for (size_t i = 0; i < times; i++)
        memcpy(s + pl + i * ul, unit, ul);
    memcpy(s + pl + ul * times, suffix, sl + 1);
    return s;
}

/* CPU time of this process: the timing guards below catch quadratic
 * blow-ups, and must not trip on a busy shared machine. The bounds are loose
 * enough for valgrind. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- flattening */

static const char trainer_yaml[] =
    "# demo trainer\n"
    "model:\n"
    "  hidden: [32]\n"
    "  activation: relu\n"
    "optimizer:\n"
    "  name: adam\n"
    "  lr: 0.001\n"
    "  betas: [0.9, 0.999]\n"
    "  eps: 1e-8\n"
    "data:\n"
    "  batch_size: 32\n"
    "  dir: /usr/share/datasets/fashion-mnist\n"
    "epochs: 5\n"
    "seed: 42\n";

static void test_config__trainer_config_flattens_in_document_order(void **state)
{
    collect c = {0};
    assert_int_equal(flatten(trainer_yaml, &c), CKPT_OK);
    assert_int_equal(c.n, 10);
    check_param(&c, 0, "model.hidden", "[32]", CKPT_PARAM_T_LIST);
    check_param(&c, 1, "model.activation", "relu", CKPT_PARAM_T_STRING);
    check_param(&c, 2, "optimizer.name", "adam", CKPT_PARAM_T_STRING);
    check_param(&c, 3, "optimizer.lr", "0.001", CKPT_PARAM_T_FLOAT);
    check_param(&c, 4, "optimizer.betas", "[0.9, 0.999]", CKPT_PARAM_T_LIST);
    check_param(&c, 5, "optimizer.eps", "1e-8", CKPT_PARAM_T_FLOAT);
    check_param(&c, 6, "data.batch_size", "32", CKPT_PARAM_T_INT);
    check_param(&c, 7, "data.dir", "/usr/share/datasets/fashion-mnist", CKPT_PARAM_T_STRING);
    check_param(&c, 8, "epochs", "5", CKPT_PARAM_T_INT);
    check_param(&c, 9, "seed", "42", CKPT_PARAM_T_INT);
    collect_free(&c);
}

static void test_config__plain_scalars_resolve_by_yaml12_core_schema(void **state)
{
    static const struct {
        const char *text, *value;
        int type;
    } cases[] = {
        {"", "null", CKPT_PARAM_T_NULL},       {"~", "null", CKPT_PARAM_T_NULL},
        {"null", "null", CKPT_PARAM_T_NULL},   {"Null", "null", CKPT_PARAM_T_NULL},
        {"NULL", "null", CKPT_PARAM_T_NULL},   {"nUll", "nUll", CKPT_PARAM_T_STRING},
        {"true", "true", CKPT_PARAM_T_BOOL},   {"True", "true", CKPT_PARAM_T_BOOL},
        {"TRUE", "true", CKPT_PARAM_T_BOOL},   {"false", "false", CKPT_PARAM_T_BOOL},
        {"False", "false", CKPT_PARAM_T_BOOL}, {"FALSE", "false", CKPT_PARAM_T_BOOL},
        {"tRUE", "tRUE", CKPT_PARAM_T_STRING}, {"yes", "yes", CKPT_PARAM_T_STRING},
        {"no", "no", CKPT_PARAM_T_STRING},     {"on", "on", CKPT_PARAM_T_STRING},
        {"off", "off", CKPT_PARAM_T_STRING},   {"0", "0", CKPT_PARAM_T_INT},
        {"-17", "-17", CKPT_PARAM_T_INT},      {"+5", "+5", CKPT_PARAM_T_INT},
        {"007", "007", CKPT_PARAM_T_INT},      {"0x1F", "0x1F", CKPT_PARAM_T_INT},
        {"0o17", "0o17", CKPT_PARAM_T_INT},    {"0x", "0x", CKPT_PARAM_T_STRING},
        {"0o8", "0o8", CKPT_PARAM_T_STRING},   {"-0x10", "-0x10", CKPT_PARAM_T_STRING},
        {"0X10", "0X10", CKPT_PARAM_T_STRING}, {"1_000", "1_000", CKPT_PARAM_T_STRING},
        {"0b101", "0b101", CKPT_PARAM_T_STRING}, {"1.5", "1.5", CKPT_PARAM_T_FLOAT},
        {"-1.5", "-1.5", CKPT_PARAM_T_FLOAT},  {".5", ".5", CKPT_PARAM_T_FLOAT},
        {"+.5", "+.5", CKPT_PARAM_T_FLOAT},    {"1.", "1.", CKPT_PARAM_T_FLOAT},
        {"1e-3", "1e-3", CKPT_PARAM_T_FLOAT},  {"1E+10", "1E+10", CKPT_PARAM_T_FLOAT},
        {"2.5e3", "2.5e3", CKPT_PARAM_T_FLOAT}, {".inf", ".inf", CKPT_PARAM_T_FLOAT},
        {"-.inf", "-.inf", CKPT_PARAM_T_FLOAT}, {"+.Inf", "+.Inf", CKPT_PARAM_T_FLOAT},
        {".INF", ".INF", CKPT_PARAM_T_FLOAT},  {".nan", ".nan", CKPT_PARAM_T_FLOAT},
        {".NaN", ".NaN", CKPT_PARAM_T_FLOAT},  {"-.nan", "-.nan", CKPT_PARAM_T_STRING},
        {"1e", "1e", CKPT_PARAM_T_STRING},     {".", ".", CKPT_PARAM_T_STRING},
        {"e5", "e5", CKPT_PARAM_T_STRING},     {"1.2.3", "1.2.3", CKPT_PARAM_T_STRING},
        {"inf", "inf", CKPT_PARAM_T_STRING},   {"nan", "nan", CKPT_PARAM_T_STRING},
        {"1e5x", "1e5x", CKPT_PARAM_T_STRING}, {"12 monkeys", "12 monkeys", CKPT_PARAM_T_STRING},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[64];
        snprintf(yaml, sizeof yaml, "v: %s\n", cases[i].text);
        check_single(yaml, "v", cases[i].value, cases[i].type);
    }
}

static void test_config__quoted_and_block_scalars_are_strings(void **state)
{
    collect c = {0};
    assert_int_equal(flatten("a: \"5\"\nb: 'true'\nc: \"null\"\nd: |\n  12\ne: ''\nf: >-\n  1.5\n", &c),
                     CKPT_OK);
    assert_int_equal(c.n, 6);
    check_param(&c, 0, "a", "5", CKPT_PARAM_T_STRING);
    check_param(&c, 1, "b", "true", CKPT_PARAM_T_STRING);
    check_param(&c, 2, "c", "null", CKPT_PARAM_T_STRING);
    check_param(&c, 3, "d", "12\n", CKPT_PARAM_T_STRING);
    check_param(&c, 4, "e", "", CKPT_PARAM_T_STRING);
    check_param(&c, 5, "f", "1.5", CKPT_PARAM_T_STRING);
    collect_free(&c);
}

static void test_config__standard_tags_set_the_type(void **state)
{
    collect c = {0};
    assert_int_equal(flatten("a: !!str 5\nb: !!int \"7\"\nc: !!float 1\nd: !!bool \"TRUE\"\n"
                             "e: !!null ''\nf: !!float -.inf\n!!str 8: x\n",
                             &c),
                     CKPT_OK);
    assert_int_equal(c.n, 7);
    check_param(&c, 0, "a", "5", CKPT_PARAM_T_STRING);
    check_param(&c, 1, "b", "7", CKPT_PARAM_T_INT);
    check_param(&c, 2, "c", "1", CKPT_PARAM_T_FLOAT);
    check_param(&c, 3, "d", "true", CKPT_PARAM_T_BOOL);
    check_param(&c, 4, "e", "null", CKPT_PARAM_T_NULL);
    check_param(&c, 5, "f", "-.inf", CKPT_PARAM_T_FLOAT);
    check_param(&c, 6, "8", "x", CKPT_PARAM_T_STRING);
    collect_free(&c);

    REJECT("ok: 1\nn: !!int abc\n", "config line 2, column 4:", "'abc'", "'n'", "!!int");
    REJECT("n: !!bool yes\n", "line 1", "'yes'", "!!bool");
    REJECT("n: !!null 0\n", "line 1", "!!null");
    REJECT("n: !!float 0x10\n", "line 1", "!!float");
}

static void test_config__rejects_tags_other_than_the_standard_scalar_ones(void **state)
{
    REJECT("a: 1\nrun: !!python/object/apply:os.system [\"rm -rf /\"]\n", "config line 2, column 6:",
           "'!!python/object/apply:os.system'", "'run'");
    REJECT("x: !!python/str abc\n", "line 1", "'!!python/str'", "'x'");
    REJECT("x: !!binary aGVsbG8=\n", "line 1", "'!!binary'");
    REJECT("x: !custom 1\n", "line 1", "'!custom'");
    REJECT("x: ! 1\n", "line 1", "'!'", "not allowed");
    REJECT("x: !<tag:yaml.org,2002:set> {a: 1}\n", "line 1", "'!!set'", "mapping");
    REJECT("x: !!map {a: 1}\n", "line 1", "'!!map'", "on a mapping");
    REJECT("x: !!seq [1]\n", "line 1", "'!!seq'", "on a sequence");
    REJECT("!!python/name:os.system x: 1\n", "line 1", "'!!python/name:os.system'");
    /* a %TAG directive that redefines !! must not make a custom tag pass */
    REJECT("%TAG !! tag:evil.example,2000:\n---\nx: !!str 1\n", "config line 3, column 4:",
           "'tag:evil.example,2000:str'");
}

static void test_config__scalar_sequence_becomes_one_list_param(void **state)
{
    const char *yaml = "l: [relu, \"say \\\"hi\\\"\", 'back\\slash', 1, 0x1F, 2.5, True, ~, \"\", "
                       "\"a\\nb\\tc\\x01\", caf\xc3\xa9]\n"
                       "s:\n  - 1024\n  - 1024\n"
                       "e: []\n";
    const char *want = "[\"relu\", \"say \\\"hi\\\"\", \"back\\\\slash\", 1, 0x1F, 2.5, true, null, "
                       "\"\", \"a\\nb\\tc\\u0001\", \"caf\xc3\xa9\"]";
    collect c = {0};
    assert_int_equal(flatten(yaml, &c), CKPT_OK);
    assert_int_equal(c.n, 3);
    check_param(&c, 0, "l", want, CKPT_PARAM_T_LIST);
    check_param(&c, 1, "s", "[1024, 1024]", CKPT_PARAM_T_LIST);
    check_param(&c, 2, "e", "[]", CKPT_PARAM_T_LIST);

    /* YAML line breaks and characters libyaml refuses raw are escaped */
    check_single("l: [\"a\\Nb\\Lc\\Pd\\x7f\\x80\\uFEFF\\uFFFE\\u00e9\"]\n", "l",
                 "[\"a\\u0085b\\u2028c\\u2029d\\u007f\\u0080\\ufeff\\ufffe\xc3\xa9\"]",
                 CKPT_PARAM_T_LIST);
    check_single("l: [\"a\\u0085b\\u2028c\\u2029d\\u007f\\u0080\\ufeff\\ufffe\xc3\xa9\"]\n", "l",
                 "[\"a\\u0085b\\u2028c\\u2029d\\u007f\\u0080\\ufeff\\ufffe\xc3\xa9\"]",
                 CKPT_PARAM_T_LIST);

    /* the list text is itself YAML (flow) and reads back to the same list */
    char *again = malloc(strlen(want) + 8);
    assert_non_null(again);
    snprintf(again, strlen(want) + 8, "l: %s\n", want);
    check_single(again, "l", want, CKPT_PARAM_T_LIST);
    free(again);
    collect_free(&c);
}

static void test_config__nested_sequences_get_index_components(void **state)
{
    const char *yaml = "layers:\n"
                       "  - {width: 64, act: relu}\n"
                       "  - width: 32\n"
                       "    act: tanh\n"
                       "mixed: [1, two, [3, 4], {k: v}, 5, []]\n"
                       "grid: [[1, 2], [3]]\n"
                       "deep: [[[x]]]\n";
    collect c = {0};
    assert_int_equal(flatten(yaml, &c), CKPT_OK);
    size_t i = 0;
    check_param(&c, i++, "layers.0.width", "64", CKPT_PARAM_T_INT);
    check_param(&c, i++, "layers.0.act", "relu", CKPT_PARAM_T_STRING);
    check_param(&c, i++, "layers.1.width", "32", CKPT_PARAM_T_INT);
    check_param(&c, i++, "layers.1.act", "tanh", CKPT_PARAM_T_STRING);
    check_param(&c, i++, "mixed.0", "1", CKPT_PARAM_T_INT);
    check_param(&c, i++, "mixed.1", "two", CKPT_PARAM_T_STRING);
    check_param(&c, i++, "mixed.2", "[3, 4]", CKPT_PARAM_T_LIST);
    check_param(&c, i++, "mixed.3.k", "v", CKPT_PARAM_T_STRING);
    check_param(&c, i++, "mixed.4", "5", CKPT_PARAM_T_INT);
    check_param(&c, i++, "mixed.5", "[]", CKPT_PARAM_T_LIST);
    check_param(&c, i++, "grid.0", "[1, 2]", CKPT_PARAM_T_LIST);
    check_param(&c, i++, "grid.1", "[3]", CKPT_PARAM_T_LIST);
    check_param(&c, i++, "deep.0.0", "[\"x\"]", CKPT_PARAM_T_LIST);
    assert_int_equal(c.n, i);
    collect_free(&c);
}

static void test_config__empty_mapping_gives_no_param_empty_sequence_gives_empty_list(void **state)
{
    collect c = {0};
    assert_int_equal(flatten("a: {}\nb: []\nc: {d: {}}\ne: 1\nf: [{}, {g: 2}]\n", &c), CKPT_OK);
    assert_int_equal(c.n, 3);
    check_param(&c, 0, "b", "[]", CKPT_PARAM_T_LIST);
    check_param(&c, 1, "e", "1", CKPT_PARAM_T_INT);
    check_param(&c, 2, "f.1.g", "2", CKPT_PARAM_T_INT);
    collect_free(&c);
}

static void test_config__empty_documents_have_no_params(void **state)
{
    static const char *docs[] = {"", "---\n", "# only a comment\n", "~\n", "null", "---\n...\n",
                                 "\n\n\n"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        collect c = {0};
        int rc = flatten(docs[i], &c);
        if (rc != CKPT_OK)
            fail_msg("'%s' rejected: %s", docs[i], ckpt_errmsg());
        assert_int_equal(c.n, 0);
    }
    assert_int_equal(ckpt_config_flatten(NULL, 0, collect_fn, NULL), CKPT_OK);
    assert_int_equal(ckpt_config_flatten(NULL, 5, NULL, NULL), CKPT_EINVAL);
}

static void test_config__non_ascii_keys_and_values_pass_through(void **state)
{
    check_single("na\xc3\xafve: caf\xc3\xa9 \xe2\x98\x95\n", "na\xc3\xafve", "caf\xc3\xa9 \xe2\x98\x95",
                 CKPT_PARAM_T_STRING);
    /* a UTF-8 byte order mark is allowed and not part of the first key */
    check_single("\xef\xbb\xbf" "a: 1\n", "a", "1", CKPT_PARAM_T_INT);
}

/* ---------------------------------------------------------------- rejections */

static void test_config__rejects_document_over_1mib_before_parsing(void **state)
{
    size_t n = CKPT__CONFIG_MAX_BYTES + 1;
    char *big = malloc(n);
    assert_non_null(big);
    /* not YAML at all: the message shows the size check ran first */
    memset(big, 0, n);
    REJECT_N(big, n, "1048577 bytes", "1 MiB");

    /* exactly 1 MiB is fine */
    memcpy(big, "a: ", 3);
    memset(big + 3, 'x', n - 1 - 4);
    big[n - 2] = '\n';
    collect c = {0};
    assert_int_equal(ckpt_config_flatten(big, n - 1, collect_fn, &c), CKPT_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(strlen(c.p[0].val), n - 1 - 4);
    collect_free(&c);
    free(big);
}

static void test_config__rejects_anchors_and_aliases(void **state)
{
    REJECT("base: &b {lr: 1}\nother: *b\n", "config line 1, column 7:", "'&b'", "'base'",
           "anchors and aliases are not allowed");
    REJECT("a: 1\nb: *nowhere\n", "config line 2, column 4:", "'*nowhere'", "'b'");
    REJECT("a: &x 1\n", "line 1", "'&x'", "'a'");
    REJECT("&k a: 1\n", "line 1", "'&k'");
    REJECT("&top {a: 1}\n", "line 1", "'&top'", "top level");
    REJECT("model:\n  layers:\n    - {a: 1}\n    - &x [1]\n", "config line 4, column 7:",
           "'model.layers.1'");
    REJECT("l: [1, *x]\n", "line 1", "'l.1'");
}

static void test_config__billion_laughs_fails_at_first_anchor(void **state)
{
    const char *bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                       "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                       "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                       "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                       "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                       "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
                       "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
                       "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    collect c = {0};
    double t0 = now_s();
    assert_int_equal(flatten(bomb, &c), CKPT_EINVAL);
    assert_true(now_s() - t0 < 5.0);
    assert_int_equal(c.n, 0);
    assert_non_null(strstr(ckpt_errmsg(), "config line 1, column 4:"));
    collect_free(&c);

    /* the same bomb written with anchors only on later, deeper nodes */
    REJECT("x: 1\ny:\n  z: [[&a lol, lol], *a, *a]\n", "config line 3, column 8:", "'y.z.0.0'");
}

static void test_config__nesting_deeper_than_64_is_rejected(void **state)
{
    /* the root mapping is level 1: 64 mappings deep is the limit */
    char *ok = repeat("", "{a: ", 64, "1");
    char *ok2 = repeat(ok, "}", 64, "");
    collect c = {0};
    assert_int_equal(flatten(ok2, &c), CKPT_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(strlen(c.p[0].key), 64 * 2 - 1);
    collect_free(&c);
    free(ok);
    free(ok2);

    char *bad = repeat("", "{a: ", 65, "1");
    REJECT(bad, "config line 1, column 257:", "nesting deeper than 64");
    free(bad);

    /* root mapping + 63 sequences */
    char *seq = repeat("a: ", "[", 63, "");
    char *seq2 = repeat(seq, "]", 63, "");
    assert_int_equal(flatten(seq2, &c), CKPT_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.p[0].val, "[]");
    collect_free(&c);
    free(seq);
    free(seq2);
    char *seq_bad = repeat("a: ", "[", 64, "");
    REJECT(seq_bad, "config line 1, column 67:", "nesting deeper than 64", "'a.0.0.0");
    free(seq_bad);
}

static void test_config__ten_thousand_deep_nesting_fails_fast(void **state)
{
    double t0 = now_s();
    char *s = repeat("a: ", "[", 10000, "");
    REJECT(s, "column 67:", "nesting deeper than 64");
    free(s);
    s = repeat("", "{a: ", 10000, "");
    REJECT(s, "column 257:", "nesting deeper than 64");
    free(s);
    s = repeat("", "[", 10000, "");
    REJECT(s, "config line 1, column 1:", "top level must be a mapping");
    free(s);
    s = repeat("a:\n", "- ", 10000, "1\n");
    REJECT(s, "config line 2, column 127:", "nesting deeper than 64");
    free(s);
    /* a whole MiB of tiny collections */
    s = repeat("a: ", "[", CKPT__CONFIG_MAX_BYTES - 3, "");
    REJECT(s, "nesting deeper than 64");
    free(s);
    s = repeat("a: ", "{b: ", (CKPT__CONFIG_MAX_BYTES - 3) / 4, "");
    REJECT(s, "nesting deeper than 64");
    free(s);
    double dt = now_s() - t0;
    if (dt > 10.0)
        fail_msg("deep nesting took %.2f s of CPU", dt);
}

static void test_config__rejects_duplicate_keys_with_path_and_both_lines(void **state)
{
    collect c = {0};
    assert_int_equal(flatten("optimizer:\n  name: adam\n  lr: 0.1\n  lr: 0.01\n", &c), CKPT_EINVAL);
    assert_string_equal(ckpt_errmsg(),
                        "config line 4, column 3: duplicate key 'optimizer.lr' (first at line 3)");
    collect_free(&c);
    REJECT("a: 1\nb: 2\na: 3\n", "config line 3, column 1:", "duplicate key 'a'", "line 1");
    /* keys are compared as text: 0 and "0" flatten to the same path */
    REJECT("x: {0: a, \"0\": b}\n", "config line 1, column 11:", "duplicate key 'x.0'");
    REJECT("l:\n  - {k: 1}\n  - {k: 2, k: 3}\n", "config line 3, column 12:", "'l.1.k'");
    /* the same key in different mappings is fine */
    assert_int_equal(flatten("a: {x: 1}\nb: {x: 2}\nl: [{x: 1}, {x: 2}]\nx: 3\n", &c), CKPT_OK);
    assert_int_equal(c.n, 5);
    collect_free(&c);
}

static void test_config__rejects_collection_empty_and_dotted_keys(void **state)
{
    REJECT("{a: 1}: x\n", "config line 1, column 1:", "a mapping cannot be a key");
    REJECT("m:\n  ? [a, b]\n  : 1\n", "config line 2, column 5:", "a sequence cannot be a key",
           "'m'");
    REJECT("m:\n  \"\": 1\n", "config line 2, column 3:", "empty key at 'm'");
    REJECT("\"\": 1\n", "config line 1, column 1:", "empty key at the top level");
    REJECT("a: 1\n?\n: 2\n", "config line 2, column 2:", "empty key at the top level");
    REJECT("model:\n  a.b: 1\n", "config line 2, column 3:", "key 'a.b' at 'model'", "'.'");
    REJECT("\"a\\tb\": 1\n", "line 1", "control or line-break character (U+0009)", "'a\\x09b'");
    REJECT("\"a\\Nb\": 1\n", "line 1", "(U+0085)", "'a\\u0085b'");
    REJECT("\"a\\x9bb\": 1\n", "line 1", "(U+009B)", "'a\\u009bb'");
    REJECT("\"a\\Lb\": 1\n", "line 1", "(U+2028)");
    REJECT("\"a\\0b\": 1\n", "line 1", "key", "NUL");
}

static void test_config__rejects_second_document_and_non_mapping_top_level(void **state)
{
    REJECT("a: 1\n---\nb: 2\n", "config line 2, column 1:", "second YAML document");
    REJECT("---\n...\n---\n", "config line 3, column 1:", "second YAML document");
    REJECT("- 1\n- 2\n", "config line 1, column 1:", "top level must be a mapping",
           "not a sequence");
    REJECT("hello\n", "config line 1, column 1:", "not a scalar");
    REJECT("\"\"\n", "config line 1, column 1:", "not a scalar");
    REJECT("!!null ~\n", "line 1", "not a scalar");
}

static void test_config__rejects_nul_bytes_and_invalid_utf8(void **state)
{
    static const char nul[] = "a: 1\nb: x\0y\n";
    REJECT_N(nul, sizeof nul - 1, "config line 2, column 5:", "control characters",
             "offset 9");
    REJECT("a: 1\nb: \xff\n", "config line 2, column 4:", "invalid leading UTF-8 octet",
           "0xFF");
    /* libyaml points at the octet that broke the sequence */
    REJECT("a: \xc3\xa9\xc3\n", "config line 1, column 6:", "invalid trailing UTF-8 octet");
    REJECT("a: \xc3", "config line 1, column 4:", "incomplete UTF-8");
    REJECT("a: \xed\xa0\x80\n", "line 1", "UTF-8"); /* an encoded surrogate */
    static const char utf16[] = "\xff\xfe" "a\0:\0 \0" "1\0\n\0";
    REJECT_N(utf16, sizeof utf16 - 1, "config line 1, column 1:", "UTF-8");
    /* a NUL made with an escape is as bad as a raw one */
    REJECT("a: \"x\\0y\"\n", "config line 1, column 4:", "value at 'a' contains a NUL");
    REJECT("l: [\"x\\u0000\"]\n", "line 1", "'l.0'", "NUL");
}

static void test_config__reports_libyaml_errors_with_problem_and_mark(void **state)
{
    REJECT("a: 1\n b: 2\n", "config line 2, column 3:",
           "mapping values are not allowed in this context");
    REJECT("a: [1, 2\nb: 3\n", "did not find expected ',' or ']'",
           "while parsing a flow sequence at line 1, column 4");
    REJECT("a:\n  b: 'unterminated\n", "found unexpected end of stream", "line 2, column 6");
    REJECT("a:\n\tb: 1\n", "config line 2, column 1:", "found character that cannot start any token");
    REJECT("a: \"\\ud800\"\n", "config line 1, column 7:", "invalid Unicode character escape");
}

static void test_config__rejects_integers_outside_int64(void **state)
{
    check_single("s: 9223372036854775807\n", "s", "9223372036854775807", CKPT_PARAM_T_INT);
    check_single("s: -9223372036854775808\n", "s", "-9223372036854775808", CKPT_PARAM_T_INT);
    check_single("s: 0x7FFFFFFFFFFFFFFF\n", "s", "0x7FFFFFFFFFFFFFFF", CKPT_PARAM_T_INT);
    check_single("s: '9223372036854775808'\n", "s", "9223372036854775808", CKPT_PARAM_T_STRING);
    REJECT("x: 1\nseed: 9223372036854775808\n", "config line 2, column 7:", "'seed'",
           "does not fit in 64 bits", "quote it");
    REJECT("m: 0x8000000000000000\n", "line 1", "'m'", "64 bits");
    REJECT("m: 0o1777777777777777777777\n", "line 1", "64 bits");
    REJECT("l: [1, -9223372036854775809]\n", "line 1", "'l.1'", "64 bits");
}

/* "k0: 0\n" ... : n keys */
static char *many_keys(size_t n)
{
    size_t cap = n * 16 + 1, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "k%zu: %zu\n", i, i % 10);
    return s;
}

static void test_config__limits_parameter_count(void **state)
{
    double t0 = now_s();
    char *s = many_keys(CKPT__CONFIG_MAX_PARAMS);
    assert_true(strlen(s) <= CKPT__CONFIG_MAX_BYTES);
    assert_int_equal(ckpt_config_flatten(s, strlen(s), NULL, NULL), CKPT_OK);
    free(s);
    s = many_keys(CKPT__CONFIG_MAX_PARAMS + 1);
    assert_true(strlen(s) <= CKPT__CONFIG_MAX_BYTES);
    REJECT(s, "config line 100001, column 10:", "more than 100000 parameters", "'k100000'");
    free(s);
    double dt = now_s() - t0;
    if (dt > 30.0)
        fail_msg("200,000 keys took %.2f s of CPU", dt);
}

static void test_config__limits_flattened_key_length(void **state)
{
    /* explicit keys: libyaml caps implicit ones at 1024 characters */
    char *k = repeat("? ", "k", CKPT__CONFIG_MAX_KEY, "\n: 1\n");
    collect c = {0};
    assert_int_equal(flatten(k, &c), CKPT_OK);
    assert_int_equal(strlen(c.p[0].key), CKPT__CONFIG_MAX_KEY);
    collect_free(&c);
    free(k);
    k = repeat("? ", "k", CKPT__CONFIG_MAX_KEY + 1, "\n: 1\n");
    REJECT(k, "config line 1, column 3:", "longer than 1024 bytes");
    free(k);
    /* two keys that are fine alone but not joined */
    char *outer = repeat("", "a", 600, ":\n  ");
    char *both = repeat(outer, "b", 500, ": 1\n");
    REJECT(both, "config line 2, column 3:", "longer than 1024 bytes", "at 'aaaa");
    free(outer);
    free(both);
}

/* ---------------------------------------------------------------- callback */

static int failing_fn(void *ctx, const char *key, const char *value, int type)
{
    int *calls = ctx;
    if (++*calls == 2)
        return ckpt__err(CKPT_EIO, "callback failed at %s", key);
    return 0;
}

static void test_config__callback_nonzero_stops_and_is_returned(void **state)
{
    collect c = {.stop_at = 3, .stop_rc = 77};
    assert_int_equal(flatten(trainer_yaml, &c), 77);
    assert_int_equal(c.n, 3);
    check_param(&c, 2, "optimizer.name", "adam", CKPT_PARAM_T_STRING);
    collect_free(&c);

    /* the callback's own message is kept */
    int calls = 0;
    assert_int_equal(ckpt_config_flatten(trainer_yaml, strlen(trainer_yaml), failing_fn, &calls),
                     CKPT_EIO);
    assert_int_equal(calls, 2);
    assert_string_equal(ckpt_errmsg(), "callback failed at model.activation");

    /* stopping while the items of a mixed sequence are flushed, and on a list */
    c = (collect){.stop_at = 2, .stop_rc = -100};
    assert_int_equal(flatten("m: [1, 2, 3, {a: 4}]\n", &c), -100);
    assert_int_equal(c.n, 2);
    check_param(&c, 1, "m.1", "2", CKPT_PARAM_T_INT);
    collect_free(&c);
    c = (collect){.stop_at = 1, .stop_rc = 5};
    assert_int_equal(flatten("m: [1, 2]\nn: 3\n", &c), 5);
    assert_int_equal(c.n, 1);
    collect_free(&c);
}

static void test_config__null_callback_only_validates(void **state)
{
    assert_int_equal(ckpt_config_flatten(trainer_yaml, strlen(trainer_yaml), NULL, NULL), CKPT_OK);
    assert_int_equal(ckpt_config_flatten("a: 1\na: 2\n", 10, NULL, NULL), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "duplicate key 'a'"));
}

/* ---------------------------------------------------------------- value helpers */

static void test_config__int_and_float_texts_convert_to_values(void **state)
{
    int64_t v = 0;
    assert_int_equal(ckpt__config_int_value("0x1F", &v), CKPT_OK);
    assert_int_equal(v, 31);
    assert_int_equal(ckpt__config_int_value("0o17", &v), CKPT_OK);
    assert_int_equal(v, 15);
    assert_int_equal(ckpt__config_int_value("-42", &v), CKPT_OK);
    assert_int_equal(v, -42);
    assert_int_equal(ckpt__config_int_value("+7", &v), CKPT_OK);
    assert_int_equal(v, 7);
    assert_int_equal(ckpt__config_int_value("007", &v), CKPT_OK);
    assert_int_equal(v, 7);
    assert_int_equal(ckpt__config_int_value("-9223372036854775808", &v), CKPT_OK);
    assert_true(v == INT64_MIN);
    assert_int_equal(ckpt__config_int_value("9223372036854775808", &v), CKPT_EINVAL);
    assert_int_equal(ckpt__config_int_value("0o8", &v), CKPT_EINVAL);
    assert_int_equal(ckpt__config_int_value(" 1", &v), CKPT_EINVAL);
    assert_int_equal(ckpt__config_int_value("0x-1", &v), CKPT_EINVAL);
    assert_int_equal(ckpt__config_int_value("", &v), CKPT_EINVAL);

    double d = 0;
    assert_int_equal(ckpt__config_float_value("1e-8", &d), CKPT_OK);
    assert_true(d == 1e-8);
    assert_int_equal(ckpt__config_float_value(".5", &d), CKPT_OK);
    assert_true(d == 0.5);
    assert_int_equal(ckpt__config_float_value("-1.", &d), CKPT_OK);
    assert_true(d == -1.0);
    assert_int_equal(ckpt__config_float_value("3", &d), CKPT_OK);
    assert_true(d == 3.0);
    assert_int_equal(ckpt__config_float_value("-.inf", &d), CKPT_OK);
    assert_true(isinf(d) && d < 0);
    assert_int_equal(ckpt__config_float_value("+.Inf", &d), CKPT_OK);
    assert_true(isinf(d) && d > 0);
    assert_int_equal(ckpt__config_float_value(".NaN", &d), CKPT_OK);
    assert_true(isnan(d));
    assert_int_equal(ckpt__config_float_value("1e999", &d), CKPT_OK);
    assert_true(isinf(d));
    assert_int_equal(ckpt__config_float_value("0x10", &d), CKPT_EINVAL);
    assert_int_equal(ckpt__config_float_value("inf", &d), CKPT_EINVAL);
    assert_int_equal(ckpt__config_float_value("1,5", &d), CKPT_EINVAL);
}

/* ---------------------------------------------------------------- files */

static void test_config__read_file_returns_nul_terminated_text(void **state)
{
    const char *dir = tu_tmpdir();
    const char *p = tu_path(dir, "run.yaml");
    assert_int_equal(tu_write_file(p, trainer_yaml, strlen(trainer_yaml)), 0);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(ckpt__config_read_file(p, &buf, &len), CKPT_OK);
    assert_int_equal(len, strlen(trainer_yaml));
    assert_string_equal(buf, trainer_yaml);
    ckpt__free(buf);

    const char *e = tu_path(dir, "empty.yaml");
    assert_int_equal(tu_write_file(e, "", 0), 0);
    assert_int_equal(ckpt__config_read_file(e, &buf, NULL), CKPT_OK);
    assert_non_null(buf);
    assert_string_equal(buf, "");
    ckpt__free(buf);

    /* exactly 1 MiB; and a character device read to its end */
    char *big = malloc(CKPT__CONFIG_MAX_BYTES);
    assert_non_null(big);
    memset(big, '#', CKPT__CONFIG_MAX_BYTES);
    const char *b = tu_path(dir, "big.yaml");
    assert_int_equal(tu_write_file(b, big, CKPT__CONFIG_MAX_BYTES), 0);
    assert_int_equal(ckpt__config_read_file(b, &buf, &len), CKPT_OK);
    assert_int_equal(len, CKPT__CONFIG_MAX_BYTES);
    assert_int_equal(buf[len], 0);
    ckpt__free(buf);
    free(big);
    assert_int_equal(ckpt__config_read_file("/dev/null", &buf, &len), CKPT_OK);
    assert_int_equal(len, 0);
    ckpt__free(buf);
}

static void test_config__read_file_errors_name_the_file(void **state)
{
    const char *dir = tu_tmpdir();
    char *buf = (char *)1;
    const char *missing = tu_path(dir, "missing.yaml");
    assert_int_equal(ckpt__config_read_file(missing, &buf, NULL), CKPT_ENOTFOUND);
    assert_null(buf);
    assert_non_null(strstr(ckpt_errmsg(), missing));
    assert_int_equal(ckpt__config_read_file(tu_path(dir, "no/such/dir.yaml"), &buf, NULL),
                     CKPT_ENOTFOUND);

    assert_int_equal(ckpt__config_read_file(dir, &buf, NULL), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), dir));
    assert_non_null(strstr(ckpt_errmsg(), "directory"));

    size_t n = CKPT__CONFIG_MAX_BYTES + 1;
    char *big = calloc(1, n);
    assert_non_null(big);
    const char *b = tu_path(dir, "big.yaml");
    assert_int_equal(tu_write_file(b, big, n), 0);
    free(big);
    assert_int_equal(ckpt__config_read_file(b, &buf, NULL), CKPT_EINVAL);
    assert_null(buf);
    assert_non_null(strstr(ckpt_errmsg(), b));
    assert_non_null(strstr(ckpt_errmsg(), "1048576"));

    /* no size from stat: the read itself stops past the limit */
    assert_int_equal(ckpt__config_read_file("/dev/zero", &buf, NULL), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "/dev/zero"));

    if (getuid() != 0) { /* root reads anything */
        const char *locked = tu_path(dir, "locked.yaml");
        assert_int_equal(tu_write_file(locked, "a: 1\n", 5), 0);
        assert_int_equal(chmod(locked, 0), 0);
        assert_int_equal(ckpt__config_read_file(locked, &buf, NULL), CKPT_EIO);
        assert_non_null(strstr(ckpt_errmsg(), locked));
    }
}

/* ---------------------------------------------------------------- allocation failures */

typedef struct fault_alloc {
    long calls, fail_at, live;
} fault_alloc;

static void *fa_malloc(void *ctx, size_t n)
{
    fault_alloc *f = ctx;
    if (++f->calls == f->fail_at)
        return NULL;
    void *p = malloc(n);
    if (p)
        f->live++;
    return p;
}

static void *fa_realloc(void *ctx, void *p, size_t n)
{
    fault_alloc *f = ctx;
    if (++f->calls == f->fail_at)
        return NULL;
    void *q = realloc(p, n);
    if (q && !p)
        f->live++;
    return q;
}

static void fa_free(void *ctx, void *p)
{
    fault_alloc *f = ctx;
    if (p)
        f->live--;
    free(p);
}

static void test_config__allocation_failures_do_not_leak(void **state)
{
    /* lists, a flushed mixed sequence, and enough keys to grow every table */
    char *yaml = many_keys(300);
    size_t base = strlen(yaml);
    const char *more = "l: [a, \"b\", 1, 2.5]\nm: [1, 2, {x: [3, 4]}]\nn: {o: {p: q}}\n";
    yaml = realloc(yaml, base + strlen(more) + 1);
    assert_non_null(yaml);
    memcpy(yaml + base, more, strlen(more) + 1);

    const char *dir = tu_tmpdir();
    const char *path = tu_path(dir, "c.yaml");
    assert_int_equal(tu_write_file(path, yaml, strlen(yaml)), 0);

    int failures = 0;
    for (long at = 1;; at++) {
        fault_alloc f = {0, at, 0};
        ckpt_allocator a = {fa_malloc, fa_realloc, fa_free, &f};
        assert_int_equal(ckpt__set_allocator_only(&a), CKPT_OK);
        int rc = ckpt_config_flatten(yaml, strlen(yaml), NULL, NULL);
        char *buf = NULL;
        int rc2 = ckpt__config_read_file(path, &buf, NULL);
        ckpt__free(buf);
        ckpt__set_allocator_only(NULL);
        assert_int_equal(f.live, 0);
        assert_true(rc == CKPT_OK || rc == CKPT_ENOMEM);
        assert_true(rc2 == CKPT_OK || rc2 == CKPT_ENOMEM);
        if (rc == CKPT_ENOMEM || rc2 == CKPT_ENOMEM)
            failures++;
        if (f.calls < at)
            break; /* no allocation failed: every one has been tried */
    }
    assert_true(failures > 5);
    free(yaml);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config__trainer_config_flattens_in_document_order),
        cmocka_unit_test(test_config__plain_scalars_resolve_by_yaml12_core_schema),
        cmocka_unit_test(test_config__quoted_and_block_scalars_are_strings),
        cmocka_unit_test(test_config__standard_tags_set_the_type),
        cmocka_unit_test(test_config__rejects_tags_other_than_the_standard_scalar_ones),
        cmocka_unit_test(test_config__scalar_sequence_becomes_one_list_param),
        cmocka_unit_test(test_config__nested_sequences_get_index_components),
        cmocka_unit_test(test_config__empty_mapping_gives_no_param_empty_sequence_gives_empty_list),
        cmocka_unit_test(test_config__empty_documents_have_no_params),
        cmocka_unit_test(test_config__non_ascii_keys_and_values_pass_through),
        cmocka_unit_test(test_config__rejects_document_over_1mib_before_parsing),
        cmocka_unit_test(test_config__rejects_anchors_and_aliases),
        cmocka_unit_test(test_config__billion_laughs_fails_at_first_anchor),
        cmocka_unit_test(test_config__nesting_deeper_than_64_is_rejected),
        cmocka_unit_test(test_config__ten_thousand_deep_nesting_fails_fast),
        cmocka_unit_test(test_config__rejects_duplicate_keys_with_path_and_both_lines),
        cmocka_unit_test(test_config__rejects_collection_empty_and_dotted_keys),
        cmocka_unit_test(test_config__rejects_second_document_and_non_mapping_top_level),
        cmocka_unit_test(test_config__rejects_nul_bytes_and_invalid_utf8),
        cmocka_unit_test(test_config__reports_libyaml_errors_with_problem_and_mark),
        cmocka_unit_test(test_config__rejects_integers_outside_int64),
        cmocka_unit_test(test_config__limits_parameter_count),
        cmocka_unit_test(test_config__limits_flattened_key_length),
        cmocka_unit_test(test_config__callback_nonzero_stops_and_is_returned),
        cmocka_unit_test(test_config__null_callback_only_validates),
        cmocka_unit_test(test_config__int_and_float_texts_convert_to_values),
        cmocka_unit_test(test_config__read_file_returns_nul_terminated_text),
        cmocka_unit_test(test_config__read_file_errors_name_the_file),
        cmocka_unit_test(test_config__allocation_failures_do_not_leak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
