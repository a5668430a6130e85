/*
 * metrics.c - buffered metric logging. Values are kept in memory and
 * written in one transaction per batch (the main database is in WAL mode,
 * so people watching with sqlite3 are never blocked); a value logged again
 * for the same run, branch, name and step replaces the old one. A series
 * (run, branch, name) is interned once per handle; a buffered value is its
 * series index and four numbers, stored under the integer key
 * series_id * 2^40 + step (see schema/main/0001_init.sql).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "store.h"

#define MAX_BUFFERED 65536

void ckpt__metrics_clear(ckpt_store *s)
{
    s->mlen = 0;
    s->moldest = 0;
}

void ckpt__metrics_free(ckpt_store *s)
{
    ckpt__metrics_clear(s);
    ckpt__free(s->mbuf);
    s->mbuf = NULL;
    s->mcap = 0;
    for (size_t i = 0; i < s->nseries; i++)
        ckpt__free(s->series[i].name);
    ckpt__free(s->series);
    ckpt__free(s->series_index);
    s->series = NULL;
    s->series_index = NULL;
    s->nseries = s->cap_series = s->series_index_cap = 0;
    ckpt__free(s->mrun);
    s->mrun = NULL;
}

static uint64_t hash_series(int64_t run, int64_t branch, const char *p)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)run * 0x9e3779b97f4a7c15ULL;
    h = (h ^ (uint64_t)branch) * 1099511628211ULL;
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL; /* FNV-1a */
    return h;
}

static int index_series(ckpt_store *s, size_t cap)
{
    uint32_t *ix = ckpt__calloc(cap, sizeof *ix);
    if (!ix)
        return ckpt__err(CKPT_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->nseries; i++) {
        const ckpt__mseries *x = &s->series[i];
        size_t j = hash_series(x->run_id, x->branch_id, x->name) & (cap - 1);
        while (ix[j])
            j = (j + 1) & (cap - 1);
        ix[j] = (uint32_t)i + 1;
    }
    ckpt__free(s->series_index);
    s->series_index = ix;
    s->series_index_cap = cap;
    return CKPT_OK;
}

/* Index of (run, branch, name) in s->series, adding it if new. */
static int intern(ckpt_store *s, int64_t run, int64_t branch, const char *name, uint32_t *out)
{
    int rc;
    if ((s->nseries + 1) * 2 > s->series_index_cap &&
        (rc = index_series(s, s->series_index_cap ? 2 * s->series_index_cap : 64)))
        return rc;
    size_t mask = s->series_index_cap - 1;
    size_t j = hash_series(run, branch, name) & mask;
    while (s->series_index[j]) {
        uint32_t k = s->series_index[j] - 1;
        const ckpt__mseries *x = &s->series[k];
        if (x->run_id == run && x->branch_id == branch && strcmp(x->name, name) == 0) {
            *out = k;
            return CKPT_OK;
        }
        j = (j + 1) & mask;
    }
    if (s->nseries == s->cap_series) {
        size_t nc = s->cap_series ? 2 * s->cap_series : 16;
        ckpt__mseries *n = ckpt__realloc(s->series, nc * sizeof *n);
        if (!n)
            return ckpt__err(CKPT_ENOMEM, "out of memory");
        s->series = n;
        s->cap_series = nc;
    }
    char *copy = ckpt__strdup(name);
    if (!copy)
        return ckpt__err(CKPT_ENOMEM, "out of memory");
    s->series[s->nseries] = (ckpt__mseries){run, branch, copy, 0};
    s->series_index[j] = (uint32_t)s->nseries + 1;
    *out = (uint32_t)s->nseries++;
    return CKPT_OK;
}

/* Gives every new series its metric_series id, inside the caller's
 * transaction; *first_new tells ckpt__metrics_forget_ids what to undo if
 * that transaction does not commit. */
static int assign_ids(ckpt_store *s, size_t *first_new)
{
    sqlite3_stmt *ins = NULL, *sel = NULL;
    int rc = CKPT_OK;
    for (size_t i = 0; i < s->nseries && rc == CKPT_OK; i++) {
        ckpt__mseries *x = &s->series[i];
        if (x->id)
            continue;
        if (!ins && ((rc = ckpt__prepare(s->db,
                                         "INSERT OR IGNORE INTO metric_series(run_id, branch_id, name)"
                                         " VALUES (?1, ?2, ?3)",
                                         &ins)) ||
                     (rc = ckpt__prepare(s->db,
                                         "SELECT id FROM metric_series WHERE run_id = ?1"
                                         " AND branch_id = ?2 AND name = ?3",
                                         &sel))))
            break;
        for (int k = 0; k < 2; k++) {
            sqlite3_stmt *st = k ? sel : ins;
            sqlite3_bind_int64(st, 1, x->run_id);
            sqlite3_bind_int64(st, 2, x->branch_id);
            sqlite3_bind_text(st, 3, x->name, -1, SQLITE_STATIC);
        }
        int r = sqlite3_step(ins);
        sqlite3_reset(ins);
        if (r != SQLITE_DONE) {
            rc = ckpt__sqlerr(s->db, r, "writing metric series");
            break;
        }
        r = sqlite3_step(sel);
        if (r == SQLITE_ROW) {
            x->id = sqlite3_column_int64(sel, 0);
            if (i < *first_new)
                *first_new = i;
            if (x->id <= 0 || x->id >= ((int64_t)1 << (63 - CKPT__STEP_BITS)))
                rc = ckpt__err(CKPT_ECORRUPT, "metric series id %lld out of range", (long long)x->id);
        } else {
            rc = ckpt__sqlerr(s->db, r, "reading metric series");
        }
        sqlite3_reset(sel);
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(sel);
    return rc;
}

void ckpt__metrics_forget_ids(ckpt_store *s, size_t first_new)
{
    for (size_t i = first_new; i < s->nseries; i++)
        s->series[i].id = 0;
}

static _Thread_local const ckpt__mseries *sort_series;

static int cmp_metric(const void *pa, const void *pb)
{
    const ckpt__metric *a = pa, *b = pb;
    int64_t ka = sort_series[a->series].id, kb = sort_series[b->series].id;
    if (ka != kb)
        return ka < kb ? -1 : 1;
    if (a->step != b->step)
        return a->step < b->step ? -1 : 1;
    return a->seq < b->seq ? -1 : (a->seq > b->seq); /* the last logged wins */
}

/* Writes the buffer inside the caller's transaction on s->db. */
int ckpt__metrics_write(ckpt_store *s, size_t *first_new)
{
    *first_new = s->nseries;
    if (!s->mlen)
        return CKPT_OK;
    int rc = assign_ids(s, first_new);
    if (rc)
        return rc;
    /* Key order: each insert lands next to the previous one. */
    for (size_t i = 0; i < s->mlen; i++)
        s->mbuf[i].seq = (uint32_t)i;
    sort_series = s->series;
    qsort(s->mbuf, s->mlen, sizeof *s->mbuf, cmp_metric);
    /* Many rows per statement: the per-statement work of the VDBE
     * (transaction checks, cursor open/close) is paid once per batch. */
    enum { ROWS = 64 };
    char sql[64 + ROWS * 18];
    size_t n = (size_t)snprintf(sql, sizeof sql,
                                "INSERT OR REPLACE INTO metric_values(key, epoch, value, time) VALUES ");
    for (int r = 0; r < ROWS; r++)
        n += (size_t)snprintf(sql + n, sizeof sql - n, "%s(?,?,?,?)", r ? "," : "");
    sqlite3_stmt *many = NULL, *one = NULL;
    if ((rc = ckpt__prepare(s->db, sql, &many)) ||
        (rc = ckpt__prepare(s->db,
                            "INSERT OR REPLACE INTO metric_values(key, epoch, value, time)"
                            " VALUES (?, ?, ?, ?)",
                            &one))) {
        sqlite3_finalize(many);
        return rc;
    }
    for (size_t i = 0; i < s->mlen && rc == CKPT_OK;) {
        int rows = s->mlen - i >= ROWS ? ROWS : 1;
        sqlite3_stmt *st = rows == ROWS ? many : one;
        for (int r = 0; r < rows; r++, i++) {
            const ckpt__metric *m = &s->mbuf[i];
            int p = 4 * r;
            sqlite3_bind_int64(st, p + 1, (s->series[m->series].id << CKPT__STEP_BITS) + m->step);
            sqlite3_bind_int64(st, p + 2, m->epoch);
            if (m->value != m->value)
                sqlite3_bind_null(st, p + 3); /* SQLite stores NaN as NULL anyway */
            else
                sqlite3_bind_double(st, p + 3, m->value);
            sqlite3_bind_double(st, p + 4, m->time);
        }
        int x = sqlite3_step(st);
        sqlite3_reset(st);
        if (x != SQLITE_DONE)
            rc = ckpt__sqlerr(s->db, x, "writing metrics");
    }
    sqlite3_finalize(many);
    sqlite3_finalize(one);
    return rc;
}

int ckpt_metrics_flush(ckpt_store *s)
{
    if (!s->mlen)
        return CKPT_OK;
    int rc = ckpt__writable(s, "writing metrics");
    if (rc)
        return rc;
    size_t first_new = s->nseries;
    rc = ckpt__begin(s->db, "writing metrics");
    if (rc == CKPT_OK && (rc = ckpt__metrics_write(s, &first_new)) != CKPT_OK)
        ckpt__rollback(s->db);
    if (rc == CKPT_OK)
        rc = ckpt__commit(s->db, "writing metrics");
    if (rc == CKPT_OK)
        ckpt__metrics_clear(s);
    else
        ckpt__metrics_forget_ids(s, first_new);
    return ckpt__poison(s, rc);
}

int ckpt_metric_log(ckpt_store *s, const char *run, const char *name, int64_t epoch, int64_t step,
                    double value)
{
    int rc;
    if ((rc = ckpt__writable(s, "logging a metric")))
        return rc;
    if ((rc = ckpt__check_name(name, "metric")))
        return ckpt__err_prefix(rc, "run '%s'", run ? run : "(null)");
    if (epoch < 0 || step < 0 || step >= ((int64_t)1 << CKPT__STEP_BITS))
        return ckpt__err(CKPT_EINVAL,
                         "metric '%s': epoch %lld must be >= 0 and step %lld in 0..2^40-1", name,
                         (long long)epoch, (long long)step);
    if (!run)
        return ckpt__err(CKPT_EINVAL, "metric '%s': run name is NULL", name);
    if (!s->mrun || strcmp(s->mrun, run) != 0) {
        int64_t id, branch;
        if ((rc = ckpt__run_id(s, run, &id, &branch)))
            return rc;
        char *copy = ckpt__strdup(run);
        if (!copy)
            return ckpt__err(CKPT_ENOMEM, "out of memory");
        ckpt__free(s->mrun);
        s->mrun = copy;
        s->mrun_id = id;
        s->mrun_branch = branch;
    }
    if (s->mlen == s->mcap) {
        size_t nc = s->mcap ? 2 * s->mcap : 256;
        ckpt__metric *b = ckpt__realloc(s->mbuf, nc * sizeof *b);
        if (!b)
            return ckpt__err(CKPT_ENOMEM, "out of memory buffering metric '%s'", name);
        s->mbuf = b;
        s->mcap = nc;
    }
    uint32_t si = 0;
    if ((rc = intern(s, s->mrun_id, s->mrun_branch, name, &si)))
        return rc;
    ckpt__metric *m = &s->mbuf[s->mlen];
    m->series = si;
    m->epoch = epoch;
    m->step = step;
    m->value = value;
    m->time = ckpt__now_s();
    if (!s->mlen)
        s->moldest = m->time;
    s->mlen++;
    if (s->mlen >= MAX_BUFFERED || (m->time - s->moldest) * 1000.0 >= (double)s->flush_ms)
        return ckpt_metrics_flush(s);
    return CKPT_OK;
}
