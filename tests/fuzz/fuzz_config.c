/*
 * fuzz_config.c - ckpt_config_flatten() on arbitrary bytes (YAML configs are
 * untrusted). Checks every emitted parameter (key shape, type, value text
 * matching its type, limits), that a LIST value reads back as the same
 * list, that a second parse emits the same parameters, and that a callback
 * stopping early gets its code back (and leaks nothing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"

typedef struct seen {
    size_t n;       /* parameters so far */
    size_t bytes;   /* key + value bytes */
    uint64_t hash;  /* FNV-1a over (key, value, type) */
    size_t stop_at; /* return 77 at this parameter (1-based), 0 never */
    int reparse;    /* reparse LIST values */
    const char *want_list; /* when reparsing one list: its text */
    int list_ok;
} seen;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}

static int on_param(void *ctx, const char *key, const char *value, int type);

/* "l: <value>" must give exactly one LIST parameter "l" with the same text. */
static int reparse_cb(void *ctx, const char *key, const char *value, int type)
{
    seen *s = ctx;
    FZ_CHECK(strcmp(key, "l") == 0 && type == CKPT_PARAM_T_LIST &&
                 strcmp(value, s->want_list) == 0 && !s->list_ok,
             "list value does not read back: key '%s' type %d value '%s', wanted '%s'", key, type,
             value, s->want_list);
    s->list_ok = 1;
    return 0;
}

static void check_list(const char *value)
{
    size_t vl = strlen(value);
    char *doc = malloc(vl + 5);
    memcpy(doc, "l: ", 3);
    memcpy(doc + 3, value, vl);
    doc[vl + 3] = '\n';
    seen s = {0};
    s.want_list = value;
    int rc = ckpt_config_flatten(doc, vl + 4, reparse_cb, &s);
    FZ_CHECK(rc == CKPT_OK && s.list_ok, "list value '%s' does not parse back (%d: %s)", value, rc,
             ckpt_errmsg());
    free(doc);
}

static int on_param(void *ctx, const char *key, const char *value, int type)
{
    seen *s = ctx;
    FZ_CHECK(key && value, "NULL key or value");
    size_t kl = strlen(key), vl = strlen(value);
    FZ_CHECK(kl > 0 && kl <= CKPT__CONFIG_MAX_KEY, "key of %zu bytes", kl);
    FZ_CHECK(key[0] != '.' && key[kl - 1] != '.' && !strstr(key, ".."),
             "key '%s' has an empty component", key);
    for (size_t i = 0; i < kl; i++) {
        unsigned char c = (unsigned char)key[i];
        FZ_CHECK(c >= 0x20 && c != 0x7f, "key '%s' has control byte 0x%02x", key, c);
    }
    FZ_CHECK(type >= CKPT_PARAM_T_STRING && type <= CKPT_PARAM_T_LIST, "type %d", type);
    switch (type) {
    case CKPT_PARAM_T_INT: {
        int64_t v;
        FZ_CHECK(ckpt__config_int_value(value, &v) == CKPT_OK, "int '%s' does not convert", value);
        break;
    }
    case CKPT_PARAM_T_FLOAT: {
        double d;
        FZ_CHECK(ckpt__config_float_value(value, &d) == CKPT_OK, "float '%s' does not convert",
                 value);
        break;
    }
    case CKPT_PARAM_T_BOOL:
        FZ_CHECK(!strcmp(value, "true") || !strcmp(value, "false"), "bool '%s'", value);
        break;
    case CKPT_PARAM_T_NULL:
        FZ_CHECK(!strcmp(value, "null"), "null '%s'", value);
        break;
    case CKPT_PARAM_T_LIST:
        FZ_CHECK(vl >= 2 && value[0] == '[' && value[vl - 1] == ']', "list '%s'", value);
        if (s->reparse)
            check_list(value);
        break;
    }
    s->n++;
    s->bytes += kl + vl;
    FZ_CHECK(s->n <= CKPT__CONFIG_MAX_PARAMS && s->bytes <= CKPT__CONFIG_MAX_OUTPUT,
             "%zu parameters, %zu bytes: over the limits", s->n, s->bytes);
    s->hash = fnv(s->hash, key, kl + 1);
    s->hash = fnv(s->hash, value, vl + 1);
    s->hash = fnv(s->hash, &type, sizeof type);
    if (s->stop_at && s->n == s->stop_at)
        return 77;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *yaml = (const char *)data;
    seen a = {0}, b = {0};
    a.reparse = 1;
    int rc = fz_rc(ckpt_config_flatten(yaml, size, on_param, &a), "ckpt_config_flatten");
    FZ_CHECK(rc == CKPT_OK || rc == CKPT_EINVAL || rc == CKPT_ENOMEM, "flatten returned %d", rc);
    if (rc == CKPT_EINVAL)
        FZ_CHECK(strncmp(ckpt_errmsg(), "config", 6) == 0, "message does not say config: %s",
                 ckpt_errmsg());

    /* Validation only: the same verdict. */
    int rc2 = fz_rc(ckpt_config_flatten(yaml, size, NULL, NULL), "ckpt_config_flatten(NULL fn)");
    FZ_CHECK(rc2 == rc, "verdict %d with a callback, %d without", rc, rc2);

    /* Same parameters again, and stopping at one of them returns 77. */
    b.stop_at = a.n ? 1 + (size * 31 + a.n) % a.n : 0;
    rc2 = ckpt_config_flatten(yaml, size, on_param, &b);
    if (b.stop_at) {
        FZ_CHECK(rc2 == 77 && b.n == b.stop_at, "stop at %zu: returned %d after %zu", b.stop_at,
                 rc2, b.n);
        if (b.stop_at == a.n)
            FZ_CHECK(b.hash == a.hash, "second parse emitted other parameters");
    } else {
        FZ_CHECK(rc2 == rc && b.n == 0, "second parse: %d after %zu parameters", rc2, b.n);
    }
    return 0;
}
