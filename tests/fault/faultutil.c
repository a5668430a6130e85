/* faultutil.c - see faultutil.h. */
#include "faultutil.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static void fill_random(void *buf, size_t n, uint64_t seed)
{
    unsigned char *b = buf;
    uint64_t x = seed;
    for (size_t i = 0; i < n; i += 8) {
        x += 0x9e3779b97f4a7c15ULL;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(b + i, &z, k);
    }
}

static void set(fu_tensor *t, const char *name, int kind, int dtype, int ndim, const int64_t *shape)
{
    t->name = name;
    t->kind = kind;
    t->dtype = dtype;
    t->ndim = ndim;
    size_t n = ckpt_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    t->nbytes = n;
    t->data = malloc(n ? n : 1);
    if (!t->data)
        abort();
}

static void model(int64_t e, fu_tensor t[FU_NTENSORS], int size)
{
    int64_t big = size == FU_SMALL ? 20000 : size == FU_MEDIUM ? 75000 : 280000;
    set(&t[0], "w.big", CKPT_KIND_MODEL, CKPT_F32, 2, (int64_t[]){big / 100, 100});
    fill_random(t[0].data, t[0].nbytes, 1);
    float *f = (float *)t[0].data;
    for (int64_t i = 7; i < big; i += 4096)
        f[i] = (float)(e * 1000 + i);

    set(&t[1], "w.smooth", CKPT_KIND_MODEL, CKPT_F32, 1, (int64_t[]){size == FU_SMALL ? 4000 : 20000});
    f = (float *)t[1].data;
    for (int64_t i = 0; i < t[1].shape[0]; i++)
        f[i] = sinf((float)i * 0.001f) * (float)(1 + e);

    set(&t[2], "opt.m", CKPT_KIND_OPTIMIZER, CKPT_F32, 1, (int64_t[]){3000});
    fill_random(t[2].data, t[2].nbytes, 100 + (uint64_t)e);

    set(&t[3], "rng", CKPT_KIND_RNG, CKPT_U8, 1, (int64_t[]){64});
    fill_random(t[3].data, t[3].nbytes, 7);

    set(&t[4], "step", CKPT_KIND_STATE, CKPT_I64, 0, NULL);
    int64_t step = e * 10;
    memcpy(t[4].data, &step, 8);

    set(&t[5], "empty", CKPT_KIND_EXTRA, CKPT_F32, 2, (int64_t[]){0, 3});
}

/* Models are generated once per (epoch, size): the checks compare against
 * them thousands of times. */
typedef struct cached {
    int64_t e;
    int size, used;
    fu_tensor t[FU_NTENSORS];
} cached;

static void model_free(fu_tensor t[FU_NTENSORS])
{
    for (int i = 0; i < FU_NTENSORS; i++) {
        free(t[i].data);
        t[i].data = NULL;
    }
}

const fu_tensor *fu_model(int64_t e, int size)
{
    static cached cache[32];
    static unsigned next;
    for (size_t i = 0; i < sizeof cache / sizeof cache[0]; i++)
        if (cache[i].used && cache[i].e == e && cache[i].size == size)
            return cache[i].t;
    cached *c = &cache[next++ % (sizeof cache / sizeof cache[0])];
    if (c->used)
        model_free(c->t);
    model(e, c->t, size);
    c->e = e;
    c->size = size;
    c->used = 1;
    return c->t;
}


int fu_open(ckpt_store **s, const char *path, int dur, int threads)
{
    ckpt_open_opts o = {0, 0, dur};
    int rc = ckpt_open(s, path, &o);
    if (rc)
        return rc;
    if ((rc = ckpt_set_param(*s, CKPT_PARAM_CHUNK_SIZE, 1 << 20)) ||
        (threads && (rc = ckpt_set_param(*s, CKPT_PARAM_THREADS, threads))) ||
        (rc = ckpt_set_param(*s, CKPT_PARAM_METRICS_FLUSH_MS, 3600000))) {
        ckpt_close(*s);
        *s = NULL;
    }
    return rc;
}

int fu_save_tensors(ckpt_store *s, const char *run, int64_t e, const fu_tensor t[FU_NTENSORS],
                    int64_t *id)
{
    ckpt_writer *w;
    int rc = ckpt_writer_begin(&w, s, run, e, e * 10);
    if (rc)
        return rc;
    for (int i = 0; i < FU_NTENSORS; i++) {
        rc = ckpt_writer_put(w, t[i].name, t[i].kind, t[i].dtype, t[i].ndim, t[i].shape,
                             t[i].data, t[i].nbytes);
        if (rc) {
            ckpt_writer_abort(w);
            return rc;
        }
    }
    return ckpt_writer_commit(w, id);
}

int fu_save(ckpt_store *s, const char *run, int64_t e, int size, int64_t *id)
{
    return fu_save_tensors(s, run, e, fu_model(e, size), id);
}

int fu_check(ckpt_store *s, const char *run, int64_t e, int size)
{
    ckpt_checkpoint_info ci;
    int rc = ckpt_checkpoint_find(s, run, e, &ci);
    if (rc == CKPT_ENOTFOUND || rc == CKPT_ENOCHECKPOINT)
        return 1;
    if (rc) {
        fprintf(stderr, "fu_check %s@%" PRId64 ": %s\n", run, e, ckpt_errmsg());
        return -1;
    }
    ckpt_reader *r;
    if ((rc = ckpt_reader_open_id(&r, s, ci.id))) {
        fprintf(stderr, "fu_check %s@%" PRId64 ": open: %s\n", run, e, ckpt_errmsg());
        return -1;
    }
    const fu_tensor *t = fu_model(e, size);
    int bad = 0;
    if (ckpt_reader_count(r) != FU_NTENSORS || ci.ntensors != FU_NTENSORS || ci.step != e * 10) {
        fprintf(stderr, "fu_check %s@%" PRId64 ": %zu tensors (row says %" PRId64 "), step %" PRId64
                        "\n", run, e, ckpt_reader_count(r), ci.ntensors, ci.step);
        bad = 1;
    }
    for (size_t i = 0; i < FU_NTENSORS && !bad; i++) {
        ckpt_tensor_info ti;
        size_t k;
        if (ckpt_reader_find(r, t[i].name, &k) || ckpt_reader_tensor(r, k, &ti)) {
            fprintf(stderr, "fu_check %s@%" PRId64 ": tensor %s: %s\n", run, e, t[i].name,
                    ckpt_errmsg());
            bad = 1;
            break;
        }
        if (ti.dtype != t[i].dtype || ti.ndim != t[i].ndim || ti.nbytes != t[i].nbytes ||
            memcmp(ti.shape, t[i].shape, sizeof(int64_t) * (size_t)t[i].ndim) != 0) {
            fprintf(stderr, "fu_check %s@%" PRId64 ": tensor %s: dtype/shape/size differ\n", run, e,
                    t[i].name);
            bad = 1;
            break;
        }
        unsigned char *buf = malloc(t[i].nbytes ? t[i].nbytes : 1);
        if (!buf)
            abort();
        rc = ckpt_reader_read(r, k, 0, buf, t[i].nbytes);
        if (rc || memcmp(buf, t[i].data, t[i].nbytes) != 0) {
            fprintf(stderr, "fu_check %s@%" PRId64 ": tensor %s: %s\n", run, e, t[i].name,
                    rc ? ckpt_errmsg() : "bytes differ");
            bad = 1;
        }
        free(buf);
    }
    ckpt_reader_close(r);
    return bad ? -1 : 0;
}

static void verify_cb(void *ctx, const char *run, int64_t epoch, int64_t step, const char *tensor,
                      const char *problem)
{
    (void)ctx;
    fprintf(stderr, "verify: run %s epoch %" PRId64 " step %" PRId64 " tensor %s: %s\n",
            run ? run : "-", epoch, step, tensor ? tensor : "-", problem);
}

int64_t fu_sql_int(ckpt_store *s, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(ckpt_store_db(s), sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "fu_sql_int: %s: %s\n", sql, sqlite3_errmsg(ckpt_store_db(s)));
        return -1;
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int fu_verify(ckpt_store *s)
{
    uint64_t bad = 0;
    int rc = ckpt_verify(s, NULL, CKPT_HEAD, verify_cb, NULL, &bad);
    if (rc != CKPT_OK || bad) {
        fprintf(stderr, "fu_verify: %s (%llu problems)\n", ckpt_errmsg(), (unsigned long long)bad);
        return -1;
    }
    /* Nothing partial: every checkpoint row has exactly its tensors, no
     * tensor row without its checkpoint, every head exists. */
    int64_t partial = fu_sql_int(
        s, "SELECT count(*) FROM checkpoints c WHERE c.ntensors !="
           " (SELECT count(*) FROM tensors t WHERE t.checkpoint_id = c.id)");
    int64_t orphans = fu_sql_int(
        s, "SELECT count(*) FROM tensors WHERE checkpoint_id NOT IN (SELECT id FROM checkpoints)");
    int64_t heads = fu_sql_int(s, "SELECT count(*) FROM runs WHERE head_id IS NOT NULL AND"
                                  " head_id NOT IN (SELECT id FROM checkpoints)");
    int64_t branches = fu_sql_int(s, "SELECT count(*) FROM runs WHERE branch_id IS NULL OR"
                                     " branch_id NOT IN (SELECT id FROM branches WHERE run_id = runs.id)");
    if (partial || orphans || heads || branches) {
        fprintf(stderr,
                "fu_verify: %" PRId64 " partial checkpoints, %" PRId64 " orphan tensors, %" PRId64
                " dangling heads, %" PRId64 " runs with a bad branch\n",
                partial, orphans, heads, branches);
        return -1;
    }
    return 0;
}

static const char *st_dtype(int d)
{
    switch (d) {
    case CKPT_F32: return "F32";
    case CKPT_U8: return "U8";
    case CKPT_I64: return "I64";
    default: return NULL;
    }
}

int fu_write_safetensors(const char *path, int64_t e, int size)
{
    const fu_tensor *t = fu_model(e, size);
    char hdr[4096];
    size_t n = 0, off = 0;
    n += (size_t)snprintf(hdr + n, sizeof hdr - n, "{\"__metadata__\":{\"format\":\"pt\"");
    for (int i = 0; i < FU_NTENSORS; i++)
        n += (size_t)snprintf(hdr + n, sizeof hdr - n, ",\"ckpt.kind.%s\":\"%s\"", t[i].name,
                              ckpt_kind_name(t[i].kind));
    n += (size_t)snprintf(hdr + n, sizeof hdr - n, "}");
    for (int i = 0; i < FU_NTENSORS; i++) {
        n += (size_t)snprintf(hdr + n, sizeof hdr - n, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                              t[i].name, st_dtype(t[i].dtype));
        for (int d = 0; d < t[i].ndim; d++)
            n += (size_t)snprintf(hdr + n, sizeof hdr - n, "%s%" PRId64, d ? "," : "", t[i].shape[d]);
        n += (size_t)snprintf(hdr + n, sizeof hdr - n, "],\"data_offsets\":[%zu,%zu]}", off,
                              off + t[i].nbytes);
        off += t[i].nbytes;
    }
    n += (size_t)snprintf(hdr + n, sizeof hdr - n, "}");
    while (n % 8)
        hdr[n++] = ' ';
    FILE *f = fopen(path, "wb");
    int ok = f != NULL;
    unsigned char len[8];
    for (int k = 0; k < 8; k++)
        len[k] = (unsigned char)((uint64_t)n >> (8 * k));
    ok = ok && fwrite(len, 1, 8, f) == 8 && fwrite(hdr, 1, n, f) == n;
    for (int i = 0; i < FU_NTENSORS && ok; i++)
        ok = fwrite(t[i].data, 1, t[i].nbytes, f) == t[i].nbytes;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static int copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb");
    if (!in)
        return -1;
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[1 << 16];
    size_t n;
    int ok = 1;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            ok = 0;
    if (ferror(in))
        ok = 0;
    fclose(in);
    if (fclose(out) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

int fu_copy_store(const char *src, const char *dst)
{
    static const char *const side[] = {"-wal", "-shm", "-journal", "-chunks-journal"};
    char a[1024], b[1024];
    for (size_t i = 0; i < sizeof side / sizeof side[0]; i++) {
        snprintf(b, sizeof b, "%s%s", dst, side[i]);
        if (unlink(b) != 0 && errno != ENOENT)
            return -1;
        snprintf(a, sizeof a, "%s%s", src, side[i]);
        if (i >= 2 && access(a, F_OK) == 0)
            return -1; /* a hot journal: the template was not closed */
    }
    snprintf(a, sizeof a, "%s-chunks", src);
    snprintf(b, sizeof b, "%s-chunks", dst);
    if (copy_file(src, dst) || copy_file(a, b))
        return -1;
    /* ckpt_close checkpoints passively and keeps the WAL: it is part of
     * the store (the -shm index is rebuilt from it). */
    snprintf(a, sizeof a, "%s-wal", src);
    snprintf(b, sizeof b, "%s-wal", dst);
    return access(a, F_OK) == 0 && copy_file(a, b) ? -1 : 0;
}

long fu_env_long(const char *name, long def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n <= 0) {
        fprintf(stderr, "ignoring %s=%s (not a positive number)\n", name, v);
        return def;
    }
    return n;
}

const char *fu_tmpdir(void)
{
    static char dir[512];
    const char *base = getenv("CKPT_FAULT_TMP");
    if ((!base || !*base) && access("/dev/shm", W_OK) == 0)
        base = "/dev/shm";
    if (!base || !*base)
        return tu_tmpdir();
    snprintf(dir, sizeof dir, "%s/ckpt-fault-%d-XXXXXX", base, (int)getpid());
    if (!mkdtemp(dir))
        return tu_tmpdir();
    return dir;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void fu_rmtree(const char *dir)
{
    if (dir && *dir && !getenv("CKPT_KEEP"))
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
