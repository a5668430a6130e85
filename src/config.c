/*
 * config.c - turns a run's YAML config (untrusted) into flattened parameters
 * with libyaml's event parser: no document tree, no alias expansion, and
 * every limit checked as the events arrive. Rules: see config.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "error.h"

#define YAML_TAG_PREFIX "tag:yaml.org,2002:"
#define SHOW_MAX 120 /* bytes of a key or value quoted in a message */

/* ---------------------------------------------------------------- buffers */

typedef struct cfg_buf {
    char *p;
    size_t len, cap;
} cfg_buf;

static int buf_reserve(cfg_buf *b, size_t extra)
{
    size_t need;
    if (ckpt__add_size(b->len, extra, &need) || ckpt__add_size(need, 1, &need))
        return CKPT_ENOMEM;
    if (need <= b->cap)
        return CKPT_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (ckpt__mul_size(cap, 2, &cap))
            return CKPT_ENOMEM;
    }
    char *p = ckpt__realloc(b->p, cap);
    if (!p)
        return CKPT_ENOMEM;
    b->p = p;
    b->cap = cap;
    return CKPT_OK;
}

/* Appends and keeps the buffer NUL-terminated. */
static int buf_add(cfg_buf *b, const void *s, size_t n)
{
    if (buf_reserve(b, n))
        return CKPT_ENOMEM;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return CKPT_OK;
}

static int buf_addc(cfg_buf *b, char c)
{
    return buf_add(b, &c, 1);
}

/* Length of the character at s[i] if it is one that must never appear raw in
 * a key, a message or a LIST value (0 otherwise), its code point in *cp:
 * C0 and C1 controls and DEL, which libyaml refuses as raw input, the YAML
 * line breaks NEL, LS and PS, which a quoted scalar folds into spaces, and
 * the BOM and noncharacters U+FFFE/U+FFFF. libyaml hands out valid UTF-8. */
static size_t special_at(const char *s, size_t n, size_t i, unsigned *cp)
{
    const unsigned char *u = (const unsigned char *)s + i;
    size_t left = n - i;
    if (u[0] < 0x20 || u[0] == 0x7f) {
        *cp = u[0];
        return 1;
    }
    if (u[0] == 0xC2 && left >= 2 && u[1] >= 0x80 && u[1] <= 0x9F) {
        *cp = u[1];
        return 2;
    }
    if (left >= 3 && ((u[0] == 0xE2 && u[1] == 0x80 && (u[2] == 0xA8 || u[2] == 0xA9)) ||
                      (u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF) ||
                      (u[0] == 0xEF && u[1] == 0xBF && (u[2] == 0xBE || u[2] == 0xBF)))) {
        *cp = ((unsigned)(u[0] & 0x0F) << 12) | ((unsigned)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    return 0;
}

/* JSON string syntax is also YAML double-quoted syntax, so a LIST value
 * reads back with either parser to the same strings. */
static int buf_add_json_string(cfg_buf *b, const char *s, size_t n)
{
    if (buf_addc(b, '"'))
        return CKPT_ENOMEM;
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t sl = special_at(s, n, i, &cp);
        char esc[8];
        size_t elen;
        const char *shortcut = NULL;
        switch (sl ? cp : (unsigned char)s[i]) {
        case '"': shortcut = "\\\""; break;
        case '\\': shortcut = "\\\\"; break;
        case '\b': shortcut = "\\b"; break;
        case '\f': shortcut = "\\f"; break;
        case '\n': shortcut = "\\n"; break;
        case '\r': shortcut = "\\r"; break;
        case '\t': shortcut = "\\t"; break;
        default: break;
        }
        if (shortcut) {
            elen = 2;
            memcpy(esc, shortcut, 2);
        } else if (sl) {
            elen = (size_t)snprintf(esc, sizeof esc, "\\u%04x", cp);
        } else {
            esc[0] = s[i];
            elen = 1;
        }
        if (buf_add(b, esc, elen))
            return CKPT_ENOMEM;
        i += sl ? sl : 1;
    }
    return buf_addc(b, '"');
}

/* ---------------------------------------------------------------- messages */

/* 'text' for a message: at most SHOW_MAX bytes (cut on a UTF-8 boundary,
 * then "..."), special characters as \xNN or \uNNNN so a hostile key cannot
 * forge lines or terminal escapes. */
static const char *show(char *dst, size_t cap, const char *s, size_t n)
{
    size_t o = 0, limit = n;
    int cut = 0;
    if (limit > SHOW_MAX) {
        limit = SHOW_MAX;
        while (limit > 0 && ((unsigned char)s[limit] & 0xC0) == 0x80)
            limit--;
        cut = 1;
    }
    dst[o++] = '\'';
    for (size_t i = 0; i < limit && o + 8 < cap;) {
        unsigned cp;
        size_t sl = special_at(s, limit, i, &cp);
        if (sl) {
            o += (size_t)snprintf(dst + o, cap - o, cp < 0x80 ? "\\x%02x" : "\\u%04x", cp);
            i += sl;
        } else {
            dst[o++] = s[i++];
        }
    }
    dst[o++] = '\'';
    if (cut && o + 4 < cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = 0;
    return dst;
}

/* 'pre' + text, e.g. '&anchor' or '!!tag', quoted like show(). */
static const char *show_pre(char *dst, size_t cap, const char *pre, const char *s, size_t n)
{
    char tmp[SHOW_MAX * 4 + 16];
    show(tmp, sizeof tmp, s, n);
    snprintf(dst, cap, "'%s%s", pre, tmp + 1); /* tmp + 1: after its opening quote */
    return dst;
}

/* "!!name" for the standard prefix, the resolved tag otherwise. */
static const char *show_tag(char *dst, size_t cap, const char *tag)
{
    size_t plen = sizeof YAML_TAG_PREFIX - 1;
    if (strncmp(tag, YAML_TAG_PREFIX, plen) == 0)
        return show_pre(dst, cap, "!!", tag + plen, strlen(tag + plen));
    return show(dst, cap, tag, strlen(tag));
}

static int cfg_fail(const yaml_mark_t *m, const char *fmt, ...) CKPT_PRINTF(2, 3);
static int cfg_fail(const yaml_mark_t *m, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ckpt__err(CKPT_EINVAL, "config line %zu, column %zu: %s", m->line + 1, m->column + 1,
                     msg);
}

/* ---------------------------------------------------------------- scalar types */

static int is_null_text(const char *s, size_t n)
{
    return n == 0 || (n == 1 && s[0] == '~') ||
           (n == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* 1 true, 0 false, -1 not a core-schema bool */
static int bool_text(const char *s, size_t n)
{
    if (n == 4 && (!memcmp(s, "true", 4) || !memcmp(s, "True", 4) || !memcmp(s, "TRUE", 4)))
        return 1;
    if (n == 5 && (!memcmp(s, "false", 5) || !memcmp(s, "False", 5) || !memcmp(s, "FALSE", 5)))
        return 0;
    return -1;
}

static int all_in(const char *s, size_t n, const char *set)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == 0 || !strchr(set, s[i]))
            return 0;
    return 1;
}

#define DIGITS "0123456789"

/* 10, 16 or 8 for a core-schema int, 0 otherwise */
static int int_base(const char *s, size_t n)
{
    if (n > 2 && s[0] == '0' && s[1] == 'x')
        return all_in(s + 2, n - 2, DIGITS "abcdefABCDEF") ? 16 : 0;
    if (n > 2 && s[0] == '0' && s[1] == 'o')
        return all_in(s + 2, n - 2, "01234567") ? 8 : 0;
    if (n > 0 && (s[0] == '-' || s[0] == '+'))
        return all_in(s + 1, n - 1, DIGITS) ? 10 : 0;
    return all_in(s, n, DIGITS) ? 10 : 0;
}

static size_t count_digits(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

static int is_special_float(const char *s, size_t n)
{
    if (n == 4 && (!memcmp(s, ".nan", 4) || !memcmp(s, ".NaN", 4) || !memcmp(s, ".NAN", 4)))
        return 1;
    if (n > 0 && (s[0] == '-' || s[0] == '+')) {
        s++;
        n--;
    }
    return n == 4 && (!memcmp(s, ".inf", 4) || !memcmp(s, ".Inf", 4) || !memcmp(s, ".INF", 4));
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? or the specials */
static int is_float_text(const char *s, size_t n)
{
    if (is_special_float(s, n))
        return 1;
    size_t i = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    size_t d1 = count_digits(s + i, n - i);
    i += d1;
    size_t d2 = 0;
    int dot = 0;
    if (i < n && s[i] == '.') {
        dot = 1;
        i++;
        d2 = count_digits(s + i, n - i);
        i += d2;
    }
    if (d1 == 0 && !(dot && d2 > 0))
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t de = count_digits(s + i, n - i);
        if (de == 0)
            return 0;
        i += de;
    }
    return i == n;
}

static int plain_type(const char *s, size_t n)
{
    if (is_null_text(s, n))
        return CKPT_PARAM_T_NULL;
    if (bool_text(s, n) >= 0)
        return CKPT_PARAM_T_BOOL;
    if (int_base(s, n))
        return CKPT_PARAM_T_INT;
    if (is_float_text(s, n))
        return CKPT_PARAM_T_FLOAT;
    return CKPT_PARAM_T_STRING;
}

int ckpt__config_int_value(const char *text, int64_t *out)
{
    size_t n = strlen(text);
    int base = int_base(text, n);
    if (!base)
        return ckpt__err(CKPT_EINVAL, "'%.64s' is not an integer", text);
    /* the prefix is skipped by hand: strtoll knows 0x but not 0o */
    const char *digits = base == 10 ? text : text + 2;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(digits, &end, base);
    if (errno == ERANGE || end != text + n)
        return ckpt__err(CKPT_EINVAL, "integer '%.64s' does not fit in 64 bits", text);
    *out = (int64_t)v;
    return CKPT_OK;
}

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

int ckpt__config_float_value(const char *text, double *out)
{
    size_t n = strlen(text);
    if (!is_float_text(text, n))
        return ckpt__err(CKPT_EINVAL, "'%.64s' is not a floating-point number", text);
    if (is_special_float(text, n)) {
        if (text[n - 3] == 'n' || text[n - 3] == 'N')
            *out = NAN;
        else
            *out = text[0] == '-' ? -INFINITY : INFINITY;
        return CKPT_OK;
    }
    /* the text was checked above, so strtod only converts; the C locale keeps
     * '.' the decimal point whatever the program set with setlocale() */
    pthread_once(&c_locale_once, c_locale_init);
    char *end = NULL;
    double v = c_locale ? strtod_l(text, &end, c_locale) : strtod(text, &end);
    if (end != text + n)
        return ckpt__err(CKPT_EINVAL, "'%.64s' is not a floating-point number", text);
    *out = v;
    return CKPT_OK;
}

/* ---------------------------------------------------------------- duplicate keys */

/* One set for the whole document holding (mapping id, key) pairs, keyed by
 * SipHash with a per-call random key: a document cannot be crafted to make
 * every key collide and turn the check quadratic. */
typedef struct dup_slot {
    uint64_t hash;
    uint64_t map_id; /* 0: empty slot */
    size_t off, len; /* key bytes in dup_set.keys */
    size_t line;
} dup_slot;

typedef struct dup_set {
    dup_slot *slots;
    size_t cap, used;
    cfg_buf keys;
    uint64_t k0, k1;
} dup_set;

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                               \
    do {                                                                                       \
        v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);                          \
        v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                                               \
        v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                                               \
        v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);                          \
    } while (0)

/* SipHash-2-4 */
static uint64_t siphash24(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    size_t full = len - len % 8;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = 0;
        for (int j = 7; j >= 0; j--)
            m = (m << 8) | in[i + (size_t)j];
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t j = 0; j < len % 8; j++)
        b |= (uint64_t)in[full + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static void dup_seed(dup_set *d)
{
    uint64_t k[2];
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
        /* no entropy yet (early boot): still unpredictable enough from outside */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)d;
        k[1] = (uint64_t)ts.tv_sec * 0xBF58476D1CE4E5B9ULL ^ (uint64_t)getpid();
    }
    d->k0 = k[0];
    d->k1 = k[1];
}

static int dup_grow(dup_set *d)
{
    size_t cap = d->cap ? d->cap * 2 : 64;
    dup_slot *s = ckpt__calloc(cap, sizeof *s);
    if (!s)
        return CKPT_ENOMEM;
    for (size_t i = 0; i < d->cap; i++) {
        if (!d->slots[i].map_id)
            continue;
        size_t j = (size_t)d->slots[i].hash & (cap - 1);
        while (s[j].map_id)
            j = (j + 1) & (cap - 1);
        s[j] = d->slots[i];
    }
    ckpt__free(d->slots);
    d->slots = s;
    d->cap = cap;
    return CKPT_OK;
}

/* 0 inserted, 1 already there (*first_line set), or CKPT_ENOMEM */
static int dup_insert(dup_set *d, uint64_t map_id, const char *key, size_t len, size_t line,
                      size_t *first_line)
{
    if ((d->used + 1) * 2 > d->cap && dup_grow(d))
        return CKPT_ENOMEM;
    uint64_t h = siphash24(d->k0 ^ map_id, d->k1, (const unsigned char *)key, len);
    size_t j = (size_t)h & (d->cap - 1);
    for (; d->slots[j].map_id; j = (j + 1) & (d->cap - 1)) {
        dup_slot *s = &d->slots[j];
        if (s->hash == h && s->map_id == map_id && s->len == len &&
            !memcmp(d->keys.p + s->off, key, len)) {
            *first_line = s->line;
            return 1;
        }
    }
    size_t off = d->keys.len;
    if (buf_add(&d->keys, key, len))
        return CKPT_ENOMEM;
    d->slots[j] = (dup_slot){h, map_id, off, len, line};
    d->used++;
    return 0;
}

/* ---------------------------------------------------------------- flattening */

typedef struct cfg_frame {
    yaml_mark_t start;
    size_t base;     /* length of this container's own path in st->path */
    size_t count;    /* keys (mapping) or items (sequence) so far */
    uint64_t map_id; /* mapping: its id in the duplicate-key set */
    unsigned char is_map;
    unsigned char want_value; /* mapping: a key was read, its value is next */
    unsigned char indexed;    /* sequence: items get index components */
} cfg_frame;

/* A buffered item of the innermost sequence while it may still become one
 * LIST parameter (only the innermost one can: a nested collection turns its
 * parent into an indexed sequence and flushes the buffer). */
typedef struct cfg_item {
    size_t off, len; /* in cfg_state.item_text, NUL-terminated there */
    int type;
} cfg_item;

typedef struct cfg_state {
    ckpt_param_fn fn;
    void *ctx;
    cfg_frame stack[CKPT__CONFIG_MAX_DEPTH];
    int depth;
    int docs;
    char path[CKPT__CONFIG_MAX_KEY + 1];
    size_t path_len;
    size_t nparams, out_bytes;
    uint64_t next_map_id;
    cfg_item *items;
    size_t nitems, items_cap;
    cfg_buf item_text;
    cfg_buf list;
    dup_set dups;
    char at_buf[SHOW_MAX * 4 + 32];
    char show_buf[SHOW_MAX * 4 + 32];
    char tag_buf[SHOW_MAX * 4 + 32];
} cfg_state;

static int oom(void)
{
    return ckpt__err(CKPT_ENOMEM, "config: out of memory while flattening");
}

/* "at 'a.b'" or "at the top level", for messages. */
static const char *at(cfg_state *st)
{
    if (st->path_len == 0)
        return "at the top level";
    char q[sizeof st->at_buf - 8];
    show(q, sizeof q, st->path, st->path_len);
    snprintf(st->at_buf, sizeof st->at_buf, "at %s", q);
    return st->at_buf;
}

static void path_cut(cfg_state *st, size_t len)
{
    st->path_len = len;
    st->path[len] = 0;
}

static int path_push(cfg_state *st, const yaml_mark_t *m, const char *comp, size_t n)
{
    size_t sep = st->path_len > 0;
    if (n > CKPT__CONFIG_MAX_KEY || st->path_len + sep + n > CKPT__CONFIG_MAX_KEY) {
        return cfg_fail(m, "key %s %s makes a flattened key longer than %d bytes",
                        show(st->show_buf, sizeof st->show_buf, comp, n), at(st),
                        CKPT__CONFIG_MAX_KEY);
    }
    if (sep)
        st->path[st->path_len++] = '.';
    memcpy(st->path + st->path_len, comp, n);
    path_cut(st, st->path_len + n);
    return CKPT_OK;
}

static int path_push_index(cfg_state *st, const yaml_mark_t *m, size_t idx)
{
    char d[24];
    int n = snprintf(d, sizeof d, "%zu", idx);
    return path_push(st, m, d, (size_t)n);
}

static int emit(cfg_state *st, const yaml_mark_t *m, const char *value, size_t vlen, int type)
{
    if (st->nparams >= CKPT__CONFIG_MAX_PARAMS)
        return cfg_fail(m, "more than %d parameters (reached %s)", CKPT__CONFIG_MAX_PARAMS, at(st));
    size_t add = st->path_len + vlen;
    if (add > CKPT__CONFIG_MAX_OUTPUT - st->out_bytes)
        return cfg_fail(m, "flattened parameters exceed %zu bytes (reached %s)",
                        CKPT__CONFIG_MAX_OUTPUT, at(st));
    st->nparams++;
    st->out_bytes += add;
    if (st->fn)
        return st->fn(st->ctx, st->path, value, type);
    return CKPT_OK;
}

/* Called when a node (value or item) is complete: back to the parent. */
static void child_done(cfg_state *st)
{
    if (st->depth == 0)
        return;
    cfg_frame *p = &st->stack[st->depth - 1];
    path_cut(st, p->base);
    if (p->is_map)
        p->want_value = 0;
    else
        p->count++;
}

/* The innermost sequence turns out to hold a collection: its scalar items so
 * far become "seq.0", "seq.1", ... in document order. */
static int flush_items(cfg_state *st, cfg_frame *p, const yaml_mark_t *m)
{
    for (size_t i = 0; i < st->nitems; i++) {
        int rc = path_push_index(st, m, i);
        if (rc)
            return rc;
        const cfg_item *it = &st->items[i];
        rc = emit(st, m, st->item_text.p + it->off, it->len, it->type);
        if (rc)
            return rc;
        path_cut(st, p->base);
    }
    st->nitems = 0;
    st->item_text.len = 0;
    return CKPT_OK;
}

/* Puts the path of the node about to be read into st->path (unchanged for a
 * mapping key, whose text comes with the node itself). */
static int prepare_child(cfg_state *st, const yaml_mark_t *m, int is_collection)
{
    if (st->depth == 0)
        return CKPT_OK;
    cfg_frame *p = &st->stack[st->depth - 1];
    if (p->is_map)
        return CKPT_OK;
    if (is_collection && !p->indexed) {
        int rc = flush_items(st, p, m);
        if (rc)
            return rc;
        p->indexed = 1;
    }
    return path_push_index(st, m, p->count);
}

static int check_anchor(cfg_state *st, const yaml_mark_t *m, const yaml_char_t *anchor)
{
    if (!anchor)
        return CKPT_OK;
    const char *a = (const char *)anchor;
    return cfg_fail(m, "anchor %s %s: anchors and aliases are not allowed in a config",
                    show_pre(st->show_buf, sizeof st->show_buf, "&", a, strlen(a)), at(st));
}

/* The type of a scalar from its tag, style and text (not range-checked). */
static int scalar_type(cfg_state *st, const yaml_event_t *ev, int *type)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    const yaml_mark_t *m = &ev->start_mark;
    if (!tag) {
        *type = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? plain_type(v, n)
                                                                 : CKPT_PARAM_T_STRING;
        return CKPT_OK;
    }
    size_t plen = sizeof YAML_TAG_PREFIX - 1;
    if (strncmp(tag, YAML_TAG_PREFIX, plen) == 0) {
        const char *t = tag + plen;
        int ok = 1;
        if (!strcmp(t, "str")) {
            *type = CKPT_PARAM_T_STRING;
        } else if (!strcmp(t, "int")) {
            *type = CKPT_PARAM_T_INT;
            ok = int_base(v, n) != 0;
        } else if (!strcmp(t, "float")) {
            *type = CKPT_PARAM_T_FLOAT;
            ok = is_float_text(v, n);
        } else if (!strcmp(t, "bool")) {
            *type = CKPT_PARAM_T_BOOL;
            ok = bool_text(v, n) >= 0;
        } else if (!strcmp(t, "null")) {
            *type = CKPT_PARAM_T_NULL;
            ok = is_null_text(v, n);
        } else {
            goto not_allowed;
        }
        if (!ok)
            return cfg_fail(m, "value %s %s does not match its tag !!%s",
                            show(st->show_buf, sizeof st->show_buf, v, n), at(st), t);
        return CKPT_OK;
    }
not_allowed:
    return cfg_fail(m, "tag %s %s is not allowed (only !!str, !!int, !!float, !!bool and !!null are)",
                    show_tag(st->tag_buf, sizeof st->tag_buf, tag), at(st));
}

static int on_key(cfg_state *st, const yaml_event_t *ev, cfg_frame *p)
{
    const char *k = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const yaml_mark_t *m = &ev->start_mark;
    int type;
    int rc = scalar_type(st, ev, &type);
    if (rc)
        return rc;
    const char *in = st->path_len ? at(st) : "";
    if (n == 0)
        return cfg_fail(m, "empty key%s%s", *in ? " " : " at the top level", in);
    for (size_t i = 0; i < n; i++) {
        unsigned cp;
        if (special_at(k, n, i, &cp))
            return cfg_fail(m, "key %s %s contains a control or line-break character (U+%04X)",
                            show(st->show_buf, sizeof st->show_buf, k, n), at(st), cp);
    }
    if (memchr(k, '.', n))
        return cfg_fail(m,
                        "key %s %s contains '.', which separates the levels of a flattened key",
                        show(st->show_buf, sizeof st->show_buf, k, n), at(st));
    rc = path_push(st, m, k, n);
    if (rc)
        return rc;
    size_t first = 0;
    rc = dup_insert(&st->dups, p->map_id, k, n, m->line + 1, &first);
    if (rc < 0)
        return oom();
    if (rc > 0) {
        return cfg_fail(m, "duplicate key %s (first at line %zu)",
                        show(st->show_buf, sizeof st->show_buf, st->path, st->path_len), first);
    }
    p->count++;
    p->want_value = 1;
    return CKPT_OK;
}

static int on_scalar(cfg_state *st, const yaml_event_t *ev)
{
    const yaml_mark_t *m = &ev->start_mark;
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    int rc = prepare_child(st, m, 0);
    if (rc)
        return rc;
    rc = check_anchor(st, m, ev->data.scalar.anchor);
    if (rc)
        return rc;
    if (memchr(v, 0, n))
        return cfg_fail(m, "%s %s contains a NUL character",
                        st->depth && st->stack[st->depth - 1].is_map &&
                                !st->stack[st->depth - 1].want_value
                            ? "key"
                            : "value",
                        at(st));
    if (st->depth == 0) {
        if (!ev->data.scalar.tag && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
            is_null_text(v, n))
            return CKPT_OK; /* an empty document */
        return cfg_fail(m, "the top level must be a mapping of keys to values, not a scalar");
    }
    cfg_frame *p = &st->stack[st->depth - 1];
    if (p->is_map && !p->want_value)
        return on_key(st, ev, p);

    int type;
    rc = scalar_type(st, ev, &type);
    if (rc)
        return rc;
    const char *text = v;
    size_t tlen = n;
    if (type == CKPT_PARAM_T_INT) {
        int64_t iv;
        if (ckpt__config_int_value(v, &iv))
            return cfg_fail(m, "integer %s %s does not fit in 64 bits (quote it to keep it as a string)",
                            show(st->show_buf, sizeof st->show_buf, v, n), at(st));
    } else if (type == CKPT_PARAM_T_BOOL) {
        text = bool_text(v, n) ? "true" : "false";
        tlen = strlen(text);
    } else if (type == CKPT_PARAM_T_NULL) {
        text = "null";
        tlen = 4;
    }

    if (!p->is_map && !p->indexed) {
        if (st->nitems == st->items_cap) {
            size_t cap = st->items_cap ? st->items_cap * 2 : 16, bytes;
            if (ckpt__mul_size(cap, sizeof *st->items, &bytes))
                return oom();
            cfg_item *items = ckpt__realloc(st->items, bytes);
            if (!items)
                return oom();
            st->items = items;
            st->items_cap = cap;
        }
        size_t off = st->item_text.len;
        if (buf_add(&st->item_text, text, tlen) || buf_addc(&st->item_text, 0))
            return oom();
        st->items[st->nitems++] = (cfg_item){off, tlen, type};
    } else {
        rc = emit(st, m, text, tlen, type);
        if (rc)
            return rc;
    }
    child_done(st);
    return CKPT_OK;
}

static int on_collection_start(cfg_state *st, const yaml_event_t *ev, int is_map)
{
    const yaml_mark_t *m = &ev->start_mark;
    const char *what = is_map ? "mapping" : "sequence";
    const yaml_char_t *anchor = is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    const yaml_char_t *tag = is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    int rc = prepare_child(st, m, 1);
    if (rc)
        return rc;
    rc = check_anchor(st, m, anchor);
    if (rc)
        return rc;
    if (tag)
        return cfg_fail(m, "tag %s on a %s %s is not allowed (tags are only allowed on scalars)",
                        show_tag(st->tag_buf, sizeof st->tag_buf, (const char *)tag), what, at(st));
    if (st->depth == 0 && !is_map)
        return cfg_fail(m, "the top level must be a mapping of keys to values, not a sequence");
    if (st->depth > 0) {
        cfg_frame *p = &st->stack[st->depth - 1];
        if (p->is_map && !p->want_value)
            return cfg_fail(m, "a %s cannot be a key (%s)", what, at(st));
    }
    if (st->depth >= CKPT__CONFIG_MAX_DEPTH)
        return cfg_fail(m, "nesting deeper than %d levels %s", CKPT__CONFIG_MAX_DEPTH, at(st));
    cfg_frame *f = &st->stack[st->depth++];
    *f = (cfg_frame){.start = *m, .base = st->path_len, .is_map = (unsigned char)is_map};
    if (is_map)
        f->map_id = ++st->next_map_id;
    st->nitems = 0;
    st->item_text.len = 0;
    return CKPT_OK;
}

static int on_collection_end(cfg_state *st)
{
    cfg_frame *f = &st->stack[st->depth - 1];
    if (!f->is_map && !f->indexed) {
        cfg_buf *l = &st->list;
        l->len = 0;
        if (buf_addc(l, '['))
            return oom();
        for (size_t i = 0; i < st->nitems; i++) {
            const cfg_item *it = &st->items[i];
            const char *t = st->item_text.p + it->off;
            if (i && buf_add(l, ", ", 2))
                return oom();
            if (it->type == CKPT_PARAM_T_STRING ? buf_add_json_string(l, t, it->len)
                                                : buf_add(l, t, it->len))
                return oom();
        }
        if (buf_addc(l, ']'))
            return oom();
        st->nitems = 0;
        st->item_text.len = 0;
        int rc = emit(st, &f->start, l->p, l->len, CKPT_PARAM_T_LIST);
        if (rc)
            return rc;
    }
    st->depth--;
    child_done(st);
    return CKPT_OK;
}

static int on_event(cfg_state *st, const yaml_event_t *ev)
{
    const yaml_mark_t *m = &ev->start_mark;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (st->docs++ > 0)
            return cfg_fail(m, "a second YAML document starts here; a config is one document");
        return CKPT_OK;
    case YAML_ALIAS_EVENT: {
        int rc = prepare_child(st, m, 0);
        if (rc)
            return rc;
        const char *a = (const char *)ev->data.alias.anchor;
        return cfg_fail(m, "alias %s %s: anchors and aliases are not allowed in a config",
                        show_pre(st->show_buf, sizeof st->show_buf, "*", a, strlen(a)), at(st));
    }
    case YAML_SCALAR_EVENT:
        return on_scalar(st, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_collection_start(st, ev, 0);
    case YAML_MAPPING_START_EVENT:
        return on_collection_start(st, ev, 1);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return on_collection_end(st);
    default: /* stream start/end, document end */
        return CKPT_OK;
    }
}

/* libyaml's reader reports a byte offset, not a mark: count lines and
 * characters up to it the way its scanner would. */
static void offset_to_mark(const char *s, size_t len, size_t off, yaml_mark_t *m)
{
    size_t line = 0, col = 0;
    if (off > len)
        off = len;
    for (size_t i = 0; i < off; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || (c == '\r' && (i + 1 >= len || s[i + 1] != '\n'))) {
            line++;
            col = 0;
        } else if (c != '\r' && (c & 0xC0) != 0x80) {
            col++;
        }
    }
    m->index = off;
    m->line = line;
    m->column = col;
}

static int yaml_failure(cfg_state *st, const yaml_parser_t *p, const char *yaml, size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown problem";
    const char *in = st->path_len ? at(st) : "";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return ckpt__err(CKPT_ENOMEM, "config: out of memory while parsing YAML");
    case YAML_READER_ERROR: {
        yaml_mark_t m;
        offset_to_mark(yaml, len, p->problem_offset, &m);
        if (p->problem_value != -1)
            return cfg_fail(&m, "%s (byte 0x%02X at offset %zu; a config must be UTF-8 text)",
                            problem, (unsigned)p->problem_value, p->problem_offset);
        return cfg_fail(&m, "%s (at offset %zu; a config must be UTF-8 text)", problem,
                        p->problem_offset);
    }
    case YAML_SCANNER_ERROR:
    case YAML_PARSER_ERROR:
        if (p->context)
            return cfg_fail(&p->problem_mark, "%s (%s at line %zu, column %zu)%s%s", problem,
                            p->context, p->context_mark.line + 1, p->context_mark.column + 1,
                            *in ? ", " : "", in);
        return cfg_fail(&p->problem_mark, "%s%s%s", problem, *in ? ", " : "", in);
    default:
        return ckpt__err(CKPT_EINVAL, "config: YAML error %d: %s", (int)p->error, problem);
    }
}

int ckpt_config_flatten(const char *yaml, size_t len, ckpt_param_fn fn, void *ctx)
{
    if (!yaml && len)
        return ckpt__err(CKPT_EINVAL, "ckpt_config_flatten: yaml is NULL but len is %zu", len);
    if (len > CKPT__CONFIG_MAX_BYTES)
        return ckpt__err(CKPT_EINVAL, "config is %zu bytes; the limit is %zu bytes (1 MiB)", len,
                         CKPT__CONFIG_MAX_BYTES);
    if (len == 0)
        return CKPT_OK;

    cfg_state st;
    memset(&st, 0, sizeof st);
    st.fn = fn;
    st.ctx = ctx;
    dup_seed(&st.dups);

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return ckpt__err(CKPT_ENOMEM, "config: out of memory starting the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    /* forced so a UTF-16 stream (full of NUL bytes) is refused rather than
     * decoded: the store keeps the text verbatim as a C string */
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

    int rc;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = yaml_failure(&st, &parser, yaml, len);
            break;
        }
        int end = ev.type == YAML_STREAM_END_EVENT;
        rc = on_event(&st, &ev);
        yaml_event_delete(&ev);
        if (rc || end)
            break;
    }
    yaml_parser_delete(&parser);
    ckpt__free(st.items);
    ckpt__free(st.item_text.p);
    ckpt__free(st.list.p);
    ckpt__free(st.dups.slots);
    ckpt__free(st.dups.keys.p);
    return rc;
}

/* ---------------------------------------------------------------- files */

static int too_large(const char *path, const char *what)
{
    return ckpt__err(CKPT_EINVAL, "config file '%s' is %s than the limit of %zu bytes (1 MiB)",
                     path, what, CKPT__CONFIG_MAX_BYTES);
}

int ckpt__config_read_file(const char *path, char **out, size_t *out_len)
{
    char eb[128];
    if (!out)
        return ckpt__err(CKPT_EINVAL, "ckpt__config_read_file: out is NULL");
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!path)
        return ckpt__err(CKPT_EINVAL, "config file path is NULL");
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return ckpt__err(CKPT_ENOTFOUND, "config file '%s' not found", path);
        return ckpt__err(CKPT_EIO, "cannot open config file '%s': %s", path,
                         strerror_r(e, eb, sizeof eb));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return ckpt__err(CKPT_EIO, "cannot stat config file '%s': %s", path,
                         strerror_r(e, eb, sizeof eb));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return ckpt__err(CKPT_EINVAL, "config file '%s' is a directory", path);
    }
    if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > CKPT__CONFIG_MAX_BYTES) {
        close(fd);
        return too_large(path, "larger");
    }
    /* Read up to one byte past the limit: the size from fstat is only a hint
     * (the file may grow, or be a pipe), the bytes read are what counts. */
    const size_t limit = CKPT__CONFIG_MAX_BYTES + 1;
    size_t want = S_ISREG(sb.st_mode) ? (size_t)sb.st_size + 1 : 64 * 1024;
    if (want > limit)
        want = limit;
    char *buf = ckpt__malloc(want + 1);
    if (!buf) {
        close(fd);
        return ckpt__err(CKPT_ENOMEM, "out of memory reading config file '%s'", path);
    }
    size_t len = 0;
    int rc = CKPT_OK;
    for (;;) {
        if (len == want) {
            if (want >= limit) {
                rc = too_large(path, "larger");
                break;
            }
            size_t nw = want * 2 < limit ? want * 2 : limit;
            char *nb = ckpt__realloc(buf, nw + 1);
            if (!nb) {
                rc = ckpt__err(CKPT_ENOMEM, "out of memory reading config file '%s'", path);
                break;
            }
            buf = nb;
            want = nw;
        }
        ssize_t r = read(fd, buf + len, want - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = ckpt__err(CKPT_EIO, "cannot read config file '%s': %s", path,
                           strerror_r(errno, eb, sizeof eb));
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (rc) {
        ckpt__free(buf);
        return rc;
    }
    buf[len] = 0;
    *out = buf;
    if (out_len)
        *out_len = len;
    return CKPT_OK;
}
