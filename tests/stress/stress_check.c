/*
 * stress_check.c - checks a store left by stress_writer (killed or not):
 * every checkpoint whole and byte-for-byte what (run, epoch) says, epochs
 * contiguous on one lineage, every reported commit present, metrics right,
 * ckpt_verify clean. --watch instead re-reads the head while a writer runs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "ckpt.h"
#include "stress_common.h"

static const char *usage_text =
    "usage: stress_check --db PATH --run RUN [--run RUN2 ...] [options]\n"
    "  --committed FILE     lines 'committed RUN EPOCH ID' printed by stress_writer:\n"
    "                       each must be present with that checkpoint id\n"
    "  --full-from EPOCH    compare bytes only of checkpoints from EPOCH on (default 0;\n"
    "                       older ones get the layout checks and ckpt_verify's hashes)\n"
    "  --min-checkpoints N  each run must have at least N checkpoints\n"
    "  --status STATUS      each run's ckpt_run_status must be STATUS\n"
    "  --no-verify          skip ckpt_verify of the whole store\n"
    "  --rw                 open read-write (default: read-only, as `ckpt` readers do)\n"
    "  --watch SECONDS      instead: for SECONDS re-read the head of each run as a\n"
    "                       writer moves it; heads must be whole and never go back\n"
    "  --stop-file PATH     with --watch: also stop once PATH exists\n"
    "Prints 'FAIL ...' lines and exits 1 if anything is wrong; 'ok ...' and 0 if not.\n";

#define MAX_RUNS 8
#define MAX_PRINTED 30

static int g_problems;
static uint8_t *g_want, *g_got;

static void fail(const char *fmt, ...)
{
    g_problems++;
    if (g_problems > MAX_PRINTED)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("stress_check: FAIL ", stdout);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    fflush(stdout);
}

static int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- one checkpoint */

/* Checks that the reader holds exactly the checkpoint (run, epoch); with
 * full, every byte. Returns the number of problems found. */
static int check_reader(ckpt_reader *r, const char *run, int64_t epoch, int full)
{
    int before = g_problems;
    size_t n = ckpt_reader_count(r);
    const ckpt_checkpoint_info *ci = ckpt_reader_checkpoint(r);
    if (ci->epoch != epoch)
        fail("run '%s' checkpoint %lld: epoch %lld, expected %lld", run, (long long)ci->id,
             (long long)ci->epoch, (long long)epoch);
    if (ci->step != st_checkpoint_step(epoch))
        fail("run '%s' epoch %lld: step %lld, expected %lld", run, (long long)epoch,
             (long long)ci->step, (long long)st_checkpoint_step(epoch));
    if (n != ST_NTENSORS || ci->ntensors != ST_NTENSORS) {
        fail("run '%s' epoch %lld: partial checkpoint: reader has %zu tensors, checkpoint row "
             "says %lld, the writer put %d",
             run, (long long)epoch, n, (long long)ci->ntensors, ST_NTENSORS);
        return g_problems - before;
    }
    uint64_t logical = 0;
    for (size_t i = 0; i < n; i++) {
        st_tensor t;
        st_layout(run, epoch, i, &t);
        logical += t.nbytes;
        ckpt_tensor_info ti;
        int rc = ckpt_reader_tensor(r, i, &ti);
        if (rc) {
            fail("run '%s' epoch %lld tensor %zu: ckpt_reader_tensor: %s", run, (long long)epoch, i,
                 ckpt_errmsg());
            continue;
        }
        int shape_ok = ti.ndim == t.ndim;
        for (int d = 0; shape_ok && d < t.ndim; d++)
            shape_ok = ti.shape[d] == t.shape[d];
        if (strcmp(ti.name, t.name) != 0 || ti.kind != t.kind || ti.dtype != t.dtype || !shape_ok ||
            ti.nbytes != t.nbytes) {
            fail("run '%s' epoch %lld tensor %zu: stored as '%s' kind %d dtype %d ndim %d "
                 "%llu bytes, written as '%s' kind %d dtype %d ndim %d %zu bytes",
                 run, (long long)epoch, i, ti.name, ti.kind, ti.dtype, ti.ndim,
                 (unsigned long long)ti.nbytes, t.name, t.kind, t.dtype, t.ndim, t.nbytes);
            continue;
        }
        if (!full || t.nbytes == 0)
            continue;
        st_fill(run, epoch, i, g_want);
        memset(g_got, 0xa5, t.nbytes);
        if ((rc = ckpt_reader_read(r, i, 0, g_got, t.nbytes))) {
            fail("run '%s' epoch %lld tensor '%s': ckpt_reader_read of %zu bytes: %s (%s)", run,
                 (long long)epoch, t.name, t.nbytes, ckpt_errmsg(), ckpt_strerror(rc));
            continue;
        }
        if (memcmp(g_want, g_got, t.nbytes) != 0) {
            size_t off = 0;
            while (g_want[off] == g_got[off])
                off++;
            fail("run '%s' epoch %lld tensor '%s': content differs from what was written, first "
                 "at byte %zu of %zu",
                 run, (long long)epoch, t.name, off, t.nbytes);
            continue;
        }
        /* A read straddling the chunk boundary goes through the partial path. */
        const size_t cs = (size_t)4 << 20;
        if (t.nbytes > cs + 64) {
            if ((rc = ckpt_reader_read(r, i, cs - 64, g_got, 128)) ||
                memcmp(g_got, g_want + cs - 64, 128) != 0)
                fail("run '%s' epoch %lld tensor '%s': read of bytes %zu..%zu across the chunk "
                     "boundary: %s",
                     run, (long long)epoch, t.name, cs - 64, cs + 64,
                     rc ? ckpt_errmsg() : "content differs");
        }
    }
    if (ci->logical_bytes != logical)
        fail("run '%s' epoch %lld: logical_bytes %llu, the tensors hold %llu", run,
             (long long)epoch, (unsigned long long)ci->logical_bytes, (unsigned long long)logical);
    return g_problems - before;
}

/* ---------------------------------------------------------------- one run */

typedef struct cp {
    int64_t id, epoch, step, parent, ntensors, rows, is_head, abandoned;
} cp;

static int load_checkpoints(ckpt_store *s, const char *run, cp **out, size_t *n)
{
    sqlite3 *db = ckpt_store_db(s);
    sqlite3_stmt *st;
    const char *sql = "SELECT v.checkpoint_id, v.epoch, v.step, coalesce(v.parent_id, 0), v.tensors,"
                      " (SELECT count(*) FROM tensors t WHERE t.checkpoint_id = v.checkpoint_id),"
                      " v.is_head, v.abandoned"
                      " FROM v_checkpoints v WHERE v.run = ? ORDER BY v.epoch, v.checkpoint_id";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fail("listing checkpoints of run '%s': %s", run, sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    size_t cap = 64, len = 0;
    cp *v = malloc(cap * sizeof *v);
    int r;
    while (v && (r = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap *= 2;
            cp *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
        }
        cp *c = &v[len++];
        c->id = sqlite3_column_int64(st, 0);
        c->epoch = sqlite3_column_int64(st, 1);
        c->step = sqlite3_column_int64(st, 2);
        c->parent = sqlite3_column_int64(st, 3);
        c->ntensors = sqlite3_column_int64(st, 4);
        c->rows = sqlite3_column_int64(st, 5);
        c->is_head = sqlite3_column_int64(st, 6);
        c->abandoned = sqlite3_column_int64(st, 7);
    }
    if (!v) {
        sqlite3_finalize(st);
        fprintf(stderr, "stress_check: out of memory\n");
        exit(1);
    }
    if (r != SQLITE_DONE) {
        fail("listing checkpoints of run '%s': %s", run, sqlite3_errmsg(db));
        sqlite3_finalize(st);
        free(v);
        return -1;
    }
    sqlite3_finalize(st);
    *out = v;
    *n = len;
    return 0;
}

static void check_metrics(ckpt_store *s, const char *run, int64_t head_epoch)
{
    sqlite3 *db = ckpt_store_db(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT name, epoch, step, value FROM v_metrics WHERE run = ?", -1,
                           &st, NULL) != SQLITE_OK) {
        fail("reading metrics of run '%s': %s", run, sqlite3_errmsg(db));
        return;
    }
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    size_t nep = (size_t)(head_epoch + 2);
    int *count = calloc(nep, sizeof *count);
    if (!count) {
        fprintf(stderr, "stress_check: out of memory\n");
        exit(1);
    }
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int64_t epoch = sqlite3_column_int64(st, 1), step = sqlite3_column_int64(st, 2);
        double value = sqlite3_column_double(st, 3);
        int k = -1;
        for (int j = 0; j < ST_NMETRICS; j++)
            if (name && strcmp(name, st_metric_name(j)) == 0)
                k = j;
        /* The epoch after the head may have flushed metrics before a kill;
         * its resume logs them again with the same values. */
        if (k < 0 || epoch < 0 || epoch > head_epoch + 1 ||
            step / ST_STEPS_PER_EPOCH != epoch) {
            fail("run '%s': unexpected metric '%s' epoch %lld step %lld (head epoch %lld)", run,
                 name ? name : "(null)", (long long)epoch, (long long)step, (long long)head_epoch);
            continue;
        }
        double want = st_metric_value(run, epoch, step, k);
        if (value != want)
            fail("run '%s' metric '%s' step %lld: value %.17g, logged %.17g", run, name,
                 (long long)step, value, want);
        count[epoch]++;
    }
    if (r != SQLITE_DONE)
        fail("reading metrics of run '%s': %s", run, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    for (int64_t e = 0; e <= head_epoch; e++)
        if (count[e] != ST_STEPS_PER_EPOCH * ST_NMETRICS)
            fail("run '%s' epoch %lld: %d metric values, committed with %d", run, (long long)e,
                 count[e], ST_STEPS_PER_EPOCH * ST_NMETRICS);
    free(count);
}

/* Parses "committed RUN EPOCH ID" (stress_writer's line) into its parts;
 * returns 0 if line is one. run points into line. */
static int parse_committed(char *line, char **run, int64_t *epoch, int64_t *id)
{
    static const char tag[] = "committed ";
    if (strncmp(line, tag, sizeof tag - 1) != 0)
        return -1;
    char *p = line + sizeof tag - 1;
    char *sp = strchr(p, ' ');
    if (!sp)
        return -1;
    *sp = 0;
    *run = p;
    char *e_txt = sp + 1;
    char *sp2 = strchr(e_txt, ' ');
    if (!sp2)
        return -1;
    *sp2 = 0;
    char *id_txt = sp2 + 1;
    id_txt[strcspn(id_txt, "\n")] = 0;
    return parse_i64(e_txt, 0, INT64_MAX, epoch) || parse_i64(id_txt, 1, INT64_MAX, id) ? -1 : 0;
}

/* Every commit stress_writer reported for run must be there, same id. */
static void check_committed(const char *file, const char *run, const cp *v, size_t n)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        fail("cannot read %s: %s", file, strerror(errno));
        return;
    }
    char line[512];
    int lineno = 0, seen = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *r;
        int64_t epoch, id;
        if (parse_committed(line, &r, &epoch, &id) || strcmp(r, run) != 0)
            continue;
        seen++;
        if ((uint64_t)epoch >= n) {
            fail("run '%s' epoch %lld: the writer reported it committed (%s:%d) but the store "
                 "has no such checkpoint (%zu checkpoints)",
                 run, (long long)epoch, file, lineno, n);
        } else if (v[epoch].id != id) {
            fail("run '%s' epoch %lld: the writer committed checkpoint id %lld (%s:%d), the "
                 "store has id %lld",
                 run, (long long)epoch, (long long)id, file, lineno, (long long)v[epoch].id);
        }
    }
    fclose(f);
    printf("stress_check: run '%s': %d reported commits all present\n", run, seen);
}

static void check_run(ckpt_store *s, const char *run, const char *committed, int64_t full_from,
                      int64_t min_cps, const char *status)
{
    cp *v;
    size_t n;
    if (load_checkpoints(s, run, &v, &n))
        return;
    if ((int64_t)n < min_cps)
        fail("run '%s': %zu checkpoints, expected at least %lld", run, n, (long long)min_cps);
    /* One checkpoint per epoch, 0..n-1: a resumed writer continues at head + 1. */
    for (size_t k = 0; k < n; k++) {
        const cp *c = &v[k];
        if (c->epoch != (int64_t)k) {
            fail("run '%s': checkpoint %lld has epoch %lld at position %zu: epochs are not "
                 "0..%zu exactly once each",
                 run, (long long)c->id, (long long)c->epoch, k, n - 1);
            free(v);
            return;
        }
        if (c->ntensors != ST_NTENSORS || c->rows != ST_NTENSORS)
            fail("run '%s' epoch %lld: partial checkpoint visible: ntensors %lld, %lld manifest "
                 "rows, the writer put %d",
                 run, (long long)c->epoch, (long long)c->ntensors, (long long)c->rows, ST_NTENSORS);
        int64_t want_parent = k ? v[k - 1].id : 0;
        if (c->parent != want_parent)
            fail("run '%s' epoch %lld: parent checkpoint %lld, expected %lld", run,
                 (long long)c->epoch, (long long)c->parent, (long long)want_parent);
        if (c->abandoned)
            fail("run '%s' epoch %lld: shown as abandoned", run, (long long)c->epoch);
        if (c->is_head != (k == n - 1))
            fail("run '%s' epoch %lld: is_head %lld", run, (long long)c->epoch,
                 (long long)c->is_head);
    }
    ckpt_checkpoint_info head;
    int rc = ckpt_head(s, run, &head);
    if (n == 0) {
        if (rc != CKPT_ENOCHECKPOINT && rc != CKPT_ENOTFOUND)
            fail("run '%s': no checkpoints, but ckpt_head returned %d (%s)", run, rc,
                 ckpt_errmsg());
    } else if (rc) {
        fail("run '%s': ckpt_head: %s", run, ckpt_errmsg());
    } else if (head.id != v[n - 1].id) {
        fail("run '%s': head is checkpoint %lld (epoch %lld), newest is %lld (epoch %lld)", run,
             (long long)head.id, (long long)head.epoch, (long long)v[n - 1].id,
             (long long)v[n - 1].epoch);
    }
    size_t full = 0;
    for (size_t k = 0; k < n; k++) {
        ckpt_reader *r;
        if ((rc = ckpt_reader_open_id(&r, s, v[k].id))) {
            fail("run '%s' epoch %lld: ckpt_reader_open_id(%lld): %s (%s)", run,
                 (long long)v[k].epoch, (long long)v[k].id, ckpt_errmsg(), ckpt_strerror(rc));
            continue;
        }
        int f = v[k].epoch >= full_from;
        full += (size_t)f;
        check_reader(r, run, v[k].epoch, f);
        ckpt_reader_close(r);
    }
    check_metrics(s, run, n ? v[n - 1].epoch : -1);
    if (committed)
        check_committed(committed, run, v, n);
    if (status) {
        const char *got;
        if ((rc = ckpt_run_status(s, run, &got)))
            fail("run '%s': ckpt_run_status: %s", run, ckpt_errmsg());
        else if (strcmp(got, status) != 0)
            fail("run '%s': status '%s', expected '%s'", run, got, status);
    }
    printf("stress_check: run '%s': %zu checkpoints (epochs 0..%lld), %zu compared byte for byte\n",
           run, n, (long long)n - 1, full);
    free(v);
}

static void verify_report(void *ctx, const char *run, int64_t epoch, int64_t step,
                          const char *tensor, const char *problem)
{
    (void)ctx;
    if (run)
        fail("ckpt_verify: run '%s' epoch %lld step %lld tensor '%s': %s", run, (long long)epoch,
             (long long)step, tensor ? tensor : "?", problem);
    else
        fail("ckpt_verify: %s", problem);
}

/* ---------------------------------------------------------------- watch */

static int exists(const char *path)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    if (f)
        fclose(f);
    return f != NULL;
}

static void watch(ckpt_store *s, const char **runs, int nruns, double seconds, const char *stop)
{
    int64_t last[MAX_RUNS];
    int64_t first[MAX_RUNS];
    long checks = 0;
    for (int k = 0; k < nruns; k++)
        last[k] = first[k] = -1;
    double t0 = st_now();
    printf("stress_check: watching %d run(s)\n", nruns);
    fflush(stdout);
    while (st_now() - t0 < seconds && g_problems == 0 && !exists(stop)) {
        for (int k = 0; k < nruns; k++) {
            ckpt_checkpoint_info head;
            int rc = ckpt_head(s, runs[k], &head);
            if (rc == CKPT_ENOTFOUND || rc == CKPT_ENOCHECKPOINT) {
                if (last[k] >= 0)
                    fail("run '%s': head vanished after epoch %lld: %s", runs[k],
                         (long long)last[k], ckpt_errmsg());
                continue;
            }
            if (rc) {
                fail("run '%s': ckpt_head while a writer runs: %s (%s)", runs[k], ckpt_errmsg(),
                     ckpt_strerror(rc));
                continue;
            }
            if (head.epoch < last[k])
                fail("run '%s': head went back from epoch %lld to %lld", runs[k],
                     (long long)last[k], (long long)head.epoch);
            ckpt_reader *r;
            if ((rc = ckpt_reader_open_id(&r, s, head.id))) {
                fail("run '%s' epoch %lld: ckpt_reader_open_id while a writer runs: %s (%s)",
                     runs[k], (long long)head.epoch, ckpt_errmsg(), ckpt_strerror(rc));
                continue;
            }
            check_reader(r, runs[k], head.epoch, 1);
            ckpt_reader_close(r);
            if (first[k] < 0)
                first[k] = head.epoch;
            last[k] = head.epoch;
            checks++;
        }
        /* Leave the writers some CPU on a small machine. */
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int k = 0; k < nruns; k++)
        printf("stress_check: watch run '%s': heads seen from epoch %lld to %lld\n", runs[k],
               (long long)first[k], (long long)last[k]);
    printf("stress_check: watch: %ld whole heads read and compared in %.1f s\n", checks,
           st_now() - t0);
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    const char *db = NULL, *committed = NULL, *status = NULL, *stop = NULL;
    const char *runs[MAX_RUNS];
    int nruns = 0, verify = 1, rw = 0;
    int64_t full_from = 0, min_cps = 0, watch_s = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "--no-verify") == 0) {
            verify = 0;
            continue;
        }
        if (strcmp(a, "--rw") == 0) {
            rw = 1;
            continue;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        int bad = !v;
        if (bad) {
            /* reported below */
        } else if (strcmp(a, "--db") == 0) {
            db = v;
        } else if (strcmp(a, "--run") == 0) {
            bad = nruns == MAX_RUNS;
            if (!bad)
                runs[nruns++] = v;
        } else if (strcmp(a, "--committed") == 0) {
            committed = v;
        } else if (strcmp(a, "--status") == 0) {
            status = v;
        } else if (strcmp(a, "--stop-file") == 0) {
            stop = v;
        } else if (strcmp(a, "--full-from") == 0) {
            bad = parse_i64(v, 0, INT64_MAX, &full_from);
        } else if (strcmp(a, "--min-checkpoints") == 0) {
            bad = parse_i64(v, 0, INT64_MAX, &min_cps);
        } else if (strcmp(a, "--watch") == 0) {
            bad = parse_i64(v, 1, 86400, &watch_s);
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "stress_check: bad option or value: %s %s\n%s", a, v ? v : "",
                    usage_text);
            return 2;
        }
    }
    if (!db || !nruns) {
        fprintf(stderr, "stress_check: --db and --run are required\n%s", usage_text);
        return 2;
    }
    g_want = malloc(ST_MAX_TENSOR_BYTES);
    g_got = malloc(ST_MAX_TENSOR_BYTES);
    if (!g_want || !g_got) {
        fprintf(stderr, "stress_check: out of memory\n");
        return 1;
    }
    ckpt_store *s;
    ckpt_open_opts o = {rw ? CKPT_OPEN_NOCREATE : CKPT_OPEN_READONLY, 0, CKPT_DURABLE_FULL};
    int rc = ckpt_open(&s, db, &o);
    if (rc) {
        printf("stress_check: FAIL cannot open store %s%s: %s (%s)\n", db, rw ? "" : " read-only",
               ckpt_errmsg(), ckpt_strerror(rc));
        return 1;
    }
    if (watch_s) {
        watch(s, runs, nruns, (double)watch_s, stop);
    } else {
        for (int k = 0; k < nruns; k++)
            check_run(s, runs[k], committed, full_from, min_cps, status);
        if (verify) {
            uint64_t damaged = 0;
            rc = ckpt_verify(s, NULL, CKPT_HEAD, verify_report, NULL, &damaged);
            if (rc)
                fail("ckpt_verify of the whole store: %s (%s), %llu damaged", ckpt_errmsg(),
                     ckpt_strerror(rc), (unsigned long long)damaged);
        }
    }
    if ((rc = ckpt_close(s)))
        fail("ckpt_close: %s", ckpt_errmsg());
    free(g_want);
    free(g_got);
    if (g_problems) {
        printf("stress_check: %d problem(s) in %s\n", g_problems, db);
        return 1;
    }
    printf("stress_check: ok %s\n", db);
    return 0;
}
