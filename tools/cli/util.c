/*
 * util.c - shared pieces of the CLI: errors, strict option and number
 * parsing, aligned tables and JSON string output.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

int cli_fail(const char *cmd, int rc)
{
    (void)rc;
    fprintf(stderr, "ckpt %s: %s\n", cmd, ckpt_errmsg());
    return EXIT_FAIL;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, cmd ? "ckpt %s: " : "ckpt: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see `ckpt %s%s--help`)\n", cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

int cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9')))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_getopt(cli *c, const char *cmd, cli_opt *opts, const char **pos, int max_pos)
{
    int npos = 0;
    for (int i = 0; i < c->argc; i++) {
        const char *a = c->argv[i];
        if (a[0] == '-' && a[1]) {
            cli_opt *o = NULL;
            for (cli_opt *k = opts; k && k->name; k++)
                if (strcmp(k->name, a) == 0)
                    o = k;
            if (!o) {
                cli_usage(cmd, "unknown option '%s'", a);
                return -1;
            }
            if (o->has_arg) {
                if (i + 1 >= c->argc) {
                    cli_usage(cmd, "option %s needs a value", a);
                    return -1;
                }
                *o->value = c->argv[++i];
            } else {
                *o->value = "1";
            }
        } else {
            if (npos == max_pos) {
                cli_usage(cmd, "unexpected argument '%s'", a);
                return -1;
            }
            pos[npos++] = a;
        }
    }
    return npos;
}

/* ---------------------------------------------------------------- tables */

struct table {
    int ncols;
    char **cells; /* row-major, headers first */
    size_t nrows, cap;
    char align[32];
};

table *table_new(int ncols, const char *const *headers, const char *align)
{
    table *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->ncols = ncols;
    snprintf(t->align, sizeof t->align, "%s", align ? align : "");
    table_add(t, headers);
    return t;
}

void table_add(table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->cells = realloc(t->cells, t->cap * (size_t)t->ncols * sizeof *t->cells);
        if (!t->cells)
            abort();
    }
    for (int i = 0; i < t->ncols; i++) {
        t->cells[t->nrows * (size_t)t->ncols + (size_t)i] = strdup(cells[i] ? cells[i] : "");
        if (!t->cells[t->nrows * (size_t)t->ncols + (size_t)i])
            abort();
    }
    t->nrows++;
}

/* Display width: count UTF-8 lead bytes only. */
static int width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

void table_print(table *t, FILE *f)
{
    int w[64] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (int i = 0; i < t->ncols && i < 64; i++) {
            int x = width(t->cells[r * (size_t)t->ncols + (size_t)i]);
            if (x > w[i])
                w[i] = x;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * (size_t)t->ncols + (size_t)i];
            int pad = w[i] - width(s);
            int right = i < (int)strlen(t->align) && t->align[i] == 'r';
            int last = i == t->ncols - 1;
            if (right)
                for (int k = 0; k < pad; k++)
                    putc(' ', f);
            fputs(s, f);
            if (!right && !last)
                for (int k = 0; k < pad; k++)
                    putc(' ', f);
            if (!last)
                fputs("  ", f);
        }
        fputc('\n', f);
    }
}

void table_free(table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

/* The JSON escape of byte c into out (NUL-terminated); returns its length. */
static size_t json_escape(unsigned char c, char out[8])
{
    switch (c) {
    case '"': return (size_t)snprintf(out, 8, "\\\"");
    case '\\': return (size_t)snprintf(out, 8, "\\\\");
    case '\n': return (size_t)snprintf(out, 8, "\\n");
    case '\t': return (size_t)snprintf(out, 8, "\\t");
    case '\r': return (size_t)snprintf(out, 8, "\\r");
    default:
        if (c < 0x20)
            return (size_t)snprintf(out, 8, "\\u%04x", c);
        out[0] = (char)c;
        out[1] = 0;
        return 1;
    }
}

void json_str(FILE *f, const char *s)
{
    char e[8];
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        json_escape(*p, e);
        fputs(e, f);
    }
    fputc('"', f);
}

void fmt_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, cap, "%.1f %s", v, unit[u]);
}

void fmt_time_us(int64_t us, char *buf, size_t cap)
{
    /* Listings print thousands of times from the same few seconds. */
    static time_t last = (time_t)-1;
    static char text[32];
    time_t t = (time_t)(us / 1000000);
    if (t != last) {
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
        last = t;
    }
    snprintf(buf, cap, "%s", text);
}

void fmt_value(double v, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.6g", v);
}

/* JSON keeps every bit: 17 significant digits read back to the same
 * double. JSON has no infinities: they become null, like NaN. */
void fmt_json_value(double v, char *buf, size_t cap)
{
    if (isfinite(v))
        snprintf(buf, cap, "%.17g", v);
    else
        snprintf(buf, cap, "null");
}

size_t json_str_buf(char *buf, size_t cap, const char *s)
{
    if (cap < 3) {
        if (cap)
            buf[0] = 0;
        return 0;
    }
    char e[8];
    size_t n = 0;
    buf[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        size_t k = json_escape(*p, e);
        if (n + k + 2 > cap) /* the closing quote and the NUL must fit */
            break;
        memcpy(buf + n, e, k);
        n += k;
    }
    buf[n++] = '"';
    buf[n] = 0;
    return n;
}
