/*
 * io.c - ckpt-bench's checkpoint I/O measurements: peak RSS of a save and a
 * restore (each in a child process), the first checkpoint against a plain
 * write + fsync of the same bytes, a restore against a read of them, and
 * the stored size of later epochs.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define RUN "bench"

static ckpt_store *open_store(const char *path, int durability)
{
    ckpt_open_opts oo = {0, 0, durability};
    ckpt_store *s;
    int rc = ckpt_open(&s, path, &oo);
    if (rc != CKPT_OK)
        bench_die_ckpt(rc, path);
    return s;
}

/* A new store for saves, with the codec of --codec. */
static ckpt_store *new_store(const char *path, int codec)
{
    bench_store_remove(path);
    ckpt_store *s = open_store(path, CKPT_DURABLE_FULL);
    int rc = ckpt_set_param(s, CKPT_PARAM_CODEC, codec);
    if (rc == CKPT_OK)
        rc = ckpt_run_create(s, RUN, NULL, 0);
    if (rc != CKPT_OK)
        bench_die_ckpt(rc, path);
    return s;
}

static double min_time(double a, double b)
{
    return isnan(a) || b < a ? b : a;
}

/* ------------------------------------------------------------ peak RSS */

static double wait_child(pid_t pid, const char *what)
{
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR)
            bench_die("waiting for the %s child: %s", what, strerror(errno));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "ckpt-bench: the %s child failed (status 0x%x)\n", what, status);
        return NAN;
    }
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* The children free what they own before _exit so that memory checkers
 * run on the whole program see nothing lost. */
static void child_save(const bench_opts *o, char *path)
{
    bench_state st;
    if (bench_state_build(&st, o->size_mib << 20, o->frozen, o->seed) != 0)
        _exit(1);
    ckpt_store *s = new_store(path, o->codec);
    int rc = bench_state_save(s, RUN, &st, 1, NULL);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-bench: save child: %s\n", ckpt_errmsg());
        _exit(1);
    }
    ckpt_close(s);
    bench_state_free(&st);
    free(path);
    _exit(0);
}

static void child_restore(char *path)
{
    ckpt_store *s = open_store(path, CKPT_DURABLE_FULL);
    ckpt_reader *r;
    int rc = ckpt_reader_open(&r, s, RUN, CKPT_HEAD);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-bench: restore child: %s\n", ckpt_errmsg());
        _exit(1);
    }
    size_t n = ckpt_reader_count(r);
    void **bufs = calloc(n ? n : 1, sizeof *bufs);
    for (size_t i = 0; bufs && i < n && rc == CKPT_OK; i++) {
        ckpt_tensor_info ti;
        rc = ckpt_reader_tensor(r, i, &ti);
        if (rc == CKPT_OK && (bufs[i] = malloc(ti.nbytes ? ti.nbytes : 1)) == NULL)
            rc = CKPT_ENOMEM;
        if (rc == CKPT_OK)
            rc = ckpt_reader_read(r, i, 0, bufs[i], ti.nbytes);
    }
    if (!bufs || rc != CKPT_OK) {
        fprintf(stderr, "ckpt-bench: restore child: %s\n", bufs ? ckpt_errmsg() : "no memory");
        _exit(1);
    }
    ckpt_reader_close(r);
    ckpt_close(s);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(path);
    _exit(0);
}

void bench_phase_rss(const bench_opts *o, bench_results *res)
{
    char *path = bench_path(o->work, "rss.ckpt");
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    res->rss_parent_mib = (double)self.ru_maxrss / 1024.0;

    bench_progress("peak RSS: saving %llu MiB in a child process", (unsigned long long)o->size_mib);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0)
        child_save(o, path);
    res->rss_save_mib = wait_child(pid, "save");

    if (!isnan(res->rss_save_mib)) {
        bench_progress("peak RSS: restoring it in a child process");
        fflush(NULL);
        pid = fork();
        if (pid < 0)
            bench_die("fork: %s", strerror(errno));
        if (pid == 0)
            child_restore(path);
        res->rss_restore_mib = wait_child(pid, "restore");
    }
    bench_store_remove(path);
    free(path);
}

/* ------------------------------------------------------------ raw baseline */

static void write_all(int fd, const void *p, size_t n, const char *path)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            bench_die("writing %s: %s", path, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
}

static void read_all(int fd, void *p, size_t n, const char *path)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            bench_die("reading %s: %s", path, r < 0 ? strerror(errno) : "unexpected end of file");
        c += r;
        n -= (size_t)r;
    }
}

/* write() every tensor into one new file, then fsync: what a trainer that
 * dumps its buffers itself would do, with the same durability as ckpt's
 * default. *nofsync receives the time before the fsync. */
static double raw_write(const char *path, const bench_state *st, double *nofsync)
{
    unlink(path);
    sync();
    double t0 = bench_now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        bench_die("cannot create %s: %s", path, strerror(errno));
    for (size_t i = 0; i < st->nt; i++)
        write_all(fd, st->t[i].data, st->t[i].nbytes, path);
    *nofsync = bench_now() - t0;
    if (fsync(fd) != 0)
        bench_die("fsync %s: %s", path, strerror(errno));
    close(fd);
    return bench_now() - t0;
}

static double raw_read(const char *path, const bench_state *st)
{
    double t0 = bench_now();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        bench_die("cannot open %s: %s", path, strerror(errno));
    for (size_t i = 0; i < st->nt; i++)
        read_all(fd, st->t[i].data, st->t[i].nbytes, path);
    close(fd);
    return bench_now() - t0;
}

/* The tensors' layout in raw.bin, for tools/bench/torch_numpy.py. */
static void write_index(const char *path, const bench_state *st)
{
    FILE *f = fopen(path, "w");
    if (!f)
        bench_die("cannot create %s: %s", path, strerror(errno));
    fprintf(f, "[\n");
    for (size_t i = 0; i < st->nt; i++) {
        const bench_tensor *t = &st->t[i];
        const char *np = t->dtype == CKPT_F32   ? "float32"
                         : t->dtype == CKPT_I64 ? "int64"
                                                : "uint8";
        fprintf(f, "  {\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": [", t->name, np);
        for (int k = 0; k < t->ndim; k++)
            fprintf(f, "%s%lld", k ? ", " : "", (long long)t->shape[k]);
        fprintf(f, "], \"offset\": %llu, \"nbytes\": %zu}%s\n", (unsigned long long)t->offset,
                t->nbytes, i + 1 < st->nt ? "," : "");
    }
    fprintf(f, "]\n");
    if (fclose(f) != 0)
        bench_die("writing %s: %s", path, strerror(errno));
}

/* ------------------------------------------------------------ ckpt side */

static double ckpt_restore(ckpt_store *s, int64_t epoch, const bench_state *st, int compare)
{
    double t0 = bench_now();
    ckpt_reader *r;
    int rc = ckpt_reader_open(&r, s, RUN, epoch);
    if (rc != CKPT_OK)
        bench_die_ckpt(rc, "opening the checkpoint");
    size_t bad;
    rc = bench_state_restore(r, st, compare, &bad);
    if (rc != CKPT_OK)
        bench_die_ckpt(rc, "restoring the checkpoint");
    ckpt_reader_close(r);
    double t = bench_now() - t0;
    if (compare && bad)
        bench_die("epoch %lld restored tensor %s with different bytes", (long long)epoch,
                  st->t[bad - 1].name);
    return t;
}

void bench_phase_io(const bench_opts *o, bench_state *st, bench_results *res)
{
    char *raw = bench_path(o->work, "raw.bin");
    char *index = bench_path(o->work, "raw.json");
    char *db = bench_path(o->work, "save.ckpt");
    ckpt_checkpoint_info info;

    /* Alternating, so that both see the same state of the disk and cache. */
    for (int rep = 0; rep < o->reps; rep++) {
        bench_progress("first checkpoint, run %d of %d: write+fsync, then ckpt save", rep + 1,
                       o->reps);
        double nofsync;
        double t = raw_write(raw, st, &nofsync);
        res->raw_write_s = min_time(res->raw_write_s, t);
        res->raw_write_nofsync_s = min_time(res->raw_write_nofsync_s, nofsync);

        ckpt_store *s = new_store(db, o->codec);
        sync();
        int64_t wb0 = bench_proc_write_bytes();
        int64_t id;
        double t0 = bench_now();
        int rc = bench_state_save(s, RUN, st, 1, &id);
        double ts = bench_now() - t0;
        if (rc != CKPT_OK)
            bench_die_ckpt(rc, "saving the first checkpoint");
        if ((rc = bench_checkpoint_info(s, id, &info)) != CKPT_OK)
            bench_die_ckpt(rc, "reading the first checkpoint's sizes");
        rc = ckpt_close(s);
        if (rc != CKPT_OK)
            bench_die_ckpt(rc, "closing the store");
        int64_t wb1 = bench_proc_write_bytes();
        if (isnan(res->save_s) || ts < res->save_s) {
            res->save_s = ts;
            res->save_stored_bytes = (double)info.stored_bytes;
            res->save_write_bytes = wb0 >= 0 && wb1 >= wb0 ? (double)(wb1 - wb0) : NAN;
        }
        if (info.logical_bytes != st->logical_bytes)
            bench_die("the checkpoint holds %llu logical bytes, expected %llu",
                      (unsigned long long)info.logical_bytes,
                      (unsigned long long)st->logical_bytes);
    }
    write_index(index, st);

    /* Restores, from the page cache: both files were just written; one
     * untimed pass each makes sure, and the ckpt pass checks every byte. */
    ckpt_store *s = open_store(db, CKPT_DURABLE_FULL);
    int prc = ckpt_set_param(s, CKPT_PARAM_CODEC, o->codec); /* for the later epochs */
    if (prc != CKPT_OK)
        bench_die_ckpt(prc, db);
    bench_progress("restore: checking every byte, then %d timed runs each", o->reps);
    ckpt_restore(s, 1, st, 1);
    raw_read(raw, st);
    for (int rep = 0; rep < o->reps; rep++) {
        res->raw_read_s = min_time(res->raw_read_s, raw_read(raw, st));
        res->restore_s = min_time(res->restore_s, ckpt_restore(s, 1, st, 0));
    }

    /* Later epochs: small updates, the frozen layers unchanged. */
    res->nepochs = o->epochs;
    res->epoch_logical = calloc((size_t)o->epochs + 1, sizeof(double));
    res->epoch_stored = calloc((size_t)o->epochs + 1, sizeof(double));
    res->epoch_save_s = calloc((size_t)o->epochs + 1, sizeof(double));
    if (!res->epoch_logical || !res->epoch_stored || !res->epoch_save_s)
        bench_die("out of memory");
    res->epoch_logical[1] = (double)info.logical_bytes;
    res->epoch_stored[1] = (double)info.stored_bytes;
    res->epoch_save_s[1] = res->save_s;
    for (int e = 2; e <= o->epochs; e++) {
        bench_progress("epoch %d: update (%d of %d layers frozen), save", e, st->nfrozen,
                       st->nlayers);
        bench_state_step(st, e);
        sync();
        int64_t id;
        double t0 = bench_now();
        int rc = bench_state_save(s, RUN, st, e, &id);
        res->epoch_save_s[e] = bench_now() - t0;
        if (rc != CKPT_OK)
            bench_die_ckpt(rc, "saving an epoch");
        if ((rc = bench_checkpoint_info(s, id, &info)) != CKPT_OK)
            bench_die_ckpt(rc, "reading an epoch's sizes");
        res->epoch_logical[e] = (double)info.logical_bytes;
        res->epoch_stored[e] = (double)info.stored_bytes;
    }
    if (o->epochs >= 2) {
        bench_progress("restore of epoch %d (delta chunks)", o->epochs);
        ckpt_restore(s, o->epochs, st, 1);
        for (int rep = 0; rep < o->reps; rep++)
            res->restore_last_s = min_time(res->restore_last_s, ckpt_restore(s, o->epochs, st, 0));
    }
    int rc = ckpt_close(s);
    if (rc != CKPT_OK)
        bench_die_ckpt(rc, "closing the store");
    if (!o->keep)
        bench_store_remove(db);
    free(raw);
    free(index);
    free(db);
}
