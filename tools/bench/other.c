/*
 * other.c - ckpt-bench's measurements outside the big state: metric logging
 * rate, `ckpt list` on a store of many checkpoints, the compression of the
 * demo trainer's checkpoints, and the torch/numpy baselines (run by
 * tools/bench/torch_numpy.py on the bytes io.c left in raw.bin).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bench.h"

/* ------------------------------------------------------------ metrics */

void bench_phase_metrics(const bench_opts *o, bench_results *res)
{
    static const char *const names[] = {"train_loss", "train_acc", "lr", "grad_norm"};
    char *db = bench_path(o->work, "metrics.ckpt");
    bench_store_remove(db);
    bench_progress("metrics: logging %lld values", (long long)o->metrics);
    ckpt_store *s;
    int rc = ckpt_open(&s, db, NULL);
    if (rc != CKPT_OK)
        bench_die_ckpt(rc, db);
    if ((rc = ckpt_run_create(s, "metrics", NULL, 0)) != CKPT_OK)
        bench_die_ckpt(rc, "creating the metrics run");
    double t0 = bench_now();
    for (int64_t i = 0; i < o->metrics; i++) {
        int64_t step = i / 4;
        rc = ckpt_metric_log(s, "metrics", names[i % 4], step / 1000, step,
                             1.0 / (double)(step + 1) + (double)(i % 4));
        if (rc != CKPT_OK)
            bench_die_ckpt(rc, "logging a metric");
    }
    if ((rc = ckpt_metrics_flush(s)) != CKPT_OK)
        bench_die_ckpt(rc, "flushing metrics");
    res->metrics_s = bench_now() - t0;
    res->metrics_n = (double)o->metrics;

    /* Every value must have arrived. */
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(ckpt_store_db(s), "SELECT count(*) FROM v_metrics", -1, &q, NULL) !=
        SQLITE_OK)
        bench_die("counting metrics: %s", sqlite3_errmsg(ckpt_store_db(s)));
    int64_t n = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
    sqlite3_finalize(q);
    if (n != o->metrics)
        bench_die("the store holds %lld metric values, %lld were logged", (long long)n,
                  (long long)o->metrics);
    if ((rc = ckpt_close(s)) != CKPT_OK)
        bench_die_ckpt(rc, "closing the metrics store");
    bench_store_remove(db);
    free(db);
}

/* ------------------------------------------------------------ ckpt list */

static int count_lines(const char *path, int64_t *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int64_t n = 0;
    int c;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    *out = n;
    return 0;
}

void bench_phase_list(const bench_opts *o, bench_results *res)
{
    char *cli = bench_path(o->exe_dir, "ckpt");
    if (!bench_file_exists(cli)) {
        bench_note(res, "list_ms_10k: %s not found (build the ckpt target)", cli);
        free(cli);
        return;
    }
    char *db = bench_path(o->work, "list.ckpt");
    char *out = bench_path(o->work, "list.out");
    bench_store_remove(db);
    int64_t n = o->list_checkpoints;
    int64_t runs = (n + 999) / 1000;
    bench_progress("list: building a store of %lld checkpoints in %lld runs", (long long)n,
                   (long long)runs);

    /* Built without fsync: only the listing is timed. */
    ckpt_open_opts oo = {0, 0, CKPT_DURABLE_OFF};
    ckpt_store *s;
    int rc = ckpt_open(&s, db, &oo);
    if (rc != CKPT_OK)
        bench_die_ckpt(rc, db);
    float w[64], b[16];
    for (int k = 0; k < 16; k++)
        b[k] = 0.01f * (float)k;
    int64_t sw[1] = {64}, sb[1] = {16};
    double t0 = bench_now();
    int64_t done = 0;
    for (int64_t r = 0; r < runs; r++) {
        char run[32];
        snprintf(run, sizeof run, "run%03lld", (long long)r);
        static const char cfg[] = "model:\n  hidden: [64]\n";
        if ((rc = ckpt_run_create(s, run, cfg, sizeof cfg - 1)) != CKPT_OK)
            bench_die_ckpt(rc, "creating a run");
        int64_t per = n / runs + (r < n % runs ? 1 : 0);
        for (int64_t e = 0; e < per; e++, done++) {
            for (int k = 0; k < 64; k++)
                w[k] = (float)(done * 64 + k) * 1e-3f;
            double x = (double)e;
            ckpt_writer *wr;
            if ((rc = ckpt_metric_log(s, run, "train_loss", e, e * 100, 1.0 / (x + 1))) != 0 ||
                (rc = ckpt_metric_log(s, run, "test_acc", e, e * 100, x / (x + 1))) != 0 ||
                (rc = ckpt_metric_log(s, run, "lr", e, e * 100, 1e-3)) != 0 ||
                (rc = ckpt_writer_begin(&wr, s, run, e, e * 100)) != 0)
                bench_die_ckpt(rc, "building the list store");
            if ((rc = ckpt_writer_put(wr, "w", CKPT_KIND_MODEL, CKPT_F32, 1, sw, w, sizeof w)) !=
                    0 ||
                (rc = ckpt_writer_put(wr, "b", CKPT_KIND_MODEL, CKPT_F32, 1, sb, b, sizeof b)) !=
                    0) {
                ckpt_writer_abort(wr);
                bench_die_ckpt(rc, "building the list store");
            }
            if ((rc = ckpt_writer_commit(wr, NULL)) != CKPT_OK)
                bench_die_ckpt(rc, "building the list store");
        }
    }
    if ((rc = ckpt_close(s)) != CKPT_OK)
        bench_die_ckpt(rc, "closing the list store");
    res->list_build_s = bench_now() - t0;

    char *argv[] = {cli, "--db", db, "list", NULL};
    int64_t lines = 0;
    int st = bench_spawn(argv, out, NULL, NULL); /* also warms the cache */
    if (st != 0 || count_lines(out, &lines) != 0 || lines < n) {
        bench_note(res, "list_ms_10k: `ckpt list` exited with %d after %lld lines (%lld expected)",
                   st, (long long)lines, (long long)n);
    } else {
        bench_progress("list: timing `ckpt list` (%lld lines)", (long long)lines);
        for (int rep = 0; rep < o->reps; rep++) {
            double secs;
            if (bench_spawn(argv, "/dev/null", NULL, &secs) != 0)
                bench_die("`%s --db %s list` failed", cli, db);
            if (isnan(res->list_ms) || secs * 1e3 < res->list_ms)
                res->list_ms = secs * 1e3;
        }
        res->list_n = n;
    }
    unlink(out);
    if (!o->keep)
        bench_store_remove(db);
    free(cli);
    free(db);
    free(out);
}

/* ------------------------------------------------------------ ckpt-train */

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        char *np = realloc(b->p, b->cap);
        if (!np)
            bench_die("out of memory");
        b->p = np;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_limits(sbuf *b, int indent, int64_t train, int64_t test)
{
    char line[128];
    int k = snprintf(line, sizeof line, "%*slimit_train: %lld\n%*slimit_test: %lld\n", indent, "",
                     (long long)train, indent, "", (long long)test);
    sb_add(b, line, (size_t)k);
}

/* The config with train.limit_train and train.limit_test replaced, so
 * that an epoch takes seconds. A block-style `train:` mapping is expected
 * (NULL otherwise); one is added if the config has none. */
static char *limit_config(const char *yaml, int64_t train, int64_t test)
{
    sbuf b = {0};
    sb_add(&b, "", 0);
    int in_train = 0, done = 0, indent = 0;
    const char *p = yaml;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) + 1 : strlen(p);
        int sp = 0;
        while (p[sp] == ' ')
            sp++;
        int blank = p[sp] == '\n' || p[sp] == '\r' || p[sp] == '\0' || p[sp] == '#';
        if (!blank && sp == 0) { /* a top-level key */
            if (in_train) {
                sb_limits(&b, indent ? indent : 2, train, test);
                in_train = 0;
                done = 1;
            }
            if (starts_with(p, "train:")) {
                const char *q = p + 6;
                while (*q == ' ')
                    q++;
                if (*q != '\n' && *q != '\r' && *q != '#' && *q != '\0') {
                    free(b.p);
                    return NULL;
                }
                in_train = 1;
            }
        } else if (!blank && in_train) {
            if (!indent)
                indent = sp;
            if (starts_with(p + sp, "limit_train:") || starts_with(p + sp, "limit_test:")) {
                p += len;
                continue;
            }
        }
        sb_add(&b, p, len);
        if (!eol && len > 0)
            sb_add(&b, "\n", 1);
        p += len;
    }
    if (in_train)
        sb_limits(&b, indent ? indent : 2, train, test);
    else if (!done) {
        sb_add(&b, "train:\n", 7);
        sb_limits(&b, 2, train, test);
    }
    return b.p;
}

static char *found(const char *path)
{
    char *r = realpath(path, NULL);
    return r ? r : strdup(path);
}

static char *find_file(const bench_opts *o, const char *rel_src, const char *rel_exe)
{
    char buf[8192];
    const char *src = getenv("CKPT_SRC_DIR");
    if (src && *src) {
        snprintf(buf, sizeof buf, "%s/%s", src, rel_src);
        if (bench_file_exists(buf))
            return found(buf);
    }
    /* CMake compiles with absolute source paths: the source tree this
     * binary was built from. */
    const char *here = __FILE__;
    const char *slash = strrchr(here, '/');
    if (here[0] == '/' && slash) {
        snprintf(buf, sizeof buf, "%.*s/../../%s", (int)(slash - here), here, rel_src);
        if (bench_file_exists(buf))
            return found(buf);
    }
    snprintf(buf, sizeof buf, "%s/%s", o->exe_dir, rel_exe);
    if (bench_file_exists(buf))
        return strdup(buf);
    return NULL;
}

void bench_phase_trained(const bench_opts *o, bench_results *res)
{
    char *train = bench_path(o->exe_dir, "ckpt-train");
    char *config = o->config_large ? strdup(o->config_large)
                                   : find_file(o, "tools/configs/fashion-mlp-large.yaml",
                                               "../tools/configs/fashion-mlp-large.yaml");
    char *yaml = NULL, *limited = NULL;
    char *cfg = bench_path(o->work, "trained.yaml");
    char *db = bench_path(o->work, "trained.ckpt");
    char *log = bench_path(o->work, "trained.log");
    if (!bench_file_exists(train)) {
        bench_note(res, "compression_ratio_trained: %s not found (build the ckpt-train target)",
                   train);
        goto out;
    }
    if (!config || !(yaml = bench_read_file(config, 1 << 20, NULL))) {
        bench_note(res, "compression_ratio_trained: config %s not readable (use --config-large)",
                   config ? config : "tools/configs/fashion-mlp-large.yaml");
        goto out;
    }
    int64_t test = o->trained_limit < 1000 ? o->trained_limit : 1000;
    if (!(limited = limit_config(yaml, o->trained_limit, test))) {
        bench_note(res, "compression_ratio_trained: %s has a flow-style train: mapping", config);
        goto out;
    }
    FILE *f = fopen(cfg, "w");
    if (!f || fputs(limited, f) < 0 || fclose(f) != 0)
        bench_die("cannot write %s", cfg);
    bench_store_remove(db);
    char epochs[16];
    snprintf(epochs, sizeof epochs, "%d", o->trained_epochs);
    char *argv[] = {train, "--db", db, "--run", "large", "--config", cfg, "--epochs", epochs, NULL};
    bench_progress("trained: %s, %d epochs of %lld examples", config, o->trained_epochs,
                   (long long)o->trained_limit);
    int st = bench_spawn(argv, log, log, &res->trained_s);
    if (st != 0) {
        char *text = bench_read_file(log, 1 << 20, NULL);
        const char *tail = text ? text : "";
        size_t tl = strlen(tail);
        bench_note(res, "compression_ratio_trained: ckpt-train exited with %d: %.200s", st,
                   tl > 200 ? tail + tl - 200 : tail);
        free(text);
        goto out;
    }
    ckpt_open_opts oo = {CKPT_OPEN_READONLY, 0, CKPT_DURABLE_FULL};
    ckpt_store *s;
    int rc = ckpt_open(&s, db, &oo);
    if (rc != CKPT_OK)
        bench_die_ckpt(rc, db);
    sqlite3_stmt *q;
    const char *sql = "SELECT count(*), sum(logical_bytes), sum(stored_bytes),"
                      " sum(logical_bytes) FILTER (WHERE epoch > 0),"
                      " sum(stored_bytes) FILTER (WHERE epoch > 0) FROM v_checkpoints";
    if (sqlite3_prepare_v2(ckpt_store_db(s), sql, -1, &q, NULL) != SQLITE_OK)
        bench_die("%s: %s", sql, sqlite3_errmsg(ckpt_store_db(s)));
    if (sqlite3_step(q) == SQLITE_ROW) {
        res->trained_checkpoints = sqlite3_column_int(q, 0);
        res->trained_logical = sqlite3_column_double(q, 1);
        res->trained_stored = sqlite3_column_double(q, 2);
        if (sqlite3_column_type(q, 3) != SQLITE_NULL) {
            res->trained_logical_after0 = sqlite3_column_double(q, 3);
            res->trained_stored_after0 = sqlite3_column_double(q, 4);
        }
    }
    sqlite3_finalize(q);
    char per[256] = "";
    size_t used = 0;
    sql = "SELECT epoch, logical_bytes, stored_bytes FROM v_checkpoints ORDER BY checkpoint_id";
    if (sqlite3_prepare_v2(ckpt_store_db(s), sql, -1, &q, NULL) != SQLITE_OK)
        bench_die("%s: %s", sql, sqlite3_errmsg(ckpt_store_db(s)));
    while (sqlite3_step(q) == SQLITE_ROW && used < sizeof per - 40) {
        double l = sqlite3_column_double(q, 1), sd = sqlite3_column_double(q, 2);
        int k = snprintf(per + used, sizeof per - used, "%sepoch %lld %.2fx", used ? ", " : "",
                         (long long)sqlite3_column_int64(q, 0), sd > 0 ? l / sd : 0.0);
        if (k > 0)
            used += (size_t)k;
    }
    sqlite3_finalize(q);
    ckpt_close(s);
    bench_note(res, "trained: %d checkpoints of %.1f MiB each (%s; epoch 0 is the initial state)",
               res->trained_checkpoints,
               res->trained_checkpoints
                   ? res->trained_logical / res->trained_checkpoints / 1048576.0
                   : 0.0,
               per);
out:
    if (!o->keep) {
        bench_store_remove(db);
        unlink(cfg);
        unlink(log);
    }
    free(train);
    free(config);
    free(yaml);
    free(limited);
    free(cfg);
    free(db);
    free(log);
}

/* ------------------------------------------------------------ torch, numpy */

static int py_has(const char *py, const char *module)
{
    if (strchr(py, '/') && access(py, X_OK) != 0)
        return 0;
    char code[64];
    snprintf(code, sizeof code, "import %s", module);
    char *argv[] = {(char *)py, "-c", code, NULL};
    return bench_spawn(argv, "/dev/null", "/dev/null", NULL) == 0;
}

/* The number after "key": in the script's flat JSON line; NAN for null or
 * absent. */
static double json_num(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        return NAN;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno != 0)
        return NAN;
    return v;
}

static void json_str(const char *json, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(json, pat);
    out[0] = '\0';
    if (!p)
        return;
    p += strlen(pat);
    const char *q = strchr(p, '"');
    if (q)
        snprintf(out, cap, "%.*s", (int)(q - p), p);
}

void bench_phase_python(const bench_opts *o, bench_results *res)
{
    char *script = find_file(o, "tools/bench/torch_numpy.py", "../tools/bench/torch_numpy.py");
    if (!script) {
        bench_note(res, "torch/numpy: tools/bench/torch_numpy.py not found (set CKPT_SRC_DIR)");
        return;
    }
    /* Debian's python3-torch and python3-numpy live in /usr/bin/python3,
     * which a pyenv or venv python3 earlier in PATH does not see. */
    const char *cands[] = {"/usr/bin/python3", "python3"};
    size_t ncands = 2;
    if (o->python) {
        cands[0] = o->python;
        ncands = 1;
    }
    const char *py = NULL;
    int torch = 0;
    for (size_t i = 0; i < ncands && !torch; i++) {
        if (!py_has(cands[i], "numpy"))
            continue;
        int t = py_has(cands[i], "torch");
        if (!py || t) {
            py = cands[i];
            torch = t;
        }
    }
    if (!py) {
        bench_note(res, "torch/numpy: no python3 with numpy found (Debian: apt-get install "
                        "python3-numpy python3-torch)");
        free(script);
        return;
    }
    if (!torch)
        bench_note(res, "torch: %s cannot import torch (Debian: apt-get install python3-torch)",
                   py);
    char *raw = bench_path(o->work, "raw.bin");
    char *index = bench_path(o->work, "raw.json");
    char *out = bench_path(o->work, "python.out");
    char *err = bench_path(o->work, "python.err");
    char reps[16];
    snprintf(reps, sizeof reps, "%d", o->reps);
    char *argv[] = {(char *)py,
                    script,
                    "--raw",
                    raw,
                    "--index",
                    index,
                    "--dir",
                    o->work,
                    "--reps",
                    reps,
                    torch ? NULL : "--no-torch",
                    NULL};
    bench_progress("torch/numpy: %s %s", py, script);
    int st = bench_spawn(argv, out, err, NULL);
    char *text = bench_read_file(out, 1 << 20, NULL);
    if (st != 0 || !text || !strchr(text, '{')) {
        char *e = bench_read_file(err, 1 << 20, NULL);
        const char *tail = e ? e : "";
        size_t tl = strlen(tail);
        bench_note(res, "torch/numpy: %s exited with %d: %.240s", script, st,
                   tl > 240 ? tail + tl - 240 : tail);
        free(e);
    } else {
        const char *line = strrchr(text, '{');
        res->torch_save_s = json_num(line, "torch_save_s");
        res->torch_save_nofsync_s = json_num(line, "torch_save_nofsync_s");
        res->torch_load_s = json_num(line, "torch_load_s");
        res->numpy_save_s = json_num(line, "numpy_save_s");
        res->numpy_save_nofsync_s = json_num(line, "numpy_save_nofsync_s");
        res->numpy_load_s = json_num(line, "numpy_load_s");
        double bytes = json_num(line, "bytes");
        if (bytes != (double)res->logical_bytes)
            bench_die("%s read %.0f bytes, the state has %llu", script, bytes,
                      (unsigned long long)res->logical_bytes);
        char tv[48], nv[48];
        json_str(line, "torch_version", tv, sizeof tv);
        json_str(line, "numpy_version", nv, sizeof nv);
        snprintf(res->py_versions, sizeof res->py_versions, "%s: torch %s, numpy %s", py,
                 tv[0] ? tv : "absent", nv);
    }
    if (!o->keep) {
        unlink(out);
        unlink(err);
    }
    free(text);
    free(script);
    free(raw);
    free(index);
    free(out);
    free(err);
}
