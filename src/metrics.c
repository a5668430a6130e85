/*
 * metrics.c - buffered metric logging. Values are kept in memory and
 * written in one transaction per batch (the main database is in WAL mode,
 * so people watching with sqlite3 are never blocked); a value logged again
 * for the same run, branch, name and step replaces the old one.
 */
#include <string.h>

#include "error.h"
#include "store.h"

#define MAX_BUFFERED 8192

void ckpt__metrics_clear(ckpt_store *s)
{
    for (size_t i = 0; i < s->mlen; i++)
        ckpt__free(s->mbuf[i].name);
    s->mlen = 0;
    s->moldest = 0;
}

void ckpt__metrics_free(ckpt_store *s)
{
    ckpt__metrics_clear(s);
    ckpt__free(s->mbuf);
    s->mbuf = NULL;
    s->mcap = 0;
    ckpt__free(s->mrun);
    s->mrun = NULL;
}

/* Writes the buffer inside the caller's transaction on s->db. */
int ckpt__metrics_write(ckpt_store *s)
{
    if (!s->mlen)
        return CKPT_OK;
    sqlite3_stmt *st;
    int rc = ckpt__prepare(s->db,
                           "INSERT OR REPLACE INTO metrics(run_id, branch_id, name, step, epoch,"
                           " value, time) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           &st);
    if (rc)
        return rc;
    for (size_t i = 0; i < s->mlen; i++) {
        const ckpt__metric *m = &s->mbuf[i];
        sqlite3_bind_int64(st, 1, m->run_id);
        sqlite3_bind_int64(st, 2, m->branch_id);
        sqlite3_bind_text(st, 3, m->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, m->step);
        sqlite3_bind_int64(st, 5, m->epoch);
        if (m->value != m->value)
            sqlite3_bind_null(st, 6); /* SQLite stores NaN as NULL anyway */
        else
            sqlite3_bind_double(st, 6, m->value);
        sqlite3_bind_double(st, 7, m->time);
        int r = sqlite3_step(st);
        sqlite3_reset(st);
        if (r != SQLITE_DONE) {
            rc = ckpt__sqlerr(s->db, r, "writing metrics");
            break;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int ckpt_metrics_flush(ckpt_store *s)
{
    if (!s->mlen)
        return CKPT_OK;
    int rc = ckpt__writable(s, "writing metrics");
    if (rc)
        return rc;
    rc = ckpt__begin(s->db, "writing metrics");
    if (rc == CKPT_OK && (rc = ckpt__metrics_write(s)) != CKPT_OK)
        ckpt__rollback(s->db);
    if (rc == CKPT_OK)
        rc = ckpt__commit(s->db, "writing metrics");
    if (rc == CKPT_OK)
        ckpt__metrics_clear(s);
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
    if (epoch < 0 || step < 0)
        return ckpt__err(CKPT_EINVAL, "metric '%s': epoch %lld and step %lld must be >= 0", name,
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
    ckpt__metric *m = &s->mbuf[s->mlen];
    m->name = ckpt__strdup(name);
    if (!m->name)
        return ckpt__err(CKPT_ENOMEM, "out of memory buffering metric '%s'", name);
    m->run_id = s->mrun_id;
    m->branch_id = s->mrun_branch;
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
