/*
 * safetensors.c - validation of untrusted safetensors headers (a small strict
 * JSON parser with limits, then the schema and data-layout checks) and the
 * header writer used by export.
 */
#include "safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    int dtype;
    size_t size;
} st_dtypes[] = {
    {"F64", CKPT_F64, 8}, {"F32", CKPT_F32, 4}, {"F16", CKPT_F16, 2}, {"BF16", CKPT_BF16, 2},
    {"I64", CKPT_I64, 8}, {"I32", CKPT_I32, 4}, {"I16", CKPT_I16, 2}, {"I8", CKPT_I8, 1},
    {"U8", CKPT_U8, 1},   {"BOOL", CKPT_BOOL, 1},
};
#define N_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

/* Valid safetensors dtypes that ckpt has no type for; recognised only so the
 * message can say "unsupported" rather than "unknown". */
static const char *const st_unsupported[] = {
    "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64",
};

const char *ckpt__st_dtype_name(int dtype)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (st_dtypes[i].dtype == dtype)
            return st_dtypes[i].name;
    return NULL;
}

size_t ckpt__st_dtype_size(int dtype)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (st_dtypes[i].dtype == dtype)
            return st_dtypes[i].size;
    return 0;
}

uint64_t ckpt__st_read_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int ckpt__st_check_sizes(uint64_t file_size, uint64_t header_len, const char *fname,
                         uint64_t *data_size)
{
    if (file_size < 8)
        return ckpt__err(CKPT_EINVAL,
                         "%s: %" PRIu64 " bytes is too short for a safetensors file (8-byte "
                         "header length missing)",
                         fname, file_size);
    if (header_len > CKPT__ST_MAX_HEADER)
        return ckpt__err(CKPT_EINVAL,
                         "%s: header length %" PRIu64 " (file offset 0) is over the %" PRIu64
                         "-byte limit",
                         fname, header_len, CKPT__ST_MAX_HEADER);
    if (header_len > file_size - 8)
        return ckpt__err(CKPT_EINVAL,
                         "%s: header length %" PRIu64 " (file offset 0) is more than the %" PRIu64
                         " bytes after it (file truncated?)",
                         fname, header_len, file_size - 8);
    *data_size = file_size - 8 - header_len;
    return CKPT_OK;
}

int ckpt__st_parse_file(const void *buf, size_t size, const char *fname, ckpt__st_header *out)
{
    uint64_t data_size = 0;
    memset(out, 0, sizeof *out);
    if (!fname)
        fname = "safetensors file";
    int rc = ckpt__st_check_sizes(size, size >= 8 ? ckpt__st_read_u64le(buf) : 0, fname,
                                  &data_size);
    if (rc)
        return rc;
    return ckpt__st_parse_header((const char *)buf + 8, (size_t)(size - 8 - data_size), data_size,
                                 fname, out);
}

/* Length (1..4) of the well-formed UTF-8 sequence at s, 0 if ill-formed
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    unsigned lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if (s[k] < 0x80 || s[k] > 0xBF)
            return 0;
    return n;
}

/* ---------------------------------------------------------------- JSON */

enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jnode {
    int type;
    int num_ok;  /* J_NUM: a non-negative integer that fits in a u64 */
    size_t pos;  /* offset of the value's first byte in the JSON text */
    size_t len;  /* J_NUM: bytes of text; J_STR: decoded bytes; J_ARR/J_OBJ: items/members */
    uint64_t u;  /* J_NUM: value; J_STR: offset in pool; J_ARR/J_OBJ: first index in links */
} jnode;

/* The DOM lives in three flat arrays so that a header of N bytes costs a
 * handful of allocations. An object's members are links[u + 2k] (key node)
 * and links[u + 2k + 1] (value node). Decoded strings (NUL-terminated) go to
 * pool, sized once: a decoded string plus its NUL never exceeds its quoted
 * source, so the pool never moves and pointers into it stay valid. */
typedef struct jparser {
    const char *s;
    size_t len, i;
    const char *fname;
    jnode *nodes;
    size_t nnodes, cap_nodes;
    size_t *links;
    size_t nlinks, cap_links;
    size_t *stack; /* children of the containers being parsed */
    size_t nstack, cap_stack;
    char *pool;
    size_t npool;
    int depth;
} jparser;

#define FOFF(pos) ((unsigned long long)(pos) + 8u) /* file offset of a header byte */

static int jerr(jparser *p, size_t pos, const char *what)
{
    return ckpt__err(CKPT_EINVAL, "%s: invalid safetensors header JSON at file offset %llu: %s",
                     p->fname, FOFF(pos), what);
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return CKPT_OK;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need) {
        if (ckpt__mul_size(ncap, 2, &ncap))
            return ckpt__err(CKPT_ENOMEM, "safetensors header: too many JSON values");
    }
    size_t bytes;
    if (ckpt__mul_size(ncap, elem, &bytes))
        return ckpt__err(CKPT_ENOMEM, "safetensors header: too many JSON values");
    void *n = ckpt__realloc(*arr, bytes);
    if (!n)
        return ckpt__err(CKPT_ENOMEM, "out of memory parsing a safetensors header");
    *arr = n;
    *cap = ncap;
    return CKPT_OK;
}

static int new_node(jparser *p, int type, size_t pos, size_t *out)
{
    int rc = grow((void **)&p->nodes, &p->cap_nodes, p->nnodes + 1, sizeof(jnode));
    if (rc)
        return rc;
    p->nodes[p->nnodes] = (jnode){.type = type, .pos = pos};
    *out = p->nnodes++;
    return CKPT_OK;
}

static int push(jparser *p, size_t idx)
{
    int rc = grow((void **)&p->stack, &p->cap_stack, p->nstack + 1, sizeof(size_t));
    if (rc)
        return rc;
    p->stack[p->nstack++] = idx;
    return CKPT_OK;
}

/* Moves the children pushed since base from the stack to links. */
static int close_container(jparser *p, size_t node, size_t base)
{
    size_t cnt = p->nstack - base;
    int rc = grow((void **)&p->links, &p->cap_links, p->nlinks + cnt, sizeof(size_t));
    if (rc)
        return rc;
    if (cnt)
        memcpy(p->links + p->nlinks, p->stack + base, cnt * sizeof(size_t));
    p->nodes[node].u = p->nlinks;
    p->nlinks += cnt;
    p->nstack = base;
    return CKPT_OK;
}

static void skip_ws(jparser *p)
{
    while (p->i < p->len) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->i++;
    }
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *d, unsigned cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int parse_string(jparser *p, size_t *out)
{
    size_t start = p->i, node;
    int rc = new_node(p, J_STR, start, &node);
    if (rc)
        return rc;
    size_t off = p->npool;
    char *d = p->pool + off;
    size_t n = 0;
    p->i++; /* opening quote */
    for (;;) {
        if (p->i >= p->len)
            return jerr(p, start, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            break;
        }
        if (c < 0x20) {
            char m[64];
            snprintf(m, sizeof m, "unescaped control character 0x%02x in a string", c);
            return jerr(p, p->i, m);
        }
        if (c == '\\') {
            size_t esc = p->i;
            if (p->i + 1 >= p->len)
                return jerr(p, esc, "unterminated escape sequence");
            char e = p->s[p->i + 1];
            p->i += 2;
            switch (e) {
            case '"': d[n++] = '"'; continue;
            case '\\': d[n++] = '\\'; continue;
            case '/': d[n++] = '/'; continue;
            case 'b': d[n++] = '\b'; continue;
            case 'f': d[n++] = '\f'; continue;
            case 'n': d[n++] = '\n'; continue;
            case 'r': d[n++] = '\r'; continue;
            case 't': d[n++] = '\t'; continue;
            case 'u': break;
            default: return jerr(p, esc, "invalid escape sequence");
            }
            unsigned cp;
            if (p->len - p->i < 4 || hex4(p->s + p->i, &cp))
                return jerr(p, esc, "\\u must be followed by 4 hex digits");
            p->i += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return jerr(p, esc, "\\u escape of a lone low surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (p->len - p->i < 6 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
                    hex4(p->s + p->i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return jerr(p, esc, "\\u escape of a high surrogate not followed by a low one");
                p->i += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            n += put_utf8(d + n, cp);
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq((const unsigned char *)p->s + p->i, p->len - p->i);
            if (!k)
                return jerr(p, p->i, "invalid UTF-8 in a string");
            memcpy(d + n, p->s + p->i, k);
            n += k;
            p->i += k;
            continue;
        }
        d[n++] = (char)c;
        p->i++;
    }
    d[n] = 0;
    p->npool += n + 1;
    p->nodes[node].u = off;
    p->nodes[node].len = n;
    *out = node;
    return CKPT_OK;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int parse_number(jparser *p, size_t *out)
{
    size_t start = p->i, node;
    int neg = 0, integral = 1, overflow = 0;
    uint64_t v = 0;
    if (p->s[p->i] == '-') {
        neg = 1;
        p->i++;
    }
    if (p->i >= p->len || !is_digit(p->s[p->i]))
        return jerr(p, start, "invalid number");
    if (p->s[p->i] == '0') {
        p->i++;
        if (p->i < p->len && is_digit(p->s[p->i]))
            return jerr(p, start, "number with a leading zero");
    } else {
        while (p->i < p->len && is_digit(p->s[p->i])) {
            unsigned dgt = (unsigned)(p->s[p->i] - '0');
            if (__builtin_mul_overflow(v, 10u, &v) || __builtin_add_overflow(v, dgt, &v))
                overflow = 1;
            p->i++;
        }
    }
    if (p->i < p->len && p->s[p->i] == '.') {
        integral = 0;
        p->i++;
        if (p->i >= p->len || !is_digit(p->s[p->i]))
            return jerr(p, start, "invalid number: no digit after '.'");
        while (p->i < p->len && is_digit(p->s[p->i]))
            p->i++;
    }
    if (p->i < p->len && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        integral = 0;
        p->i++;
        if (p->i < p->len && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        if (p->i >= p->len || !is_digit(p->s[p->i]))
            return jerr(p, start, "invalid number: no digit in the exponent");
        while (p->i < p->len && is_digit(p->s[p->i]))
            p->i++;
    }
    int rc = new_node(p, J_NUM, start, &node);
    if (rc)
        return rc;
    p->nodes[node].len = p->i - start;
    p->nodes[node].num_ok = !neg && integral && !overflow;
    p->nodes[node].u = v;
    *out = node;
    return CKPT_OK;
}

static int parse_value(jparser *p, size_t *out);

typedef struct kref {
    const char *s;
    size_t len, pos;
} kref;

static int kref_cmp(const void *a, const void *b)
{
    const kref *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, m);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int dup_key_err(jparser *p, const kref *k)
{
    return ckpt__err(CKPT_EINVAL,
                     "%s: invalid safetensors header JSON at file offset %llu: duplicate key \"%.*s\"",
                     p->fname, FOFF(k->pos), (int)(k->len > 200 ? 200 : k->len), k->s);
}

/* Object members are on the stack from base: key, value, key, value... */
static int check_dup_keys(jparser *p, size_t base, size_t count)
{
    if (count < 2)
        return CKPT_OK;
    if (count <= 8) {
        /* tensor entries have 3 keys: no allocation for them */
        for (size_t a = 1; a < count; a++) {
            const jnode *ka = &p->nodes[p->stack[base + 2 * a]];
            for (size_t b = 0; b < a; b++) {
                const jnode *kb = &p->nodes[p->stack[base + 2 * b]];
                if (ka->len == kb->len && memcmp(p->pool + ka->u, p->pool + kb->u, ka->len) == 0) {
                    kref k = {p->pool + ka->u, ka->len, ka->pos};
                    return dup_key_err(p, &k);
                }
            }
        }
        return CKPT_OK;
    }
    kref *ks = ckpt__calloc(count, sizeof *ks);
    if (!ks)
        return ckpt__err(CKPT_ENOMEM, "out of memory parsing a safetensors header");
    for (size_t k = 0; k < count; k++) {
        const jnode *kn = &p->nodes[p->stack[base + 2 * k]];
        ks[k] = (kref){p->pool + kn->u, kn->len, kn->pos};
    }
    /* pos breaks ties, so the second of equal keys is the later one */
    qsort(ks, count, sizeof *ks, kref_cmp);
    int rc = CKPT_OK;
    for (size_t k = 1; k < count && !rc; k++)
        if (ks[k].len == ks[k - 1].len && memcmp(ks[k].s, ks[k - 1].s, ks[k].len) == 0)
            rc = dup_key_err(p, &ks[k]);
    ckpt__free(ks);
    return rc;
}

static int enter(jparser *p, size_t pos)
{
    if (++p->depth > CKPT__ST_MAX_DEPTH) {
        char m[64];
        snprintf(m, sizeof m, "nested deeper than %d levels", CKPT__ST_MAX_DEPTH);
        return jerr(p, pos, m);
    }
    return CKPT_OK;
}

static int parse_object(jparser *p, size_t *out)
{
    size_t start = p->i, node, base = p->nstack;
    int rc = enter(p, start);
    if (rc || (rc = new_node(p, J_OBJ, start, &node)))
        return rc;
    p->i++;
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == '}') {
        p->i++;
    } else {
        for (;;) {
            size_t k, v;
            skip_ws(p);
            if (p->i >= p->len)
                return jerr(p, p->i, "unexpected end of header inside an object");
            if (p->s[p->i] != '"')
                return jerr(p, p->i, "expected a string key");
            if ((rc = parse_string(p, &k)) || (rc = push(p, k)))
                return rc;
            skip_ws(p);
            if (p->i >= p->len || p->s[p->i] != ':')
                return jerr(p, p->i, "expected ':' after an object key");
            p->i++;
            if ((rc = parse_value(p, &v)) || (rc = push(p, v)))
                return rc;
            skip_ws(p);
            if (p->i >= p->len)
                return jerr(p, p->i, "unexpected end of header inside an object");
            if (p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (p->s[p->i] == '}') {
                p->i++;
                break;
            }
            return jerr(p, p->i, "expected ',' or '}' in an object");
        }
    }
    size_t count = (p->nstack - base) / 2;
    if ((rc = check_dup_keys(p, base, count)) || (rc = close_container(p, node, base)))
        return rc;
    p->nodes[node].len = count;
    p->depth--;
    *out = node;
    return CKPT_OK;
}

static int parse_array(jparser *p, size_t *out)
{
    size_t start = p->i, node, base = p->nstack;
    int rc = enter(p, start);
    if (rc || (rc = new_node(p, J_ARR, start, &node)))
        return rc;
    p->i++;
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == ']') {
        p->i++;
    } else {
        for (;;) {
            size_t v;
            if (p->nstack - base == CKPT__ST_MAX_ARRAY) {
                char m[64];
                snprintf(m, sizeof m, "array of more than %d items", CKPT__ST_MAX_ARRAY);
                return jerr(p, start, m);
            }
            if ((rc = parse_value(p, &v)) || (rc = push(p, v)))
                return rc;
            skip_ws(p);
            if (p->i >= p->len)
                return jerr(p, p->i, "unexpected end of header inside an array");
            if (p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (p->s[p->i] == ']') {
                p->i++;
                break;
            }
            return jerr(p, p->i, "expected ',' or ']' in an array");
        }
    }
    size_t count = p->nstack - base;
    if ((rc = close_container(p, node, base)))
        return rc;
    p->nodes[node].len = count;
    p->depth--;
    *out = node;
    return CKPT_OK;
}

static int parse_literal(jparser *p, const char *word, int type, size_t *out)
{
    size_t n = strlen(word);
    if (p->len - p->i < n || memcmp(p->s + p->i, word, n) != 0)
        return jerr(p, p->i, "unexpected character");
    int rc = new_node(p, type, p->i, out);
    p->i += n;
    return rc;
}

static int parse_value(jparser *p, size_t *out)
{
    skip_ws(p);
    if (p->i >= p->len)
        return jerr(p, p->i, "unexpected end of header, expected a value");
    unsigned char c = (unsigned char)p->s[p->i];
    switch (c) {
    case '{': return parse_object(p, out);
    case '[': return parse_array(p, out);
    case '"': return parse_string(p, out);
    case 't': return parse_literal(p, "true", J_TRUE, out);
    case 'f': return parse_literal(p, "false", J_FALSE, out);
    case 'n': return parse_literal(p, "null", J_NULL, out);
    default:
        if (c == '-' || is_digit((char)c))
            return parse_number(p, out);
        char m[64];
        if (c >= 0x21 && c < 0x7F)
            snprintf(m, sizeof m, "unexpected character '%c'", c);
        else
            snprintf(m, sizeof m, "unexpected byte 0x%02x", c);
        return jerr(p, p->i, m);
    }
}

static void jparser_free(jparser *p)
{
    ckpt__free(p->nodes);
    ckpt__free(p->links);
    ckpt__free(p->stack);
    ckpt__free(p->pool);
}

/* ---------------------------------------------------------------- schema */

static const char *type_name(int type)
{
    switch (type) {
    case J_NULL: return "null";
    case J_FALSE:
    case J_TRUE: return "a boolean";
    case J_NUM: return "a number";
    case J_STR: return "a string";
    case J_ARR: return "an array";
    default: return "an object";
    }
}

/* Name as printed in messages: bounded so that a long one leaves room for
 * the rest of the message. */
#define NAMEF "\"%.*s\""
#define NAMEA(s, len) (int)((len) > 200 ? 200 : (len)), (s)

typedef struct schema {
    jparser *p;
    const char *name; /* tensor being checked */
    size_t name_len;
} schema;

static int terr(schema *sc, size_t pos, const char *what)
{
    return ckpt__err(CKPT_EINVAL, "%s: tensor " NAMEF " (file offset %llu): %s", sc->p->fname,
                     NAMEA(sc->name, sc->name_len), FOFF(pos), what);
}

/* Reads an integer where one is required; bound is the largest accepted. */
static int want_uint(schema *sc, size_t node, const char *field, uint64_t bound, uint64_t *out)
{
    const jnode *n = &sc->p->nodes[node];
    char m[160];
    if (n->type != J_NUM) {
        snprintf(m, sizeof m, "%s is %s, not a non-negative integer", field, type_name(n->type));
        return terr(sc, n->pos, m);
    }
    if (!n->num_ok || n->u > bound) {
        snprintf(m, sizeof m, "%s is %.*s, not a non-negative integer of at most %" PRIu64, field,
                 (int)(n->len > 40 ? 40 : n->len), sc->p->s + n->pos, bound);
        return terr(sc, n->pos, m);
    }
    *out = n->u;
    return CKPT_OK;
}

static int parse_dtype(schema *sc, size_t node, int *dtype, size_t *esize)
{
    const jnode *n = &sc->p->nodes[node];
    char m[160];
    if (n->type != J_STR) {
        snprintf(m, sizeof m, "dtype is %s, not a string", type_name(n->type));
        return terr(sc, n->pos, m);
    }
    const char *s = sc->p->pool + n->u;
    for (size_t k = 0; k < N_DTYPES; k++) {
        if (strlen(st_dtypes[k].name) == n->len && memcmp(s, st_dtypes[k].name, n->len) == 0) {
            *dtype = st_dtypes[k].dtype;
            *esize = st_dtypes[k].size;
            return CKPT_OK;
        }
    }
    for (size_t k = 0; k < sizeof st_unsupported / sizeof st_unsupported[0]; k++) {
        if (strlen(st_unsupported[k]) == n->len && memcmp(s, st_unsupported[k], n->len) == 0) {
            snprintf(m, sizeof m,
                     "unsupported dtype \"%s\" (ckpt stores F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
                     st_unsupported[k]);
            return terr(sc, n->pos, m);
        }
    }
    snprintf(m, sizeof m, "unknown dtype \"%.*s\"", (int)(n->len > 40 ? 40 : n->len), s);
    return terr(sc, n->pos, m);
}

static int parse_tensor(schema *sc, size_t obj, uint64_t data_size, ckpt__st_tensor *t)
{
    jparser *p = sc->p;
    const jnode *on = &p->nodes[obj];
    char m[256];
    if (on->type != J_OBJ) {
        snprintf(m, sizeof m, "entry is %s, not an object with dtype, shape and data_offsets",
                 type_name(on->type));
        return terr(sc, on->pos, m);
    }
    size_t f_dtype = SIZE_MAX, f_shape = SIZE_MAX, f_offs = SIZE_MAX;
    for (size_t k = 0; k < on->len; k++) {
        const jnode *kn = &p->nodes[p->links[on->u + 2 * k]];
        size_t v = p->links[on->u + 2 * k + 1];
        const char *key = p->pool + kn->u;
        if (kn->len == 5 && memcmp(key, "dtype", 5) == 0) {
            f_dtype = v;
        } else if (kn->len == 5 && memcmp(key, "shape", 5) == 0) {
            f_shape = v;
        } else if (kn->len == 12 && memcmp(key, "data_offsets", 12) == 0) {
            f_offs = v;
        } else {
            snprintf(m, sizeof m, "unknown key " NAMEF " (expected dtype, shape, data_offsets)",
                     NAMEA(key, kn->len > 40 ? 40 : kn->len));
            return terr(sc, kn->pos, m);
        }
    }
    const char *missing = f_dtype == SIZE_MAX ? "dtype"
                          : f_shape == SIZE_MAX ? "shape"
                          : f_offs == SIZE_MAX ? "data_offsets"
                                               : NULL;
    if (missing) {
        snprintf(m, sizeof m, "missing key \"%s\"", missing);
        return terr(sc, on->pos, m);
    }

    size_t esize = 0;
    int rc = parse_dtype(sc, f_dtype, &t->dtype, &esize);
    if (rc)
        return rc;

    const jnode *sn = &p->nodes[f_shape];
    if (sn->type != J_ARR) {
        snprintf(m, sizeof m, "shape is %s, not an array", type_name(sn->type));
        return terr(sc, sn->pos, m);
    }
    if (sn->len > CKPT_MAX_DIMS) {
        snprintf(m, sizeof m, "shape has %zu dimensions, more than %d", sn->len, CKPT_MAX_DIMS);
        return terr(sc, sn->pos, m);
    }
    t->ndim = (int)sn->len;
    uint64_t count = 1;
    int overflow = 0;
    for (size_t k = 0; k < sn->len; k++) {
        uint64_t d;
        char field[32];
        snprintf(field, sizeof field, "shape[%zu]", k);
        if ((rc = want_uint(sc, p->links[sn->u + k], field, INT64_MAX, &d)))
            return rc;
        t->shape[k] = (int64_t)d;
        if (__builtin_mul_overflow(count, d, &count))
            overflow = 1;
    }
    uint64_t nbytes;
    /* A zero dimension makes the size 0 whatever the others are, but an
     * overflow on the way there still means a broken (or hostile) shape. */
    if (overflow || __builtin_mul_overflow(count, (uint64_t)esize, &nbytes)) {
        snprintf(m, sizeof m, "the size of shape [");
        for (int k = 0; k < t->ndim; k++) {
            size_t used = strlen(m);
            snprintf(m + used, sizeof m - used, "%s%" PRId64, k ? ", " : "", t->shape[k]);
        }
        size_t used = strlen(m);
        snprintf(m + used, sizeof m - used, "] x %zu bytes overflows 64 bits", esize);
        return terr(sc, sn->pos, m);
    }

    const jnode *fn = &p->nodes[f_offs];
    if (fn->type != J_ARR || fn->len != 2) {
        if (fn->type != J_ARR)
            snprintf(m, sizeof m, "data_offsets is %s, not an array [begin, end]",
                     type_name(fn->type));
        else
            snprintf(m, sizeof m, "data_offsets has %zu entries, not 2 [begin, end]", fn->len);
        return terr(sc, fn->pos, m);
    }
    if ((rc = want_uint(sc, p->links[fn->u], "data_offsets[0]", UINT64_MAX, &t->begin)) ||
        (rc = want_uint(sc, p->links[fn->u + 1], "data_offsets[1]", UINT64_MAX, &t->end)))
        return rc;
    if (t->end < t->begin) {
        snprintf(m, sizeof m, "data_offsets [%" PRIu64 ", %" PRIu64 "] end before begin",
                 t->begin, t->end);
        return terr(sc, fn->pos, m);
    }
    if (t->end - t->begin != nbytes) {
        snprintf(m, sizeof m,
                 "data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                 " bytes but dtype and shape need %" PRIu64,
                 t->begin, t->end, t->end - t->begin, nbytes);
        return terr(sc, fn->pos, m);
    }
    if (t->end > data_size) {
        snprintf(m, sizeof m,
                 "data_offsets [%" PRIu64 ", %" PRIu64 "] go beyond the end of the %" PRIu64
                 "-byte data section (file truncated?)",
                 t->begin, t->end, data_size);
        return terr(sc, fn->pos, m);
    }
    return CKPT_OK;
}

static int parse_metadata(jparser *p, size_t obj, ckpt__st_header *h)
{
    const jnode *on = &p->nodes[obj];
    if (on->type != J_OBJ)
        return ckpt__err(CKPT_EINVAL, "%s: __metadata__ (file offset %llu) is %s, not an object",
                         p->fname, FOFF(on->pos), type_name(on->type));
    if (on->len == 0)
        return CKPT_OK;
    h->meta_key = ckpt__calloc(on->len, sizeof(char *));
    h->meta_val = ckpt__calloc(on->len, sizeof(char *));
    if (!h->meta_key || !h->meta_val)
        return ckpt__err(CKPT_ENOMEM, "out of memory parsing a safetensors header");
    for (size_t k = 0; k < on->len; k++) {
        const jnode *kn = &p->nodes[p->links[on->u + 2 * k]];
        const jnode *vn = &p->nodes[p->links[on->u + 2 * k + 1]];
        const char *key = p->pool + kn->u;
        if (vn->type != J_STR)
            return ckpt__err(CKPT_EINVAL,
                             "%s: __metadata__ value of " NAMEF
                             " (file offset %llu) is %s, not a string",
                             p->fname, NAMEA(key, kn->len), FOFF(vn->pos), type_name(vn->type));
        if (memchr(key, 0, kn->len) || memchr(p->pool + vn->u, 0, vn->len))
            return ckpt__err(CKPT_EINVAL,
                             "%s: __metadata__ entry " NAMEF " (file offset %llu) contains \\u0000",
                             p->fname, NAMEA(key, kn->len), FOFF(kn->pos));
        h->meta_key[k] = p->pool + kn->u;
        h->meta_val[k] = p->pool + vn->u;
    }
    h->nmeta = on->len;
    return CKPT_OK;
}

static int tensor_cmp(const void *a, const void *b)
{
    const ckpt__st_tensor *x = *(const ckpt__st_tensor *const *)a;
    const ckpt__st_tensor *y = *(const ckpt__st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* The tensors must tile the data section exactly: every byte belongs to one
 * tensor, so no bytes are hidden in gaps and no tensor aliases another. */
static int check_layout(const char *fname, ckpt__st_header *h, uint64_t data_size)
{
    if (h->n == 0) {
        if (data_size)
            return ckpt__err(CKPT_EINVAL,
                             "%s: no tensors, but %" PRIu64 " bytes follow the header", fname,
                             data_size);
        return CKPT_OK;
    }
    ckpt__st_tensor **ord = ckpt__calloc(h->n, sizeof *ord);
    if (!ord)
        return ckpt__err(CKPT_ENOMEM, "out of memory validating a safetensors header");
    for (size_t k = 0; k < h->n; k++)
        ord[k] = &h->t[k];
    qsort(ord, h->n, sizeof *ord, tensor_cmp);
    int rc = CKPT_OK;
    uint64_t pos = 0;
    const ckpt__st_tensor *prev = NULL;
    for (size_t k = 0; k < h->n && !rc; k++) {
        const ckpt__st_tensor *t = ord[k];
        if (t->begin > pos)
            rc = ckpt__err(CKPT_EINVAL,
                           "%s: tensor \"%s\": %" PRIu64 " unused bytes at data offsets [%" PRIu64
                           ", %" PRIu64 ") before it",
                           fname, t->name, t->begin - pos, pos, t->begin);
        else if (t->begin < pos)
            rc = ckpt__err(CKPT_EINVAL,
                           "%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64
                           "] overlap tensor \"%s\" which ends at %" PRIu64,
                           fname, t->name, t->begin, t->end, prev->name, pos);
        pos = t->end;
        prev = t;
    }
    if (!rc && pos != data_size)
        rc = ckpt__err(CKPT_EINVAL,
                       "%s: the tensors end at data offset %" PRIu64 " but the data section has %" PRIu64
                       " bytes: %" PRIu64 " trailing bytes (file too long)",
                       fname, pos, data_size, data_size - pos);
    ckpt__free(ord);
    return rc;
}

void ckpt__st_header_free(ckpt__st_header *h)
{
    if (!h)
        return;
    ckpt__free(h->t);
    ckpt__free(h->meta_key);
    ckpt__free(h->meta_val);
    ckpt__free(h->pool);
    memset(h, 0, sizeof *h);
}

int ckpt__st_parse_header(const char *json, size_t len, uint64_t data_size, const char *fname,
                          ckpt__st_header *out)
{
    memset(out, 0, sizeof *out);
    if (!fname)
        fname = "safetensors file";
    if (len > CKPT__ST_MAX_HEADER)
        return ckpt__err(CKPT_EINVAL, "%s: header of %zu bytes is larger than the %" PRIu64
                         "-byte limit", fname, len, CKPT__ST_MAX_HEADER);
    if (len == 0 || json[0] != '{')
        return ckpt__err(CKPT_EINVAL,
                         "%s: invalid safetensors header JSON at file offset 8: %s", fname,
                         len == 0 ? "the header is empty" : "the header does not start with '{'");

    jparser p = {.s = json, .len = len, .fname = fname};
    ckpt__st_header h = {.header_len = len};
    int rc;
    size_t root;
    p.pool = ckpt__malloc(len + 1);
    if (!p.pool) {
        rc = ckpt__err(CKPT_ENOMEM, "out of memory parsing a safetensors header");
        goto fail;
    }
    if ((rc = parse_value(&p, &root)))
        goto fail;
    skip_ws(&p);
    if (p.i < len) {
        rc = jerr(&p, p.i, "unexpected bytes after the end of the JSON object");
        goto fail;
    }

    const jnode *rn = &p.nodes[root];
    size_t ntensors = rn->len;
    for (size_t k = 0; k < rn->len; k++) {
        const jnode *kn = &p.nodes[p.links[rn->u + 2 * k]];
        if (kn->len == 12 && memcmp(p.pool + kn->u, "__metadata__", 12) == 0) {
            if ((rc = parse_metadata(&p, p.links[rn->u + 2 * k + 1], &h)))
                goto fail;
            ntensors--;
        }
    }
    if (ntensors) {
        h.t = ckpt__calloc(ntensors, sizeof *h.t);
        if (!h.t) {
            rc = ckpt__err(CKPT_ENOMEM, "out of memory parsing a safetensors header");
            goto fail;
        }
    }
    for (size_t k = 0; k < rn->len; k++) {
        const jnode *kn = &p.nodes[p.links[rn->u + 2 * k]];
        const char *name = p.pool + kn->u;
        if (kn->len == 12 && memcmp(name, "__metadata__", 12) == 0)
            continue;
        schema sc = {&p, name, kn->len};
        if (kn->len == 0) {
            rc = terr(&sc, kn->pos, "empty tensor name");
            goto fail;
        }
        if (memchr(name, 0, kn->len)) {
            rc = terr(&sc, kn->pos, "tensor name contains \\u0000");
            goto fail;
        }
        ckpt__st_tensor *t = &h.t[h.n];
        t->name = (char *)name;
        if ((rc = parse_tensor(&sc, p.links[rn->u + 2 * k + 1], data_size, t)))
            goto fail;
        h.n++;
    }
    if ((rc = check_layout(fname, &h, data_size)))
        goto fail;

    h.pool = p.pool;
    p.pool = NULL;
    jparser_free(&p);
    *out = h;
    return CKPT_OK;

fail:
    jparser_free(&p);
    ckpt__st_header_free(&h);
    return rc;
}

/* ---------------------------------------------------------------- writer */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    size_t need;
    if (ckpt__add_size(b->n, n, &need))
        return ckpt__err(CKPT_ENOMEM, "safetensors header too large");
    if (need > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < need)
            if (ckpt__mul_size(ncap, 2, &ncap))
                return ckpt__err(CKPT_ENOMEM, "safetensors header too large");
        char *np = ckpt__realloc(b->p, ncap);
        if (!np)
            return ckpt__err(CKPT_ENOMEM, "out of memory writing a safetensors header");
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, s, n);
    b->n = need;
    return CKPT_OK;
}

static int sb_str(sbuf *b, const char *s)
{
    return sb_put(b, s, strlen(s));
}

static int sb_u64(sbuf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    return sb_put(b, tmp, (size_t)n);
}

/* Appends s as a JSON string. what names it in the error message. */
static int sb_jstr(sbuf *b, const char *s, const char *what)
{
    int rc = sb_put(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    while (!rc && i < n) {
        size_t run = i;
        /* copy runs of bytes that need no escape in one go */
        while (run < n && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            rc = sb_put(b, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = u[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(u + i, n - i);
            if (!k)
                return ckpt__err(CKPT_EINVAL,
                                 "safetensors export: %s \"%.200s\" is not valid UTF-8 (byte %zu)",
                                 what, s, i);
            rc = sb_put(b, s + i, k);
            i += k;
            continue;
        }
        char esc[8];
        switch (c) {
        case '"': rc = sb_put(b, "\\\"", 2); break;
        case '\\': rc = sb_put(b, "\\\\", 2); break;
        case '\n': rc = sb_put(b, "\\n", 2); break;
        case '\r': rc = sb_put(b, "\\r", 2); break;
        case '\t': rc = sb_put(b, "\\t", 2); break;
        case '\b': rc = sb_put(b, "\\b", 2); break;
        case '\f': rc = sb_put(b, "\\f", 2); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            rc = sb_put(b, esc, 6);
        }
        i++;
    }
    return rc ? rc : sb_put(b, "\"", 1);
}

static int write_tensor(sbuf *b, const ckpt__st_tensor *t)
{
    const char *dt = ckpt__st_dtype_name(t->dtype);
    if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0)
        return ckpt__err(CKPT_EINVAL, "safetensors export: invalid tensor name \"%s\"",
                         t->name ? t->name : "(null)");
    if (!dt)
        return ckpt__err(CKPT_EINVAL, "safetensors export: tensor \"%s\": unknown dtype %d",
                         t->name, t->dtype);
    if (t->ndim < 0 || t->ndim > CKPT_MAX_DIMS)
        return ckpt__err(CKPT_EINVAL, "safetensors export: tensor \"%s\": ndim %d not in 0..%d",
                         t->name, t->ndim, CKPT_MAX_DIMS);
    if (t->end < t->begin)
        return ckpt__err(CKPT_EINVAL,
                         "safetensors export: tensor \"%s\": end %" PRIu64 " before begin %" PRIu64,
                         t->name, t->end, t->begin);
    int rc = sb_jstr(b, t->name, "tensor name");
    if (!rc)
        rc = sb_str(b, ":{\"dtype\":\"");
    if (!rc)
        rc = sb_str(b, dt);
    if (!rc)
        rc = sb_str(b, "\",\"shape\":[");
    for (int k = 0; k < t->ndim && !rc; k++) {
        if (t->shape[k] < 0)
            return ckpt__err(CKPT_EINVAL,
                             "safetensors export: tensor \"%s\": shape[%d] is negative (%" PRId64 ")",
                             t->name, k, t->shape[k]);
        if (k)
            rc = sb_put(b, ",", 1);
        if (!rc)
            rc = sb_u64(b, (uint64_t)t->shape[k]);
    }
    if (!rc)
        rc = sb_str(b, "],\"data_offsets\":[");
    if (!rc)
        rc = sb_u64(b, t->begin);
    if (!rc)
        rc = sb_put(b, ",", 1);
    if (!rc)
        rc = sb_u64(b, t->end);
    if (!rc)
        rc = sb_str(b, "]}");
    return rc;
}

int ckpt__st_write_header(const ckpt__st_tensor *t, size_t n, const char *const *meta_key,
                          const char *const *meta_val, size_t nmeta, char **out, size_t *out_len)
{
    sbuf b = {0};
    int rc = sb_put(&b, "\0\0\0\0\0\0\0\0{", 9);
    if (!rc && nmeta) {
        rc = sb_str(&b, "\"__metadata__\":{");
        for (size_t k = 0; k < nmeta && !rc; k++) {
            if (k)
                rc = sb_put(&b, ",", 1);
            if (!rc)
                rc = sb_jstr(&b, meta_key[k], "metadata key");
            if (!rc)
                rc = sb_put(&b, ":", 1);
            if (!rc)
                rc = sb_jstr(&b, meta_val[k], "metadata value");
        }
        if (!rc)
            rc = sb_put(&b, "}", 1);
    }
    for (size_t k = 0; k < n && !rc; k++) {
        if (k || nmeta)
            rc = sb_put(&b, ",", 1);
        if (!rc)
            rc = write_tensor(&b, &t[k]);
    }
    if (!rc)
        rc = sb_put(&b, "}", 1);
    /* Pad so the data section starts 8-byte aligned, as the reference does. */
    while (!rc && (b.n - 8) % 8)
        rc = sb_put(&b, " ", 1);
    if (!rc && (uint64_t)(b.n - 8) > CKPT__ST_MAX_HEADER)
        rc = ckpt__err(CKPT_EINVAL,
                       "safetensors export: header of %zu bytes exceeds the %" PRIu64
                       "-byte limit readers accept",
                       b.n - 8, CKPT__ST_MAX_HEADER);
    if (rc) {
        ckpt__free(b.p);
        *out = NULL;
        *out_len = 0;
        return rc;
    }
    uint64_t hl = b.n - 8;
    for (int k = 0; k < 8; k++)
        b.p[k] = (char)(unsigned char)(hl >> (8 * k));
    *out = b.p;
    *out_len = b.n;
    return CKPT_OK;
}
