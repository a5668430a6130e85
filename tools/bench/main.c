/*
 * main.c - ckpt-bench: measures ckpt against plain file I/O, torch and
 * numpy on a generated training state, prints a table and, as its last
 * line, one JSON object with the figures (see usage_text).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

static const char usage_text[] =
    "usage: ckpt-bench [--size-mib N] [--epochs N] [--frozen F] [--dir D] [--keep]\n"
    "                  [--skip-torch] [--skip-trained] [--skip-list] [--json-only] ...\n"
    "\n"
    "Generates a training state (float32 weights with a trained-like spread plus\n"
    "Adam moments, in layers of realistic shapes) and measures, side by side:\n"
    "the first checkpoint against write+fsync of the same bytes, a restore against\n"
    "read() of them (page cache), the stored share of a later epoch with part of\n"
    "the layers frozen, the compression of ckpt-train's large config, metric\n"
    "logging, `ckpt list` on 10,000 checkpoints, peak RSS of a save and a restore,\n"
    "and torch.save/torch.load, np.savez/np.load at equal durability (fsync).\n"
    "Prints a table, then the figures as one JSON object on the last line.\n"
    "\n"
    "  --size-mib N          size of the state in MiB (default 1024)\n"
    "  --epochs N            epochs saved; the last one gives epoch_stored_fraction (3)\n"
    "  --frozen F            share of the parameter bytes in frozen layers (0.5)\n"
    "  --reps N              timed runs per measurement, the best is kept (3)\n"
    "  --seed N              seed of the generated state (1)\n"
    "  --dir D               where to make the temporary directory ($TMPDIR or /tmp)\n"
    "  --keep                keep the temporary directory\n"
    "  --metrics N           metric values logged for metrics_per_s (2000000)\n"
    "  --list-checkpoints N  checkpoints in the store `ckpt list` reads (10000)\n"
    "  --trained-limit N     training examples per ckpt-train epoch (6000)\n"
    "  --trained-epochs N    ckpt-train epochs (2)\n"
    "  --config-large FILE   ckpt-train config (tools/configs/fashion-mlp-large.yaml)\n"
    "  --python PATH         python with numpy (and torch) (/usr/bin/python3, python3)\n"
    "  --codec NAME          codec of the save stores: auto, raw or planes (auto)\n"
    "  --skip-torch          no torch/numpy baselines\n"
    "  --skip-trained        no ckpt-train run\n"
    "  --skip-list           no `ckpt list` store\n"
    "  --skip-rss            no peak-RSS child processes\n"
    "  --json-only           print only the JSON object (progress still on stderr)\n"
    "  --help                this text\n"
    "\n"
    "Skipped or unavailable figures are null in the JSON. Exit status: 0 done,\n"
    "1 a measurement failed, 2 bad command line.\n";

/* ------------------------------------------------------------ messages */

void bench_note(bench_results *res, const char *fmt, ...)
{
    if (res->nnotes >= (int)(sizeof res->notes / sizeof res->notes[0]))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->notes[res->nnotes++], sizeof res->notes[0], fmt, ap);
    va_end(ap);
}

static double start_time;
static char *cleanup_dir; /* removed at exit, also after bench_die() */
static pid_t cleanup_pid; /* not by a forked child that dies */

static void cleanup(void)
{
    if (cleanup_dir && getpid() == cleanup_pid && bench_rm_rf(cleanup_dir) != 0)
        fprintf(stderr, "ckpt-bench: could not remove %s\n", cleanup_dir);
}

void bench_progress(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ckpt-bench: [%5.1f s] ", bench_now() - start_time);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ------------------------------------------------------------ options */

static int usage_error(const char *fmt, ...) BENCH_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ckpt-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nrun 'ckpt-bench --help' for usage\n");
    return 2;
}

static int parse_int(const char *opt, const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi)
        return usage_error("%s: '%s' is not a whole number in %lld..%lld", opt, v, lo, hi);
    *out = n;
    return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    static const char *const flags[] = {"--keep",      "--skip-torch", "--skip-trained",
                                        "--skip-list", "--skip-rss",   "--json-only"};
    int *flag_vars[] = {&o->keep,      &o->skip_torch, &o->skip_trained,
                        &o->skip_list, &o->skip_rss,   &o->json_only};
    static const char *const valued[] = {
        "--size-mib",     "--epochs",  "--frozen",           "--reps",          "--seed",
        "--dir",          "--metrics", "--list-checkpoints", "--trained-limit", "--trained-epochs",
        "--config-large", "--python",  "--codec"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        int matched = 0;
        for (size_t k = 0; k < sizeof flags / sizeof *flags; k++) {
            if (strcmp(a, flags[k]) == 0) {
                *flag_vars[k] = 1;
                matched = 1;
            }
        }
        if (matched)
            continue;
        int which = -1;
        const char *v = NULL;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) {
            size_t len = strlen(valued[k]);
            if (strncmp(a, valued[k], len) == 0 && (a[len] == '\0' || a[len] == '=')) {
                which = (int)k;
                v = a[len] == '=' ? a + len + 1 : NULL;
                break;
            }
        }
        if (which < 0)
            return usage_error("unknown argument '%s'", a);
        if (!v) {
            if (i + 1 >= argc)
                return usage_error("%s needs a value", a);
            v = argv[++i];
        }
        const char *opt = valued[which];
        long long n = 0;
        int rc = 0;
        switch (which) {
        case 0:
            rc = parse_int(opt, v, 1, 1 << 20, &n);
            o->size_mib = (uint64_t)n;
            break;
        case 1:
            rc = parse_int(opt, v, 1, 1000, &n);
            o->epochs = (int)n;
            break;
        case 2: {
            char *end;
            errno = 0;
            double f = strtod(v, &end);
            if (errno != 0 || end == v || *end != '\0' || !(f >= 0.0 && f <= 1.0))
                return usage_error("--frozen: '%s' is not a share between 0 and 1", v);
            o->frozen = f;
            break;
        }
        case 3:
            rc = parse_int(opt, v, 1, 100, &n);
            o->reps = (int)n;
            break;
        case 4:
            rc = parse_int(opt, v, 0, INT64_MAX, &n);
            o->seed = (uint64_t)n;
            break;
        case 5: o->dir = v; break;
        case 6:
            rc = parse_int(opt, v, 1, 1000000000, &n);
            o->metrics = n;
            break;
        case 7:
            rc = parse_int(opt, v, 1, 10000000, &n);
            o->list_checkpoints = n;
            break;
        case 8:
            rc = parse_int(opt, v, 1, 60000, &n);
            o->trained_limit = n;
            break;
        case 9:
            rc = parse_int(opt, v, 1, 1000, &n);
            o->trained_epochs = (int)n;
            break;
        case 10: o->config_large = v; break;
        case 11: o->python = v; break;
        default: {
            int c = ckpt_codec_parse(v);
            if (c < 0)
                return usage_error("--codec: '%s' is not auto, raw or planes", v);
            o->codec = c;
            o->codec_name = v;
            break;
        }
        }
        if (rc)
            return rc;
        if ((which == 5 || which >= 10) && *v == '\0')
            return usage_error("%s needs a non-empty value", opt);
    }
    return -1;
}

/* ------------------------------------------------------------ report */

static double ratio(double num, double den)
{
    return isnan(num) || isnan(den) || den <= 0 ? NAN : num / den;
}

static double mib_s(double bytes, double secs)
{
    return ratio(bytes / 1048576.0, secs);
}

static const char *fmt(char *buf, size_t cap, const char *f, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, f, v);
    return buf;
}

/* One table row; target_op "ge", "le", "lt" or NULL. */
static void row(const char *metric, const char *ckpt, const char *base, double r, const char *rfmt,
                const char *target_op, double target)
{
    char rb[32], tb[32];
    const char *ok = "";
    tb[0] = '\0';
    if (target_op) {
        const char *sym = strcmp(target_op, "ge") == 0   ? ">="
                          : strcmp(target_op, "le") == 0 ? "<="
                                                         : "<";
        snprintf(tb, sizeof tb, "%s %g", sym, target);
        if (!isnan(r)) {
            int pass = strcmp(target_op, "ge") == 0   ? r >= target
                       : strcmp(target_op, "le") == 0 ? r <= target
                                                      : r < target;
            ok = pass ? "ok" : "MISSED";
        }
    }
    printf("%-30s %-24s %-34s %-10s %-10s %s\n", metric, ckpt, base, fmt(rb, sizeof rb, rfmt, r),
           tb, ok);
}

static void json_key(int *first, const char *key, double v, const char *f)
{
    printf("%s\"%s\": ", *first ? "" : ", ", key);
    *first = 0;
    if (isnan(v) || isinf(v))
        printf("null");
    else
        printf(f, v);
}

static void report(const bench_opts *o, const bench_results *r, const char *header)
{
    double L = (double)r->logical_bytes;
    double save_vs_raw = ratio(r->raw_write_s, r->save_s);
    double restore_vs_raw = ratio(r->raw_read_s, r->restore_s);
    double restore_last_vs_raw = ratio(r->raw_read_s, r->restore_last_s);
    int E = r->nepochs;
    double epoch_frac =
        E >= 2 && r->epoch_logical ? ratio(r->epoch_stored[E], r->epoch_logical[E]) : NAN;
    double trained = ratio(r->trained_logical, r->trained_stored);
    double mps = ratio(r->metrics_n, r->metrics_s);
    double list_ms = r->list_ms;
    double save_vs_torch = ratio(r->torch_save_s, r->save_s);
    double restore_vs_torch = ratio(r->torch_load_s, r->restore_s);
    double save_vs_numpy = ratio(r->numpy_save_s, r->save_s);
    double restore_vs_numpy = ratio(r->numpy_load_s, r->restore_s);
    double wamp = ratio(r->save_write_bytes, r->save_stored_bytes);
    double rss_target = 1.2 * (double)o->size_mib;
    double epoch_save =
        E >= 2 && r->epoch_save_s ? mib_s(r->epoch_logical[E], r->epoch_save_s[E]) : NAN;

    if (!o->json_only) {
        char a[64], b[64], c[64];
        fputs(header, stdout);
        printf("\n%-30s %-24s %-34s %-10s %-10s %s\n", "metric", "ckpt", "baseline", "ratio",
               "target", "");
        snprintf(b, sizeof b, "write+fsync %s MiB/s",
                 fmt(c, sizeof c, "%.0f", mib_s(L, r->raw_write_s)));
        row("first checkpoint save", fmt(a, sizeof a, "%.0f MiB/s", mib_s(L, r->save_s)), b,
            save_vs_raw, "%.3f", "ge", 0.9);
        snprintf(b, sizeof b, "read() %s MiB/s", fmt(c, sizeof c, "%.0f", mib_s(L, r->raw_read_s)));
        row("restore (page cache)", fmt(a, sizeof a, "%.0f MiB/s", mib_s(L, r->restore_s)), b,
            restore_vs_raw, "%.3f", "ge", 0.8);
        row("restore of last epoch", fmt(a, sizeof a, "%.0f MiB/s", mib_s(L, r->restore_last_s)), b,
            restore_last_vs_raw, "%.3f", NULL, 0);
        snprintf(a, sizeof a, "%s of %s MiB",
                 fmt(b, sizeof b, "%.1f", E >= 2 ? r->epoch_stored[E] / 1048576.0 : NAN),
                 fmt(c, sizeof c, "%.0f", E >= 2 ? r->epoch_logical[E] / 1048576.0 : NAN));
        char m[48];
        snprintf(m, sizeof m, "epoch %d stored fraction", E);
        row(m, a, "(stored / logical)", epoch_frac, "%.3f", "le", 0.45);
        row("later epoch save", fmt(a, sizeof a, "%.0f MiB/s", epoch_save), "", NAN, "%.3f", NULL,
            0);
        snprintf(a, sizeof a, "%s of %s MiB",
                 fmt(b, sizeof b, "%.1f", r->trained_stored / 1048576.0),
                 fmt(c, sizeof c, "%.1f", r->trained_logical / 1048576.0));
        row("compression, ckpt-train large", a, "(logical / stored)", trained, "%.3f", "ge", 1.15);
        snprintf(a, sizeof a, "%s of %s MiB",
                 fmt(b, sizeof b, "%.1f", r->trained_stored_after0 / 1048576.0),
                 fmt(c, sizeof c, "%.1f", r->trained_logical_after0 / 1048576.0));
        row("  the same without epoch 0", a, "(epoch 0: initial, zero moments)",
            ratio(r->trained_logical_after0, r->trained_stored_after0), "%.3f", NULL, 0);
        row("metric values logged", fmt(a, sizeof a, "%.0f /s", mps), "", mps, "%.0f", "ge",
            500000);
        snprintf(m, sizeof m, "ckpt list, %lld checkpoints", (long long)o->list_checkpoints);
        row(m, fmt(a, sizeof a, "%.1f ms", list_ms), "", list_ms, "%.1f", "le", 100);
        row("peak RSS, save", fmt(a, sizeof a, "%.0f MiB", r->rss_save_mib), "(includes the state)",
            r->rss_save_mib, "%.0f", "lt", rss_target);
        row("peak RSS, restore", fmt(a, sizeof a, "%.0f MiB", r->rss_restore_mib),
            "(includes the buffers)", r->rss_restore_mib, "%.0f", "lt", rss_target);
        row("write amplification, save",
            fmt(a, sizeof a, "%.1f MiB written", r->save_write_bytes / 1048576.0),
            fmt(c, sizeof c, "stored %.1f MiB", r->save_stored_bytes / 1048576.0), wamp, "%.3f",
            "le", 1.1);
        snprintf(b, sizeof b, "torch.save+fsync %s MiB/s",
                 fmt(c, sizeof c, "%.0f", mib_s(L, r->torch_save_s)));
        row("save vs torch.save", fmt(a, sizeof a, "%.0f MiB/s", mib_s(L, r->save_s)), b,
            save_vs_torch, "%.3f", "ge", 1.0);
        snprintf(b, sizeof b, "torch.load %s MiB/s",
                 fmt(c, sizeof c, "%.0f", mib_s(L, r->torch_load_s)));
        row("restore vs torch.load", fmt(a, sizeof a, "%.0f MiB/s", mib_s(L, r->restore_s)), b,
            restore_vs_torch, "%.3f", "ge", 1.0);
        snprintf(b, sizeof b, "np.savez+fsync %s MiB/s",
                 fmt(c, sizeof c, "%.0f", mib_s(L, r->numpy_save_s)));
        row("save vs numpy.savez", fmt(a, sizeof a, "%.0f MiB/s", mib_s(L, r->save_s)), b,
            save_vs_numpy, "%.3f", NULL, 0);
        snprintf(b, sizeof b, "np.load %s MiB/s",
                 fmt(c, sizeof c, "%.0f", mib_s(L, r->numpy_load_s)));
        row("restore vs numpy.load", fmt(a, sizeof a, "%.0f MiB/s", mib_s(L, r->restore_s)), b,
            restore_vs_numpy, "%.3f", NULL, 0);

        printf("\nnotes:\n");
        printf("- durability: ckpt saves with CKPT_DURABLE_FULL (fsync at commit); the raw "
               "baseline is write() + fsync; torch.save and np.savez do not fsync, so their\n"
               "  times here include flush + os.fsync (without it: torch.save %s MiB/s, np.savez "
               "%s MiB/s; raw write %s MiB/s).\n",
               fmt(a, sizeof a, "%.0f", mib_s(L, r->torch_save_nofsync_s)),
               fmt(b, sizeof b, "%.0f", mib_s(L, r->numpy_save_nofsync_s)),
               fmt(c, sizeof c, "%.0f", mib_s(L, r->raw_write_nofsync_s)));
        printf("- times are the best of %d runs; saves and raw writes alternate, each into a new "
               "file or store after sync(); restores and reads are from the page cache.\n",
               o->reps);
        printf("- restore = reader open + every tensor into the caller's buffers + close; "
               "torch.load and np.load allocate their own arrays.\n");
        printf("- peak RSS: ru_maxrss of a child process (forked while this process used %.0f "
               "MiB) that generates and saves the state / restores it into new buffers; it "
               "includes those %llu MiB.\n",
               r->rss_parent_mib, (unsigned long long)o->size_mib);
        printf("- metrics: ckpt_metric_log of %.0f values (4 names, rising steps), then "
               "ckpt_metrics_flush; default durability (FULL), the library batches 8192 values "
               "a transaction.\n",
               r->metrics_n);
        printf("- write amplification: write_bytes of /proc/self/io during the save and close, "
               "over the checkpoint's stored bytes.\n");
        if (E >= 2 && r->epoch_logical) {
            printf("- stored fraction per epoch:");
            for (int e = 1; e <= E; e++)
                printf(" %d: %.3f", e, ratio(r->epoch_stored[e], r->epoch_logical[e]));
            printf(" (updates: weights by ~1e-4 of their spread, moments by one Adam step)\n");
        }
        if (!isnan(r->list_build_s))
            printf("- the list store (%lld checkpoints, 3 metrics each) took %.1f s to build "
                   "(durability OFF).\n",
                   (long long)o->list_checkpoints, r->list_build_s);
        if (!isnan(r->trained_s))
            printf("- ckpt-train ran %.1f s (%d epochs of %lld examples).\n", r->trained_s,
                   o->trained_epochs, (long long)o->trained_limit);
        if (r->py_versions[0])
            printf("- %s\n", r->py_versions);
        for (int i = 0; i < r->nnotes; i++)
            printf("- %s\n", r->notes[i]);
        printf("\n");
    }

    int first = 1;
    printf("{");
    json_key(&first, "save_vs_raw_write", save_vs_raw, "%.4f");
    json_key(&first, "restore_vs_raw_read", restore_vs_raw, "%.4f");
    json_key(&first, "epoch_stored_fraction", epoch_frac, "%.4f");
    json_key(&first, "compression_ratio_trained", trained, "%.4f");
    json_key(&first, "metrics_per_s", mps, "%.0f");
    json_key(&first, "list_ms_10k", list_ms, "%.2f");
    json_key(&first, "peak_rss_save_mib", r->rss_save_mib, "%.1f");
    json_key(&first, "peak_rss_restore_mib", r->rss_restore_mib, "%.1f");
    json_key(&first, "save_vs_torch", save_vs_torch, "%.4f");
    json_key(&first, "restore_vs_torch", restore_vs_torch, "%.4f");
    json_key(&first, "save_vs_numpy", save_vs_numpy, "%.4f");
    json_key(&first, "restore_vs_numpy", restore_vs_numpy, "%.4f");
    json_key(&first, "save_write_amplification", wamp, "%.4f");
    json_key(&first, "size_mib", (double)o->size_mib, "%.0f");
    json_key(&first, "save_mib_s", mib_s(L, r->save_s), "%.1f");
    json_key(&first, "raw_write_mib_s", mib_s(L, r->raw_write_s), "%.1f");
    json_key(&first, "restore_mib_s", mib_s(L, r->restore_s), "%.1f");
    json_key(&first, "raw_read_mib_s", mib_s(L, r->raw_read_s), "%.1f");
    json_key(&first, "restore_last_vs_raw_read", restore_last_vs_raw, "%.4f");
    json_key(&first, "epoch_save_mib_s", epoch_save, "%.1f");
    json_key(&first, "torch_save_mib_s", mib_s(L, r->torch_save_s), "%.1f");
    json_key(&first, "torch_load_mib_s", mib_s(L, r->torch_load_s), "%.1f");
    json_key(&first, "save_vs_torch_nofsync", ratio(r->torch_save_nofsync_s, r->save_s), "%.4f");
    json_key(&first, "compression_ratio_trained_after_epoch0",
             ratio(r->trained_logical_after0, r->trained_stored_after0), "%.4f");
    json_key(&first, "frozen_share", r->frozen_share, "%.4f");
    printf("}\n");
    fflush(stdout);
}

/* ------------------------------------------------------------ main */

static void init_results(bench_results *r)
{
    memset(r, 0, sizeof *r);
    double *nanfields[] = {&r->frozen_share,
                           &r->gen_s,
                           &r->raw_write_s,
                           &r->raw_write_nofsync_s,
                           &r->save_s,
                           &r->save_write_bytes,
                           &r->save_stored_bytes,
                           &r->raw_read_s,
                           &r->restore_s,
                           &r->restore_last_s,
                           &r->rss_save_mib,
                           &r->rss_restore_mib,
                           &r->rss_parent_mib,
                           &r->trained_logical,
                           &r->trained_stored,
                           &r->trained_logical_after0,
                           &r->trained_stored_after0,
                           &r->trained_s,
                           &r->metrics_n,
                           &r->metrics_s,
                           &r->list_ms,
                           &r->list_build_s,
                           &r->torch_save_s,
                           &r->torch_save_nofsync_s,
                           &r->torch_load_s,
                           &r->numpy_save_s,
                           &r->numpy_save_nofsync_s,
                           &r->numpy_load_s};
    for (size_t i = 0; i < sizeof nanfields / sizeof *nanfields; i++)
        *nanfields[i] = NAN;
}

int main(int argc, char **argv)
{
    start_time = bench_now();
    bench_opts o;
    memset(&o, 0, sizeof o);
    o.size_mib = 1024;
    o.epochs = 3;
    o.frozen = 0.5;
    o.reps = 3;
    o.seed = 1;
    o.metrics = 2000000;
    o.list_checkpoints = 10000;
    o.trained_limit = 6000;
    o.trained_epochs = 2;
    o.codec = CKPT_CODEC_AUTO;
    o.codec_name = "auto";
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (bench_exe_dir(o.exe_dir, sizeof o.exe_dir) != 0)
        bench_die("cannot find the directory of this program (/proc/self/exe)");

    const char *base = o.dir;
    if (!base)
        base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (mkdir(base, 0755) != 0 && errno != EEXIST)
        bench_die("cannot create %s: %s", base, strerror(errno));
    o.work = bench_path(base, "ckpt-bench.XXXXXX");
    if (!mkdtemp(o.work))
        bench_die("cannot create a directory in %s: %s", base, strerror(errno));
    if (!o.keep) {
        cleanup_dir = o.work;
        cleanup_pid = getpid();
        atexit(cleanup);
    }

    bench_results res;
    init_results(&res);
    char fsbuf[32], loadavg[64] = "?";
    char *la = bench_read_file("/proc/loadavg", 4096, NULL);
    if (la) {
        snprintf(loadavg, sizeof loadavg, "%.*s", (int)strcspn(la, " "), la);
        free(la);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    bench_progress("working in %s (%s), %ld cores, load average %s", o.work,
                   bench_fs_type(o.work, fsbuf, sizeof fsbuf), cores, loadavg);
    if (strcmp(fsbuf, "tmpfs") == 0)
        bench_note(&res, "%s is on tmpfs: fsync costs nothing there, use --dir on a disk", o.work);

    /* First, while this process is small: its size at fork counts in the
     * children's peak RSS. */
    if (!o.skip_rss)
        bench_phase_rss(&o, &res);
    bench_phase_metrics(&o, &res);
    if (!o.skip_list)
        bench_phase_list(&o, &res);
    if (!o.skip_trained)
        bench_phase_trained(&o, &res);

    bench_progress("generating a %llu MiB state", (unsigned long long)o.size_mib);
    bench_state st;
    double t0 = bench_now();
    if (bench_state_build(&st, o.size_mib << 20, o.frozen, o.seed) != 0)
        return 1;
    res.gen_s = bench_now() - t0;
    res.logical_bytes = st.logical_bytes;
    res.ntensors = st.nt;
    res.nlayers = st.nlayers;
    res.nfrozen = st.nfrozen;
    res.frozen_share = ratio((double)st.frozen_param_bytes, (double)st.param_bytes);
    bench_phase_io(&o, &st, &res);
    bench_state_free(&st);
    if (!o.skip_torch)
        bench_phase_python(&o, &res);

    char header[1024];
    snprintf(header, sizeof header,
             "ckpt-bench: state of %.1f MiB: %zu tensors, %d layers (weights, biases, Adam m "
             "and v), %d frozen (%.1f%% of the parameter bytes); generated in %.1f s\n"
             "store in %s (%s), %ld cores, load average %s at start; ckpt %s, chunk size "
             "default, codec %s\n",
             (double)res.logical_bytes / 1048576.0, res.ntensors, res.nlayers, res.nfrozen,
             100.0 * res.frozen_share, res.gen_s, o.work, fsbuf, cores, loadavg,
             CKPT_VERSION_STRING, o.codec_name);
    report(&o, &res, header);

    if (o.keep)
        fprintf(stderr, "ckpt-bench: kept %s\n", o.work);
    cleanup();
    cleanup_dir = NULL;
    free(o.work);
    free(res.epoch_logical);
    free(res.epoch_stored);
    free(res.epoch_save_s);
    return 0;
}
