/*
 * trainconf.c - turns the YAML config into a tr_config. The library flattens
 * the YAML into (dotted key, value text, type) triples; this file knows which
 * keys exist, which type and range each accepts, and names the key in every
 * refusal so a typo never silently trains with a default.
 */
#include "trainconf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ckpt.h"

enum {
    K_HIDDEN, K_ACTIVATION, K_OPTIMIZER, K_LR, K_BETA1, K_BETA2, K_BETAS, K_EPS,
    K_BATCH, K_EPOCHS, K_SEED, K_CKPT_EVERY, K_SAVE_OPT, K_LIMIT_TRAIN, K_LIMIT_TEST,
    K_DATA_DIR, K_COUNT
};

static const char *const key_names[K_COUNT] = {
    [K_HIDDEN] = "model.hidden",
    [K_ACTIVATION] = "model.activation",
    [K_OPTIMIZER] = "optimizer.name",
    [K_LR] = "optimizer.lr",
    [K_BETA1] = "optimizer.beta1",
    [K_BETA2] = "optimizer.beta2",
    [K_BETAS] = "optimizer.betas",
    [K_EPS] = "optimizer.eps",
    [K_BATCH] = "train.batch_size",
    [K_EPOCHS] = "train.epochs",
    [K_SEED] = "train.seed",
    [K_CKPT_EVERY] = "train.checkpoint_every",
    [K_SAVE_OPT] = "train.save_optimizer",
    [K_LIMIT_TRAIN] = "train.limit_train",
    [K_LIMIT_TEST] = "train.limit_test",
    [K_DATA_DIR] = "data.dir",
};

#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"

void tr_config_defaults(tr_config *c)
{
    memset(c, 0, sizeof *c);
    c->nhidden = 1;
    c->hidden[0] = 32;
    snprintf(c->activation, sizeof c->activation, "relu");
    snprintf(c->optimizer, sizeof c->optimizer, "adam");
    /* Keras' Adam defaults, since the default run mirrors its first example. */
    c->lr = 1e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-7;
    c->batch_size = 32;
    c->epochs = 5;
    c->seed = 1;
    c->checkpoint_every = 1;
    c->save_optimizer = 1;
    c->limit_train = 0;
    c->limit_test = 0;
    snprintf(c->data_dir, sizeof c->data_dir, "%s", DEFAULT_DATA_DIR);
}

typedef struct parse_ctx {
    tr_config *c;
    const char *source;
    int seen[K_COUNT];
} parse_ctx;

static const char *type_name(int type)
{
    switch (type) {
    case CKPT_PARAM_T_STRING: return "a string";
    case CKPT_PARAM_T_INT: return "an integer";
    case CKPT_PARAM_T_FLOAT: return "a float";
    case CKPT_PARAM_T_BOOL: return "a boolean";
    case CKPT_PARAM_T_NULL: return "null";
    case CKPT_PARAM_T_LIST: return "a list";
    default: return "a value of unknown type";
    }
}

/* Every refusal goes through here: "config SOURCE: key K: what", and when
 * type is set, the type and text that were found. Returns the positive value
 * that stops ckpt_config_flatten without being mistaken for one of its own
 * (negative) error codes. */
static int bad(const parse_ctx *p, const char *key, int type, const char *value,
               const char *fmt, ...) TR_PRINTF(5, 6);
static int bad(const parse_ctx *p, const char *key, int type, const char *value,
               const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ckpt-train: config %s: key %s: ", p->source, key);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (type)
        fprintf(stderr, " (got %s: %s)", type_name(type), value);
    fputc('\n', stderr);
    return 1;
}

/* Integer text as YAML 1.2's core schema writes it: decimal with an
 * optional sign, 0x hexadecimal or 0o octal. */
static int parse_i64_text(const char *s, int64_t *out)
{
    int base = 10;
    const char *digits = s;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        base = s[1] == 'x' ? 16 : 8;
        digits = s + 2;
    }
    /* strtoll would skip leading blanks and accept a sign after 0x. */
    if (*digits == '\0' || isspace((unsigned char)*digits) ||
        (base != 10 && (*digits == '-' || *digits == '+')))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(digits, &end, base);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int get_int(const parse_ctx *p, const char *key, const char *value, int type,
                   int64_t min, int64_t max, int64_t *out)
{
    int64_t v;
    if (type != CKPT_PARAM_T_INT)
        return bad(p, key, type, value, "expected an integer");
    if (parse_i64_text(value, &v) != 0)
        return bad(p, key, 0, value, "%s is not an integer in the 64-bit range", value);
    if (v < min || v > max) {
        fprintf(stderr, "ckpt-train: config %s: key %s: %s is out of range (%lld..%lld)\n",
                p->source, key, value, (long long)min, (long long)max);
        return 1;
    }
    *out = v;
    return 0;
}

/* A float in (lo, hi) or [lo, hi) etc.; lo_open/hi_open say which ends are
 * excluded. Integers are accepted ("lr: 1" means 1.0). */
static int get_float(const parse_ctx *p, const char *key, const char *value, int type,
                     double lo, int lo_open, double hi, int hi_open, double *out)
{
    if (type != CKPT_PARAM_T_FLOAT && type != CKPT_PARAM_T_INT)
        return bad(p, key, type, value, "expected a number");
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || *end != '\0' || !isfinite(v))
        return bad(p, key, 0, value, "%s is not a finite number", value);
    int below = lo_open ? !(v > lo) : !(v >= lo);
    int above = hi_open ? !(v < hi) : !(v <= hi);
    if (below || above) {
        fprintf(stderr, "ckpt-train: config %s: key %s: %s is out of range: must be in %c%g, %g%c\n",
                p->source, key, value, lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
        return 1;
    }
    *out = v;
    return 0;
}

static int get_bool(const parse_ctx *p, const char *key, const char *value, int type, int *out)
{
    if (type != CKPT_PARAM_T_BOOL)
        return bad(p, key, type, value, "expected true or false");
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(value, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(value, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return bad(p, key, 0, value, "%s is not true or false", value);
}

static int get_string(const parse_ctx *p, const char *key, const char *value, int type,
                      char *buf, size_t cap)
{
    if (type != CKPT_PARAM_T_STRING)
        return bad(p, key, type, value, "expected a string");
    size_t len = strlen(value);
    if (len == 0)
        return bad(p, key, 0, value, "must not be empty");
    if (len >= cap) {
        fprintf(stderr, "ckpt-train: config %s: key %s: longer than %zu bytes\n", p->source,
                key, cap - 1);
        return 1;
    }
    memcpy(buf, value, len + 1);
    return 0;
}

/* Splits a flow list "[a, b, c]" into items, calling item() on each trimmed
 * item. "[]" has no items. Returns the item count or -1 (not a list, or an
 * item rejected: item() has printed why). */
typedef int (*item_fn)(const parse_ctx *p, const char *key, const char *item, int index,
                       void *out);

static int each_item(const parse_ctx *p, const char *key, const char *value, int max,
                     item_fn item, void *out)
{
    char buf[4096];
    size_t len = strlen(value);
    if (len < 2 || value[0] != '[' || value[len - 1] != ']' || len - 2 >= sizeof buf) {
        bad(p, key, 0, value, "expected a list like [32, 32], got %s", value);
        return -1;
    }
    memcpy(buf, value + 1, len - 2);
    buf[len - 2] = '\0';
    char *s = buf;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0')
        return 0;
    int n = 0;
    for (;;) {
        char *comma = strchr(s, ',');
        char *e = comma ? comma : s + strlen(s);
        char *stop = e;
        while (stop > s && isspace((unsigned char)stop[-1]))
            stop--;
        *stop = '\0';
        while (isspace((unsigned char)*s))
            s++;
        if (n >= max) {
            fprintf(stderr, "ckpt-train: config %s: key %s: more than %d items\n", p->source,
                    key, max);
            return -1;
        }
        if (item(p, key, s, n, out) != 0)
            return -1;
        n++;
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    return n;
}

static int hidden_item(const parse_ctx *p, const char *key, const char *item, int index,
                       void *out)
{
    int64_t v;
    if (parse_i64_text(item, &v) != 0) {
        fprintf(stderr, "ckpt-train: config %s: key %s: item %d (%s) is not an integer\n",
                p->source, key, index, item);
        return -1;
    }
    if (v < 1 || v > TR_MAX_WIDTH) {
        fprintf(stderr, "ckpt-train: config %s: key %s: item %d (%s) is out of range (1..%d)\n",
                p->source, key, index, item, TR_MAX_WIDTH);
        return -1;
    }
    ((int *)out)[index] = (int)v;
    return 0;
}

static int beta_item(const parse_ctx *p, const char *key, const char *item, int index,
                     void *out)
{
    char *end;
    double v = strtod(item, &end);
    if (end == item || *end != '\0' || !isfinite(v)) {
        fprintf(stderr, "ckpt-train: config %s: key %s: item %d (%s) is not a finite number\n",
                p->source, key, index, item);
        return -1;
    }
    if (!(v >= 0.0 && v < 1.0)) {
        fprintf(stderr, "ckpt-train: config %s: key %s: item %d (%s) is out of range: must be in [0, 1)\n",
                p->source, key, index, item);
        return -1;
    }
    ((double *)out)[index] = v;
    return 0;
}

static int on_param(void *vctx, const char *key, const char *value, int type)
{
    parse_ctx *p = vctx;
    tr_config *c = p->c;
    int k;
    /* ckpt.codec / ckpt.level are the store's business: the library reads
     * them from the run's params (and refuses bad values at save time). */
    if (strcmp(key, "ckpt.codec") == 0 || strcmp(key, "ckpt.level") == 0)
        return 0;
    for (k = 0; k < K_COUNT; k++)
        if (strcmp(key, key_names[k]) == 0)
            break;
    if (k == K_COUNT) {
        fprintf(stderr, "ckpt-train: config %s: unknown key %s (known keys:", p->source, key);
        for (int i = 0; i < K_COUNT; i++)
            fprintf(stderr, " %s", key_names[i]);
        fprintf(stderr, ")\n");
        return 1;
    }
    if (p->seen[k]) {
        fprintf(stderr, "ckpt-train: config %s: key %s is given twice\n", p->source, key);
        return 1;
    }
    p->seen[k] = 1;
    if ((k == K_BETAS && (p->seen[K_BETA1] || p->seen[K_BETA2])) ||
        ((k == K_BETA1 || k == K_BETA2) && p->seen[K_BETAS])) {
        fprintf(stderr, "ckpt-train: config %s: key %s: give either optimizer.betas or "
                        "optimizer.beta1/beta2, not both\n", p->source, key);
        return 1;
    }
    if (type == CKPT_PARAM_T_NULL)
        return bad(p, key, 0, value, "has no value");

    int64_t iv = 0;
    int rc;
    switch (k) {
    case K_HIDDEN: {
        int widths[TR_MAX_HIDDEN];
        int n;
        if (type == CKPT_PARAM_T_INT) {
            /* "hidden: 32" is read as one hidden layer of 32. */
            if (hidden_item(p, key, value, 0, widths) != 0)
                return 1;
            n = 1;
        } else if (type == CKPT_PARAM_T_LIST) {
            n = each_item(p, key, value, TR_MAX_HIDDEN, hidden_item, widths);
            if (n < 0)
                return 1;
        } else {
            return bad(p, key, type, value, "expected a list of layer widths like [32]");
        }
        c->nhidden = n;
        memcpy(c->hidden, widths, (size_t)n * sizeof widths[0]);
        return 0;
    }
    case K_ACTIVATION:
        if (type != CKPT_PARAM_T_STRING)
            return bad(p, key, type, value, "expected a string");
        if (strcmp(value, "relu") != 0)
            return bad(p, key, 0, value, "unsupported activation %s (supported: relu)", value);
        snprintf(c->activation, sizeof c->activation, "%s", value);
        return 0;
    case K_OPTIMIZER:
        if (type != CKPT_PARAM_T_STRING)
            return bad(p, key, type, value, "expected a string");
        if (strcmp(value, "adam") != 0)
            return bad(p, key, 0, value, "unsupported optimizer %s (supported: adam)", value);
        snprintf(c->optimizer, sizeof c->optimizer, "%s", value);
        return 0;
    case K_LR:
        return get_float(p, key, value, type, 0.0, 1, 1e6, 0, &c->lr);
    case K_BETA1:
        return get_float(p, key, value, type, 0.0, 0, 1.0, 1, &c->beta1);
    case K_BETA2:
        return get_float(p, key, value, type, 0.0, 0, 1.0, 1, &c->beta2);
    case K_BETAS: {
        double b[2];
        if (type != CKPT_PARAM_T_LIST)
            return bad(p, key, type, value, "expected a list of two numbers like [0.9, 0.999]");
        int n = each_item(p, key, value, 2, beta_item, b);
        if (n < 0)
            return 1;
        if (n != 2)
            return bad(p, key, 0, value, "expected exactly two numbers like [0.9, 0.999]");
        c->beta1 = b[0];
        c->beta2 = b[1];
        return 0;
    }
    case K_EPS:
        return get_float(p, key, value, type, 0.0, 1, 1.0, 0, &c->eps);
    case K_BATCH:
        return get_int(p, key, value, type, 1, TR_MAX_BATCH, &c->batch_size);
    case K_EPOCHS:
        return get_int(p, key, value, type, 1, TR_MAX_EPOCHS, &c->epochs);
    case K_SEED:
        rc = get_int(p, key, value, type, 0, INT64_MAX, &iv);
        if (rc == 0)
            c->seed = (uint64_t)iv;
        return rc;
    case K_CKPT_EVERY:
        return get_int(p, key, value, type, 1, TR_MAX_EPOCHS, &c->checkpoint_every);
    case K_SAVE_OPT:
        return get_bool(p, key, value, type, &c->save_optimizer);
    case K_LIMIT_TRAIN:
        return get_int(p, key, value, type, 0, INT32_MAX, &c->limit_train);
    case K_LIMIT_TEST:
        return get_int(p, key, value, type, 0, INT32_MAX, &c->limit_test);
    case K_DATA_DIR:
        return get_string(p, key, value, type, c->data_dir, sizeof c->data_dir);
    }
    return 0;
}

int tr_config_parse(const char *yaml, size_t len, const char *source, tr_config *c)
{
    parse_ctx p;
    memset(&p, 0, sizeof p);
    p.c = c;
    p.source = source;
    int rc = ckpt_config_flatten(yaml, len, on_param, &p);
    if (rc < 0) {
        fprintf(stderr, "ckpt-train: config %s: %s\n", source, ckpt_errmsg());
        return -1;
    }
    if (rc != 0)
        return -1;
    /* Total parameters must fit the tensor sizes used below (int64 shapes,
     * size_t byte counts); widths are bounded, so this cannot overflow. */
    double params = 0;
    int in = 784;
    for (int i = 0; i <= c->nhidden; i++) {
        int out = i < c->nhidden ? c->hidden[i] : 10;
        params += (double)in * out + out;
        in = out;
    }
    if (params > 1e9) {
        fprintf(stderr, "ckpt-train: config %s: key model.hidden: the network would have "
                        "%.0f parameters; at most 1e9 are supported\n", source, params);
        return -1;
    }
    return 0;
}

void tr_config_shape(const tr_config *c, char *buf, size_t cap)
{
    size_t used = 0;
    int n = snprintf(buf, cap, "784");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < c->nhidden && used < cap; i++) {
        n = snprintf(buf + used, cap - used, "-%d", c->hidden[i]);
        if (n < 0)
            return;
        used += (size_t)n;
    }
    if (used < cap)
        snprintf(buf + used, cap - used, "-10");
}

static void hidden_text(const tr_config *c, char *buf, size_t cap)
{
    size_t used = 0;
    int n = snprintf(buf, cap, "[");
    used = (size_t)n;
    for (int i = 0; i < c->nhidden && used < cap; i++) {
        n = snprintf(buf + used, cap - used, "%s%d", i ? ", " : "", c->hidden[i]);
        if (n < 0)
            return;
        used += (size_t)n;
    }
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

int tr_config_diff(const tr_config *a, const tr_config *b, char *key, size_t keycap,
                   char *va, char *vb, size_t valcap)
{
#define DIFF_NUM(name, fa, fb, fmt)                          \
    if ((fa) != (fb)) {                                      \
        snprintf(key, keycap, "%s", name);                   \
        snprintf(va, valcap, fmt, fa);                       \
        snprintf(vb, valcap, fmt, fb);                       \
        return 1;                                            \
    }
#define DIFF_STR(name, sa, sb)                               \
    if (strcmp(sa, sb) != 0) {                               \
        snprintf(key, keycap, "%s", name);                   \
        snprintf(va, valcap, "%s", sa);                      \
        snprintf(vb, valcap, "%s", sb);                      \
        return 1;                                            \
    }
    char ha[1024], hb[1024];
    hidden_text(a, ha, sizeof ha);
    hidden_text(b, hb, sizeof hb);
    DIFF_STR("model.hidden", ha, hb);
    DIFF_STR("model.activation", a->activation, b->activation);
    DIFF_STR("optimizer.name", a->optimizer, b->optimizer);
    DIFF_NUM("optimizer.lr", a->lr, b->lr, "%.17g");
    DIFF_NUM("optimizer.beta1", a->beta1, b->beta1, "%.17g");
    DIFF_NUM("optimizer.beta2", a->beta2, b->beta2, "%.17g");
    DIFF_NUM("optimizer.eps", a->eps, b->eps, "%.17g");
    DIFF_NUM("train.batch_size", (long long)a->batch_size, (long long)b->batch_size, "%lld");
    DIFF_NUM("train.epochs", (long long)a->epochs, (long long)b->epochs, "%lld");
    DIFF_NUM("train.seed", (unsigned long long)a->seed, (unsigned long long)b->seed, "%llu");
    DIFF_NUM("train.checkpoint_every", (long long)a->checkpoint_every,
             (long long)b->checkpoint_every, "%lld");
    DIFF_STR("train.save_optimizer", a->save_optimizer ? "true" : "false",
             b->save_optimizer ? "true" : "false");
    DIFF_NUM("train.limit_train", (long long)a->limit_train, (long long)b->limit_train, "%lld");
    DIFF_NUM("train.limit_test", (long long)a->limit_test, (long long)b->limit_test, "%lld");
    DIFF_STR("data.dir", a->data_dir, b->data_dir);
#undef DIFF_NUM
#undef DIFF_STR
    return 0;
}
