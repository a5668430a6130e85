/*
 * stress_writer.c - a trainer stand-in for the crash and concurrency tests:
 * resumes RUN from its head and commits one checkpoint per epoch (content
 * from stress_common.c) plus metrics, printing a line before and after each
 * phase so a parent that kills it knows which commits had returned.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "stress_common.h"

static const char *usage_text =
    "usage: stress_writer --db PATH --run RUN [--epochs N] [--seconds S]\n"
    "                     [--durability full|normal|off] [--threads N] [--busy-ms MS]\n"
    "                     [--timing] [--open-close N [--readonly]]\n"
    "Resumes RUN (created if missing) from its head and commits one checkpoint per\n"
    "epoch until the run has N checkpoints, S seconds passed, or it is killed.\n"
    "stdout, one line per event, flushed: 'open RUN', 'start RUN EPOCH',\n"
    "'flush RUN EPOCH' (entering ckpt_metrics_flush), 'begin RUN EPOCH',\n"
    "'commit RUN EPOCH' (entering ckpt_writer_commit),\n"
    "'committed RUN EPOCH ID' (it returned CKPT_OK), 'done RUN NCHECKPOINTS'.\n"
    "--open-close N instead opens the store (read-write, or read-only with\n"
    "--readonly), reads RUN's head and closes it, N times: a short-lived handle\n"
    "beside long-lived ones.\n"
    "--timing adds 'timing RUN EPOCH BEGIN PUTS COMMIT' (ms: since start, in\n"
    "puts, in commit) lines on stderr.\n";

static const char *g_run = "?";
static int64_t g_epoch = -1;

/* Every event line is flushed at once: the parent may kill us any moment. */
#define SAY(...)                                                                                   \
    do {                                                                                           \
        printf(__VA_ARGS__);                                                                       \
        fflush(stdout);                                                                            \
    } while (0)

/* Reports a library failure naming the run, epoch and call; exits 1. */
static void die(const char *what, int rc)
{
    fprintf(stderr, "stress_writer: run '%s' epoch %lld: %s failed: %s (%s)\n", g_run,
            (long long)g_epoch, what, ckpt_errmsg(), ckpt_strerror(rc));
    exit(1);
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

static int parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= 0))
        return -1;
    *out = v;
    return 0;
}

static int usage(const char *msg, const char *arg)
{
    fprintf(stderr, "stress_writer: %s%s%s\n%s", msg, arg ? " " : "", arg ? arg : "", usage_text);
    return 2;
}

static void log_metrics(ckpt_store *s, const char *run, int64_t epoch, int64_t step)
{
    for (int k = 0; k < ST_NMETRICS; k++) {
        int rc = ckpt_metric_log(s, run, st_metric_name(k), epoch, step,
                                 st_metric_value(run, epoch, step, k));
        if (rc)
            die("ckpt_metric_log", rc);
    }
}

static int open_close_loop(const char *db, const char *run, const ckpt_open_opts *o, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        ckpt_store *s;
        int rc = ckpt_open(&s, db, o);
        if (rc)
            die("ckpt_open", rc);
        ckpt_checkpoint_info head;
        rc = ckpt_head(s, run, &head);
        if (rc && rc != CKPT_ENOCHECKPOINT && rc != CKPT_ENOTFOUND)
            die("ckpt_head", rc);
        if ((rc = ckpt_close(s)))
            die("ckpt_close", rc);
    }
    SAY("done %s %lld open-close\n", run, (long long)n);
    return 0;
}

int main(int argc, char **argv)
{
    double tstart = st_now();
    const char *db = NULL, *run = NULL;
    int64_t epochs = 0, threads = -1, busy_ms = 0, open_close = 0;
    double seconds = 0;
    int durability = CKPT_DURABLE_FULL, timing = 0, readonly = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "--timing") == 0) {
            timing = 1;
            continue;
        }
        if (strcmp(a, "--readonly") == 0) {
            readonly = 1;
            continue;
        }
        if (!v)
            return usage("missing value after", a);
        i++;
        if (strcmp(a, "--db") == 0) {
            db = v;
        } else if (strcmp(a, "--run") == 0) {
            run = v;
        } else if (strcmp(a, "--epochs") == 0) {
            if (parse_i64(v, 1, INT32_MAX, &epochs))
                return usage("--epochs wants a positive integer, got", v);
        } else if (strcmp(a, "--seconds") == 0) {
            if (parse_double(v, &seconds))
                return usage("--seconds wants a number >= 0, got", v);
        } else if (strcmp(a, "--threads") == 0) {
            if (parse_i64(v, 0, 64, &threads))
                return usage("--threads wants 0..64, got", v);
        } else if (strcmp(a, "--open-close") == 0) {
            if (parse_i64(v, 1, INT32_MAX, &open_close))
                return usage("--open-close wants a positive integer, got", v);
        } else if (strcmp(a, "--busy-ms") == 0) {
            if (parse_i64(v, 0, INT32_MAX, &busy_ms))
                return usage("--busy-ms wants a non-negative integer, got", v);
        } else if (strcmp(a, "--durability") == 0) {
            if (strcmp(v, "full") == 0)
                durability = CKPT_DURABLE_FULL;
            else if (strcmp(v, "normal") == 0)
                durability = CKPT_DURABLE_NORMAL;
            else if (strcmp(v, "off") == 0)
                durability = CKPT_DURABLE_OFF;
            else
                return usage("--durability wants full, normal or off, got", v);
        } else {
            return usage("unknown option", a);
        }
    }
    if (!db || !run)
        return usage("--db and --run are required", NULL);
    g_run = run;

    ckpt_store *s;
    ckpt_open_opts o = {readonly ? CKPT_OPEN_READONLY : 0, (int)busy_ms, durability};
    int rc;
    if (open_close)
        return open_close_loop(db, run, &o, open_close);
    if (readonly)
        return usage("--readonly only goes with", "--open-close");
    SAY("open %s\n", run);
    rc = ckpt_open(&s, db, &o);
    if (rc)
        die("ckpt_open", rc);
    if (threads >= 0 && (rc = ckpt_set_param(s, CKPT_PARAM_THREADS, threads)))
        die("ckpt_set_param(THREADS)", rc);

    ckpt_checkpoint_info head;
    rc = ckpt_resume(s, run, &head);
    if (rc == CKPT_ENOTFOUND) {
        char yaml[256];
        int n = snprintf(yaml, sizeof yaml,
                         "model:\n  layers: 1\n  width: 1024\noptimizer:\n  name: adam\n"
                         "  lr: 0.001\nstress:\n  run: \"%s\"\n",
                         run);
        if ((rc = ckpt_run_create(s, run, yaml, (size_t)n)))
            die("ckpt_run_create", rc);
        rc = ckpt_resume(s, run, &head);
    }
    int64_t start = 0;
    if (rc == CKPT_OK)
        start = head.epoch + 1;
    else if (rc != CKPT_ENOCHECKPOINT)
        die("ckpt_resume", rc);
    SAY("start %s %lld\n", run, (long long)start);

    uint8_t *buf = malloc(ST_MAX_TENSOR_BYTES);
    if (!buf) {
        fprintf(stderr, "stress_writer: out of memory\n");
        return 1;
    }
    double t0 = st_now();
    int64_t e = start;
    for (;; e++) {
        if (epochs && e >= epochs)
            break;
        if (seconds > 0 && st_now() - t0 >= seconds)
            break;
        g_epoch = e;
        int64_t step = st_checkpoint_step(e);
        /* Steps before the checkpoint's go in their own transaction; the last
         * step's values ride in the commit's. */
        for (int64_t k = step - ST_STEPS_PER_EPOCH + 1; k < step; k++)
            log_metrics(s, run, e, k);
        SAY("flush %s %lld\n", run, (long long)e);
        if ((rc = ckpt_metrics_flush(s)))
            die("ckpt_metrics_flush", rc);

        double tb = st_now();
        SAY("begin %s %lld\n", run, (long long)e);
        ckpt_writer *w;
        if ((rc = ckpt_writer_begin(&w, s, run, e, step)))
            die("ckpt_writer_begin", rc);
        for (size_t i = 0; i < ST_NTENSORS; i++) {
            st_tensor t;
            st_layout(run, e, i, &t);
            st_fill(run, e, i, buf);
            if ((rc = ckpt_writer_put(w, t.name, t.kind, t.dtype, t.ndim, t.shape, buf, t.nbytes))) {
                fprintf(stderr, "stress_writer: tensor '%s':\n", t.name);
                die("ckpt_writer_put", rc);
            }
        }
        log_metrics(s, run, e, step);
        double tc = st_now();
        SAY("commit %s %lld\n", run, (long long)e);
        int64_t id = 0;
        if ((rc = ckpt_writer_commit(w, &id)))
            die("ckpt_writer_commit", rc);
        SAY("committed %s %lld %lld\n", run, (long long)e, (long long)id);
        if (timing)
            fprintf(stderr, "timing %s %lld %.1f %.1f %.1f\n", run, (long long)e,
                    (tb - tstart) * 1000, (tc - tb) * 1000, (st_now() - tc) * 1000);
    }
    free(buf);
    if ((rc = ckpt_run_finish(s, run)))
        die("ckpt_run_finish", rc);
    if ((rc = ckpt_close(s)))
        die("ckpt_close", rc);
    SAY("done %s %lld\n", run, (long long)e);
    return 0;
}
