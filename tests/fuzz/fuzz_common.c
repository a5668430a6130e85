/*
 * fuzz_common.c - scratch files, invariant checks and the store exercise
 * shared by the harnesses (see fuzz_common.h). Harness code may use plain
 * malloc: it is not library code and fault injection does not run it.
 */
#include "fuzz_common.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- checks */

void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\n%s:%d: invariant broken: %s\n  ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  last ckpt message: %s\n", ckpt_errmsg());
    abort();
}

int fz_rc(int rc, const char *what)
{
    FZ_CHECK(rc <= 0 && rc >= CKPT_ERANGE, "%s returned %d, not a ckpt result code", what, rc);
    if (rc != CKPT_OK) {
        const char *m = ckpt_errmsg();
        FZ_CHECK(m && m[0] && strcmp(m, "not an error") != 0, "%s failed with %d (%s) but no message",
                 what, rc, ckpt_strerror(rc));
    }
    return rc;
}

/* ---------------------------------------------------------------- files */

static char tmpdir[512];

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

const char *fz_tmpdir(void)
{
    if (tmpdir[0])
        return tmpdir;
    const char *base = getenv("CKPT_FUZZ_TMP");
    struct stat st;
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                   ? "/dev/shm"
                   : NULL;
    if (!base)
        base = getenv("CKPT_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0777);
    snprintf(tmpdir, sizeof tmpdir, "%s/ckpt-fuzz-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "cannot create a scratch directory under %s: %s\n", base, strerror(errno));
        abort();
    }
    atexit(remove_tmpdir);
    return tmpdir;
}

const char *fz_path(const char *name)
{
    static char buf[8][1024];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", fz_tmpdir(), name);
    return p;
}

void fz_write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
        abort();
    }
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
            abort();
        }
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

void *fz_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            cap *= 2;
            char *q = realloc(buf, cap);
            if (!q) {
                free(buf);
                buf = NULL;
            }
            buf = q;
        }
    }
    fclose(f);
    if (!buf)
        abort();
    *n = len;
    return buf;
}

void fz_remove_store(const char *path)
{
    static const char *const sfx[] = {"",        "-wal",          "-shm",         "-journal",
                                      "-chunks", "-chunks-journal", "-chunks-wal", "-chunks-shm",
                                      "-lock"};
    char p[1200];
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

/* ---------------------------------------------------------------- exercise */

/* Bounds on the work one input may cause, so a store that claims huge
 * tensors is still handled in bounded time by the harness itself. */
#define MAX_RUNS 8
#define MAX_CKPTS 16
#define MAX_WHOLE_READ ((uint64_t)2 << 20)
#define PIECE 4096
#define MAX_VIEW_ROWS 2000

static void verify_cb(void *ctx, const char *run, int64_t epoch, int64_t step, const char *tensor,
                      const char *problem)
{
    (void)run, (void)epoch, (void)step, (void)tensor;
    FZ_CHECK(problem && problem[0], "verify reported an empty problem");
    (*(uint64_t *)ctx)++;
}

static void check_info(const ckpt_tensor_info *ti)
{
    FZ_CHECK(ti->name != NULL, "tensor without a name");
    FZ_CHECK(ti->ndim >= 0 && ti->ndim <= CKPT_MAX_DIMS, "tensor '%s': ndim %d", ti->name, ti->ndim);
    FZ_CHECK(ckpt_kind_name(ti->kind) != NULL, "tensor '%s': kind %d", ti->name, ti->kind);
    FZ_CHECK(ckpt_dtype_name(ti->dtype) != NULL, "tensor '%s': dtype %d", ti->name, ti->dtype);
}

/* Reads tensor i: whole when small, else its first and last pieces; then
 * a piece again through the partial-read path, which must give the same
 * bytes. Returns the whole tensor (malloc'd) when it was read whole. */
static uint8_t *read_tensor(ckpt_reader *r, size_t i, size_t *out_n)
{
    ckpt_tensor_info ti;
    if (fz_rc(ckpt_reader_tensor(r, i, &ti), "ckpt_reader_tensor"))
        return NULL;
    check_info(&ti);
    uint64_t n = ti.nbytes;
    int rc = fz_rc(ckpt_reader_read(r, i, n, NULL, 0), "ckpt_reader_read (empty at end)");
    FZ_CHECK(rc == CKPT_OK, "an empty read at the end of tensor '%s' failed", ti.name);
    rc = fz_rc(ckpt_reader_read(r, i, n, (uint8_t[1]){0}, 1), "ckpt_reader_read (past end)");
    FZ_CHECK(rc == CKPT_ERANGE, "a read past the end of '%s' gave %d", ti.name, rc);
    if (n <= MAX_WHOLE_READ) {
        /* A partial read first (the scratch-chunk path, on a reader that
         * has read nothing yet), then the whole tensor: same bytes. */
        size_t a = (size_t)n / 3, len = n > 2 ? (size_t)n / 2 - a + 1 : 0;
        uint8_t *part = malloc(len ? len : 1);
        int prc = fz_rc(ckpt_reader_read(r, i, a, part, len), "ckpt_reader_read (part)");
        uint8_t *buf = malloc(n ? (size_t)n : 1);
        if (!buf || !part)
            abort();
        rc = fz_rc(ckpt_reader_read(r, i, 0, buf, (size_t)n), "ckpt_reader_read (whole)");
        if (rc == CKPT_OK && prc == CKPT_OK)
            FZ_CHECK(memcmp(part, buf + a, len) == 0,
                     "tensor '%s': bytes %zu..%zu differ between whole and partial reads", ti.name,
                     a, a + len);
        free(part);
        if (rc != CKPT_OK) {
            free(buf);
            return NULL;
        }
        *out_n = (size_t)n;
        return buf;
    }
    uint8_t piece[PIECE];
    fz_rc(ckpt_reader_read(r, i, 0, piece, PIECE), "ckpt_reader_read (first piece)");
    fz_rc(ckpt_reader_read(r, i, n - PIECE, piece, PIECE), "ckpt_reader_read (last piece)");
    fz_rc(ckpt_reader_read(r, i, n / 2, piece, 1), "ckpt_reader_read (middle byte)");
    return NULL;
}

/* x + 1 without overflow: epochs and steps come from the file. */
static int64_t next(int64_t x)
{
    return x < INT64_MAX ? x + 1 : x;
}

typedef struct first_tensor {
    char *name;
    int kind, dtype, ndim;
    int64_t shape[CKPT_MAX_DIMS];
    uint8_t *data;
    size_t n;
} first_tensor;

/* Opens checkpoint id (or run's head) and reads every tensor. Keeps a copy
 * of the first tensor read whole in *ft (if ft and none yet). */
static void read_checkpoint(ckpt_reader *r, first_tensor *ft)
{
    const ckpt_checkpoint_info *ci = ckpt_reader_checkpoint(r);
    FZ_CHECK(ci != NULL && ckpt_reader_run(r) != NULL, "reader without checkpoint or run");
    size_t cnt = ckpt_reader_count(r);
    FZ_CHECK((int64_t)cnt == ci->ntensors, "reader has %zu tensors, checkpoint row says %" PRId64,
             cnt, ci->ntensors);
    for (size_t i = 0; i < cnt; i++) {
        size_t n = 0;
        uint8_t *buf = read_tensor(r, i, &n);
        ckpt_tensor_info ti;
        if (buf && ft && !ft->data && ckpt_reader_tensor(r, i, &ti) == CKPT_OK) {
            size_t idx;
            FZ_CHECK(ckpt_reader_find(r, ti.name, &idx) == CKPT_OK && idx <= i,
                     "tensor '%s' not found by name", ti.name);
            ft->name = strdup(ti.name);
            ft->kind = ti.kind, ft->dtype = ti.dtype, ft->ndim = ti.ndim;
            memcpy(ft->shape, ti.shape, sizeof ft->shape);
            ft->data = buf;
            ft->n = n;
            buf = NULL;
        }
        free(buf);
    }
    fz_rc(ckpt_reader_tensor(r, cnt, &(ckpt_tensor_info){0}), "ckpt_reader_tensor (past end)");
}

static int view_budget(void *ctx)
{
    return --*(long *)ctx < 0;
}

/* Steps through a query of the store's own connection, bounded in rows.
 * A query that has not ended after a budget of VM steps is a finding: the
 * views' recursions (v_lineage, v_head_ancestry) once used UNION ALL and
 * never ended on a store with a parent cycle (fixed by schema migration 3). */
static void query_view(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return;
    long budget = 2000; /* x 1000 VM steps: ample for the views of a small store */
    sqlite3_progress_handler(db, 1000, view_budget, &budget);
    int rows = 0, r;
    while (rows < MAX_VIEW_ROWS && (r = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); c++)
            (void)sqlite3_column_text(st, c);
        rows++;
    }
    sqlite3_progress_handler(db, 0, NULL, NULL);
    FZ_CHECK(budget >= 0, "'%s' does not end", sql);
    sqlite3_finalize(st);
}

/* Saves a checkpoint on run derived from ft (the first tensor of its head):
 * the same bytes under a new name (a dedup hit on a stored chunk), and the
 * bytes with one byte changed under the same name (a delta against the
 * head's chunk). What commits must read back exactly. */
static void write_derived(ckpt_store *s, const char *run, const ckpt_checkpoint_info *head,
                          first_tensor *ft)
{
    ckpt_writer *w;
    int rc = fz_rc(ckpt_writer_begin(&w, s, run, next(head->epoch), next(head->step)),
                   "ckpt_writer_begin");
    if (rc)
        return;
    uint8_t *mod = malloc(ft->n ? ft->n : 1);
    memcpy(mod, ft->data, ft->n);
    if (ft->n)
        mod[ft->n / 2] ^= 0x5a;
    const char *copy = "fz.copy";
    rc = fz_rc(ckpt_writer_put(w, ft->name, ft->kind, ft->dtype, ft->ndim, ft->shape, mod, ft->n),
               "ckpt_writer_put (derived)");
    if (!rc && strcmp(ft->name, copy) != 0)
        rc = fz_rc(ckpt_writer_put(w, copy, ft->kind, ft->dtype, ft->ndim, ft->shape, ft->data,
                                   ft->n),
                   "ckpt_writer_put (copy)");
    if (rc) {
        ckpt_writer_abort(w);
        free(mod);
        return;
    }
    int64_t id = 0;
    rc = fz_rc(ckpt_writer_commit(w, &id), "ckpt_writer_commit");
    if (rc == CKPT_OK) {
        ckpt_reader *r;
        rc = fz_rc(ckpt_reader_open_id(&r, s, id), "ckpt_reader_open_id (just written)");
        if (rc == CKPT_OK) {
            size_t i;
            FZ_CHECK(ckpt_reader_find(r, ft->name, &i) == CKPT_OK, "written tensor '%s' missing",
                     ft->name);
            uint8_t *back = malloc(ft->n ? ft->n : 1);
            rc = fz_rc(ckpt_reader_read(r, i, 0, back, ft->n), "reading back a written tensor");
            /* Chunks are checked against their hashes, and a chunk stored
             * by another process may be damaged: a read may fail, but
             * bytes handed out must be the ones written. */
            FZ_CHECK(rc != CKPT_OK || memcmp(back, mod, ft->n) == 0,
                     "tensor '%s' reads back different bytes than were written", ft->name);
            free(back);
            ckpt_reader_close(r);
        }
        fz_rc(ckpt_rollback(s, run, head->id), "ckpt_rollback");
    }
    free(mod);
}

/* Read-only: everything that reads. Read-write: the reads a save needs,
 * then writes (reading everything twice would halve the executions). */
static void exercise_open(ckpt_store *s, int rw)
{
    fz_rc(ckpt_set_param(s, CKPT_PARAM_THREADS, 1), "ckpt_set_param(threads)");
    int rc;
    if (!rw) {
        uint64_t reported = 0, damaged = 0;
        rc = fz_rc(ckpt_verify(s, NULL, CKPT_HEAD, verify_cb, &reported, &damaged), "ckpt_verify");
        FZ_CHECK(reported == damaged, "verify reported %" PRIu64 " problems but counted %" PRIu64,
                 reported, damaged);
        FZ_CHECK(rc != CKPT_OK || damaged == 0, "verify says OK with %" PRIu64 " damaged", damaged);
        /* ECORRUPT with nothing counted is fine: SQLite itself may find the
         * file malformed while verify lists the checkpoints. */
    }

    sqlite3 *db = ckpt_store_db(s);
    FZ_CHECK(db != NULL, "open store without a database handle");
    char *runs[MAX_RUNS];
    int nruns = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT name FROM runs ORDER BY id LIMIT 8", -1, &st, NULL) ==
        SQLITE_OK) {
        while (nruns < MAX_RUNS && sqlite3_step(st) == SQLITE_ROW) {
            const char *n = (const char *)sqlite3_column_text(st, 0);
            if (n)
                runs[nruns++] = strdup(n);
        }
        sqlite3_finalize(st);
    }
    int wrote = 0;
    for (int k = 0; k < nruns; k++) {
        const char *run = runs[k];
        ckpt_checkpoint_info head, e0;
        if (!rw) {
            const char *status = NULL;
            char *config = NULL;
            if (fz_rc(ckpt_run_status(s, run, &status), "ckpt_run_status") == CKPT_OK)
                FZ_CHECK(status && status[0], "empty run status");
            if (fz_rc(ckpt_run_config(s, run, &config), "ckpt_run_config") == CKPT_OK && config) {
                /* A stored config is whatever the file says: flattening it
                 * must just succeed or fail cleanly. */
                fz_rc(ckpt_config_flatten(config, strlen(config), NULL, NULL),
                      "flattening a stored config");
            }
            ckpt_free(config);
            fz_rc(ckpt_checkpoint_find(s, run, 0, &e0), "ckpt_checkpoint_find(0)");
        } else if (wrote) {
            break;
        }
        rc = fz_rc(ckpt_head(s, run, &head), "ckpt_head");
        if (rc != CKPT_OK)
            continue;
        ckpt_reader *r;
        first_tensor ft = {0};
        if (fz_rc(ckpt_reader_open(&r, s, run, CKPT_HEAD), "ckpt_reader_open(head)") == CKPT_OK) {
            FZ_CHECK(ckpt_reader_checkpoint(r)->id == head.id, "reader opened another checkpoint "
                     "than the head");
            read_checkpoint(r, &ft);
            ckpt_reader_close(r);
        }
        if (rw && !wrote && ft.data) {
            fz_rc(ckpt_metric_log(s, run, "fz.metric", head.epoch, next(head.step), 0.5),
                  "ckpt_metric_log");
            fz_rc(ckpt_metrics_flush(s), "ckpt_metrics_flush");
            write_derived(s, run, &head, &ft);
            wrote = 1;
        }
        free(ft.name);
        free(ft.data);
    }
    for (int k = 0; k < nruns; k++)
        free(runs[k]);

    if (rw) {
        static const char cfg[] = "lr: 0.1\nlayers: [1, 2]\nopt: {name: adam}\n";
        fz_rc(ckpt_run_create(s, "fz-new", cfg, sizeof cfg - 1), "ckpt_run_create");
        return;
    }
    int64_t ids[MAX_CKPTS];
    int nids = 0;
    if (sqlite3_prepare_v2(db, "SELECT id FROM checkpoints ORDER BY id LIMIT 16", -1, &st, NULL) ==
        SQLITE_OK) {
        while (nids < MAX_CKPTS && sqlite3_step(st) == SQLITE_ROW)
            ids[nids++] = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    for (int k = 0; k < nids; k++) {
        ckpt_reader *r;
        if (fz_rc(ckpt_reader_open_id(&r, s, ids[k]), "ckpt_reader_open_id") == CKPT_OK) {
            read_checkpoint(r, NULL);
            ckpt_reader_close(r);
        }
    }
    /* The documented views, as people and the CLI query them. */
    static const char *const views[] = {
        "SELECT * FROM v_runs",    "SELECT * FROM v_checkpoints", "SELECT * FROM v_metrics",
        "SELECT * FROM v_metrics_all", "SELECT * FROM v_params",  "SELECT * FROM v_tensors",
    };
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        query_view(db, views[i]);
}

void fz_exercise_store(const char *path)
{
    static const int flags[2] = {CKPT_OPEN_READONLY, CKPT_OPEN_NOCREATE};
    for (int k = 0; k < 2; k++) {
        ckpt_open_opts o = {flags[k], 2000, CKPT_DURABLE_OFF};
        ckpt_store *s = NULL;
        int rc = fz_rc(ckpt_open(&s, path, &o), "ckpt_open");
        FZ_CHECK((rc == CKPT_OK) == (s != NULL), "ckpt_open returned %d with store %p", rc, (void *)s);
        if (rc != CKPT_OK)
            continue;
        exercise_open(s, k == 1);
        fz_rc(ckpt_close(s), "ckpt_close");
    }
}

/* ---------------------------------------------------------------- template */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void must(int rc, const char *what)
{
    if (rc != CKPT_OK) {
        fprintf(stderr, "building the template store: %s: %s\n", what, ckpt_errmsg());
        abort();
    }
}

static void put(ckpt_writer *w, const char *name, int kind, int dtype, int ndim,
                const int64_t *shape, const void *data)
{
    size_t n = ckpt_dtype_size(dtype);
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    must(ckpt_writer_put(w, name, kind, dtype, ndim, shape, data, n), name);
}

/* Smooth float weights: compressible planes, like real ones. */
static void weights(float *w, size_t n, uint64_t seed, int changes)
{
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++)
        w[i] = (float)((int)(splitmix(&x) % 2001) - 1000) / 4096.0f;
    x = 99;
    for (int c = 0; c < changes; c++)
        w[splitmix(&x) % n] += 1.0f;
}

static void set_fixed_store_id(const char *path)
{
    /* A fixed store id makes the template's files interchangeable between
     * processes: a fuzzed main file is opened beside the chunk file of the
     * template this process built, and the other way round. */
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(db,
                     "UPDATE meta SET value = 'f022f022f022f022f022f022f022f022'"
                     " WHERE key = 'store_id'",
                     NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "template %s: %s\n", path, sqlite3_errmsg(db));
        abort();
    }
    sqlite3_close(db);
}

void fz_make_template_store(const char *path, int compact)
{
    fz_remove_store(path);
    ckpt_store *s;
    ckpt_open_opts o = {0, 2000, CKPT_DURABLE_OFF};
    must(ckpt_open(&s, path, &o), "open");
    must(ckpt_set_param(s, CKPT_PARAM_THREADS, 1), "threads");
    /* Multi-chunk tensors without MiBs of data: a chunk size below the
     * public minimum (1 MiB), set behind the API's back. Chunks then hold
     * one short hash leaf each; reading and verifying work the same. */
    s->chunk_size = 4096;
    static const char cfg[] = "model:\n  layers: [784, 32, 10]\n  act: relu\n"
                              "optimizer: {name: sgd, lr: 0.05, momentum: .9}\n"
                              "seed: 42\nnotes: null\nflags: [true, \"x\"]\n";
    must(ckpt_run_create(s, "alpha", cfg, sizeof cfg - 1), "run alpha");
    must(ckpt_run_create(s, "beta", NULL, 0), "run beta");

    /* 16 KiB + 64 bytes of f32 weights: five chunks at 4 KiB, the last short. */
    size_t nw = 4096 + 16;
    float *w = malloc(nw * 4);
    float bias[32];
    uint16_t half[16];
    int64_t step = 0;
    uint8_t mask[10], rng[32];
    uint64_t x = 7;
    for (int i = 0; i < 32; i++)
        bias[i] = (float)i / 8.0f - 2.0f;
    for (int i = 0; i < 16; i++)
        half[i] = (uint16_t)(0x3c00 + i * 17);
    for (int i = 0; i < 10; i++)
        mask[i] = (uint8_t)(i & 1);
    for (int i = 0; i < 32; i++)
        rng[i] = (uint8_t)splitmix(&x);
    const int64_t sw[2] = {(int64_t)nw / 16, 16}, sb[1] = {32}, sh[2] = {4, 4}, sm[1] = {10},
                  sr[1] = {32}, se[2] = {0, 3};
    int64_t c0 = 0;
    for (int e = 0; e < 3; e++) {
        ckpt_writer *wr;
        step = 10 * (e + 1);
        must(ckpt_writer_begin(&wr, s, "alpha", e, step), "begin alpha");
        weights(w, nw, 1, e * 3); /* few changes per epoch: delta chunks */
        bias[e] += 0.5f;
        put(wr, "w", CKPT_KIND_MODEL, CKPT_F32, 2, sw, w);
        put(wr, "b", CKPT_KIND_MODEL, CKPT_F32, 1, sb, bias);
        put(wr, "b.copy", CKPT_KIND_OPTIMIZER, CKPT_F32, 1, sb, bias); /* dedup within a save */
        put(wr, "half", CKPT_KIND_MODEL, CKPT_F16, 2, sh, half);
        put(wr, "step", CKPT_KIND_STATE, CKPT_I64, 0, NULL, &step);
        put(wr, "mask", CKPT_KIND_EXTRA, CKPT_BOOL, 1, sm, mask);
        put(wr, "rng", CKPT_KIND_RNG, CKPT_U8, 1, sr, rng);
        put(wr, "empty", CKPT_KIND_MODEL, CKPT_F64, 2, se, NULL);

        for (int k = 1; k <= 4; k++)
            must(ckpt_metric_log(s, "alpha", "loss", e, step - 4 + k, 1.0 / (step + k)), "metric");
        must(ckpt_writer_commit(wr, e == 0 ? &c0 : NULL), "commit alpha");
    }
    /* A rollback to epoch 0 and a new line from there: branches. */
    must(ckpt_rollback(s, "alpha", c0), "rollback");
    ckpt_writer *wr;
    must(ckpt_writer_begin(&wr, s, "alpha", 1, 15), "begin alpha 1b");
    weights(w, nw, 1, 5);
    put(wr, "w", CKPT_KIND_MODEL, CKPT_F32, 2, sw, w);
    put(wr, "b", CKPT_KIND_MODEL, CKPT_F32, 1, sb, bias);
    must(ckpt_metric_log(s, "alpha", "loss", 1, 15, 0.25), "metric");
    must(ckpt_metric_log(s, "alpha", "acc", 1, 15, 0.75), "metric");
    must(ckpt_writer_commit(wr, NULL), "commit alpha 1b");

    int32_t i32[6] = {-1, 0, 1, INT32_MAX, INT32_MIN, 7};
    int16_t i16[3] = {-2, 300, 5};
    int8_t i8[4] = {-128, 127, 0, 1};
    double f64[3] = {1.5, -0.0, 1e300};
    uint16_t bf[2] = {0x3f80, 0xc000};
    const int64_t s6[1] = {6}, s3[1] = {3}, s4[1] = {4}, s2[1] = {2};
    must(ckpt_writer_begin(&wr, s, "beta", 0, 0), "begin beta");
    put(wr, "i32", CKPT_KIND_MODEL, CKPT_I32, 1, s6, i32);
    put(wr, "i16", CKPT_KIND_MODEL, CKPT_I16, 1, s3, i16);
    put(wr, "i8", CKPT_KIND_MODEL, CKPT_I8, 1, s4, i8);
    put(wr, "f64", CKPT_KIND_MODEL, CKPT_F64, 1, s3, f64);
    put(wr, "bf16", CKPT_KIND_MODEL, CKPT_BF16, 1, s2, bf);
    must(ckpt_writer_commit(wr, NULL), "commit beta");
    must(ckpt_run_finish(s, "beta"), "finish beta");
    must(ckpt_close(s), "close");
    free(w);

    char cpath[1100];
    snprintf(cpath, sizeof cpath, "%s-chunks", path);
    set_fixed_store_id(path);
    set_fixed_store_id(cpath);
    if (compact) {
        /* Small pages keep a whole store a few dozen KiB: a fuzz input. */
        sqlite3 *db;
        if (sqlite3_open_v2(cpath, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
            sqlite3_exec(db, "PRAGMA page_size=1024; VACUUM", NULL, NULL, NULL) != SQLITE_OK) {
            fprintf(stderr, "template %s: %s\n", cpath, sqlite3_errmsg(db));
            abort();
        }
        sqlite3_close(db);
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
            sqlite3_exec(db, "PRAGMA journal_mode=DELETE; PRAGMA page_size=1024; VACUUM", NULL,
                         NULL, NULL) != SQLITE_OK) {
            fprintf(stderr, "template %s: %s\n", path, sqlite3_errmsg(db));
            abort();
        }
        sqlite3_close(db);
    }
}
