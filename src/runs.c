/*
 * runs.c - runs, their configs and params, heads, lineage and rollback,
 * run status with dead-writer detection, and checkpoint references.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "store.h"

/* ---------------------------------------------------------------- names */

static const char *const dtype_names[] = {NULL,  "f64", "f32", "f16", "bf16", "i64",
                                          "i32", "i16", "i8",  "u8",  "bool"};
static const size_t dtype_sizes[] = {0, 8, 4, 2, 2, 8, 4, 2, 1, 1, 1};
static const char *const kind_names[] = {NULL, "model", "optimizer", "rng", "state", "extra"};

const char *ckpt_dtype_name(int dtype)
{
    return (dtype >= CKPT_F64 && dtype <= CKPT_BOOL) ? dtype_names[dtype] : NULL;
}

size_t ckpt_dtype_size(int dtype)
{
    return (dtype >= CKPT_F64 && dtype <= CKPT_BOOL) ? dtype_sizes[dtype] : 0;
}

const char *ckpt_kind_name(int kind)
{
    return (kind >= CKPT_KIND_MODEL && kind <= CKPT_KIND_EXTRA) ? kind_names[kind] : NULL;
}

int ckpt_dtype_parse(const char *name)
{
    for (int i = CKPT_F64; name && i <= CKPT_BOOL; i++)
        if (strcmp(name, dtype_names[i]) == 0)
            return i;
    return ckpt__err(CKPT_EINVAL, "unknown dtype '%s'", name ? name : "(null)");
}

int ckpt_kind_parse(const char *name)
{
    for (int i = CKPT_KIND_MODEL; name && i <= CKPT_KIND_EXTRA; i++)
        if (strcmp(name, kind_names[i]) == 0)
            return i;
    return ckpt__err(CKPT_EINVAL, "unknown tensor kind '%s'", name ? name : "(null)");
}

/* ---------------------------------------------------------------- lookup */

int ckpt__run_id(ckpt_store *s, const char *run, int64_t *id, int64_t *branch)
{
    if (!run)
        return ckpt__err(CKPT_EINVAL, "run name is NULL");
    sqlite3_stmt *st;
    int rc = ckpt__prepare(s->db, "SELECT id, branch_id FROM runs WHERE name = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        if (branch)
            *branch = sqlite3_column_int64(st, 1);
        rc = CKPT_OK;
    } else if (r == SQLITE_DONE) {
        rc = ckpt__err(CKPT_ENOTFOUND, "no run named '%s' in %s", run, s->path);
    } else {
        rc = ckpt__sqlerr(s->db, r, "looking up a run");
    }
    sqlite3_finalize(st);
    return rc;
}

#define CKPT_COLS "id, epoch, step, coalesce(parent_id, 0), created_at, logical_bytes, stored_bytes, ntensors, run_id"

static void row_to_info(sqlite3_stmt *st, ckpt_checkpoint_info *out, int64_t *run_id)
{
    out->id = sqlite3_column_int64(st, 0);
    out->epoch = sqlite3_column_int64(st, 1);
    out->step = sqlite3_column_int64(st, 2);
    out->parent = sqlite3_column_int64(st, 3);
    out->created_us = sqlite3_column_int64(st, 4);
    out->logical_bytes = (uint64_t)sqlite3_column_int64(st, 5);
    out->stored_bytes = (uint64_t)sqlite3_column_int64(st, 6);
    out->ntensors = sqlite3_column_int64(st, 7);
    if (run_id)
        *run_id = sqlite3_column_int64(st, 8);
}

int ckpt__checkpoint_get(ckpt_store *s, int64_t id, ckpt_checkpoint_info *out, int64_t *run_id)
{
    sqlite3_stmt *st;
    int rc = ckpt__prepare(s->db, "SELECT " CKPT_COLS " FROM checkpoints WHERE id = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        row_to_info(st, out, run_id);
    } else if (r == SQLITE_DONE) {
        rc = ckpt__err(CKPT_ENOTFOUND, "no checkpoint with id %lld in %s", (long long)id,
                       s->path);
    } else {
        rc = ckpt__sqlerr(s->db, r, "reading a checkpoint");
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---------------------------------------------------------------- create */

struct param_ctx {
    sqlite3_stmt *st;
    sqlite3 *db;
};

static int insert_param(void *ctx, const char *key, const char *value, int type)
{
    static const char *const tn[] = {"?", "string", "int", "float", "bool", "null", "list"};
    struct param_ctx *p = ctx;
    sqlite3_reset(p->st);
    /* TRANSIENT binds copy and can fail for memory: unchecked, a param
     * would be stored with a NULL value (found by tests/fault). */
    int r = sqlite3_bind_text(p->st, 2, key, -1, SQLITE_TRANSIENT);
    if (r == SQLITE_OK)
        r = type == CKPT_PARAM_T_NULL ? sqlite3_bind_null(p->st, 3)
                                      : sqlite3_bind_text(p->st, 3, value, -1, SQLITE_TRANSIENT);
    if (r != SQLITE_OK)
        return ckpt__sqlerr(p->db, r, "storing config params");
    sqlite3_bind_text(p->st, 4, (type >= 1 && type <= 6) ? tn[type] : "?", -1, SQLITE_STATIC);
    r = sqlite3_step(p->st);
    return r == SQLITE_DONE ? CKPT_OK : ckpt__sqlerr(p->db, r, "storing config params");
}

int ckpt_run_create(ckpt_store *s, const char *run, const char *yaml, size_t len)
{
    int rc;
    if ((rc = ckpt__writable(s, "creating a run")) || (rc = ckpt__check_name(run, "run")))
        return rc;
    if (yaml && (rc = ckpt_config_flatten(yaml, len, NULL, NULL)) != CKPT_OK)
        return ckpt__err_prefix(rc, "run '%s'", run);
    if ((rc = ckpt__begin(s->db, "creating a run")))
        return rc;
    sqlite3_stmt *st = NULL;
    int64_t now = ckpt__now_us();
    rc = ckpt__prepare(s->db, "INSERT INTO runs(name, created_at, config) VALUES (?, ?, ?)", &st);
    if (rc)
        goto fail;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    if (yaml)
        sqlite3_bind_text(st, 3, yaml, (int)len, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    st = NULL;
    if (r == SQLITE_CONSTRAINT_UNIQUE) {
        rc = ckpt__err(CKPT_EEXISTS, "run '%s' already exists in %s", run, s->path);
        goto fail;
    }
    if (r != SQLITE_DONE) {
        rc = ckpt__sqlerr(s->db, r, "creating a run");
        goto fail;
    }
    int64_t run_id = sqlite3_last_insert_rowid(s->db);
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO branches(run_id, created_at) VALUES (%lld, %lld);"
             "UPDATE runs SET branch_id = last_insert_rowid() WHERE id = %lld",
             (long long)run_id, (long long)now, (long long)run_id);
    if ((rc = ckpt__exec(s->db, sql, "creating a run")))
        goto fail;
    if (yaml) {
        rc = ckpt__prepare(s->db,
                           "INSERT OR REPLACE INTO params(run_id, key, value, type) VALUES (?, ?, ?, ?)",
                           &st);
        if (rc)
            goto fail;
        sqlite3_bind_int64(st, 1, run_id);
        struct param_ctx pc = {st, s->db};
        rc = ckpt_config_flatten(yaml, len, insert_param, &pc);
        sqlite3_finalize(st);
        if (rc)
            goto fail;
    }
    return ckpt__poison(s, ckpt__commit(s->db, "creating a run"));
fail:
    ckpt__rollback(s->db);
    return ckpt__poison(s, rc);
}

int ckpt_run_create_file(ckpt_store *s, const char *run, const char *path)
{
    char *yaml = NULL;
    size_t len = 0;
    int rc = ckpt__config_read_file(path, &yaml, &len);
    if (rc)
        return rc;
    rc = ckpt_run_create(s, run, yaml, len);
    ckpt__free(yaml);
    return rc;
}

int ckpt_run_config(ckpt_store *s, const char *run, char **out)
{
    *out = NULL;
    sqlite3_stmt *st;
    int rc = ckpt__prepare(s->db, "SELECT config FROM runs WHERE name = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (t) {
            *out = ckpt__strndup(t, (size_t)sqlite3_column_bytes(st, 0));
            if (!*out)
                rc = ckpt__err(CKPT_ENOMEM, "out of memory reading the config of run '%s'", run);
        }
    } else if (r == SQLITE_DONE) {
        rc = ckpt__err(CKPT_ENOTFOUND, "no run named '%s' in %s", run, s->path);
    } else {
        rc = ckpt__sqlerr(s->db, r, "reading a run's config");
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---------------------------------------------------------------- heads */

int ckpt_head(ckpt_store *s, const char *run, ckpt_checkpoint_info *out)
{
    int64_t run_id;
    int rc = ckpt__run_id(s, run, &run_id, NULL);
    if (rc)
        return rc;
    sqlite3_stmt *st;
    if ((rc = ckpt__prepare(s->db,
                            "SELECT " CKPT_COLS " FROM checkpoints WHERE id = "
                            "(SELECT head_id FROM runs WHERE id = ?)",
                            &st)))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        row_to_info(st, out, NULL);
    else if (r == SQLITE_DONE)
        rc = ckpt__err(CKPT_ENOCHECKPOINT, "run '%s' has no checkpoint yet", run);
    else
        rc = ckpt__sqlerr(s->db, r, "reading a run's head");
    sqlite3_finalize(st);
    return rc;
}

/* anc(id): the head of run ?1 and its ancestors. UNION, not UNION ALL: a
 * damaged or hostile store may hold a parent_id cycle, which UNION ALL
 * would follow forever (found by tests/fuzz). */
#define LINE_CTE                                                                                   \
    "WITH RECURSIVE anc(id) AS (SELECT head_id FROM runs WHERE id = ?1 AND head_id IS NOT NULL"   \
    " UNION SELECT c.parent_id FROM anc JOIN checkpoints c ON c.id = anc.id"                      \
    " WHERE c.parent_id IS NOT NULL)"

int ckpt__line_has(ckpt_store *s, int64_t run_id, int64_t epoch, int64_t step)
{
    sqlite3_stmt *st;
    int rc = ckpt__prepare(s->db,
                           LINE_CTE " SELECT 1 FROM anc JOIN checkpoints c ON c.id = anc.id"
                                    " WHERE c.epoch = ?2 AND c.step = ?3",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, epoch);
    sqlite3_bind_int64(st, 3, step);
    int r = sqlite3_step(st);
    rc = r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : ckpt__sqlerr(s->db, r, "reading a lineage");
    sqlite3_finalize(st);
    return rc;
}

int ckpt_checkpoint_find(ckpt_store *s, const char *run, int64_t epoch, ckpt_checkpoint_info *out)
{
    if (epoch == CKPT_HEAD)
        return ckpt_head(s, run, out);
    if (epoch < 0)
        return ckpt__err(CKPT_EINVAL, "epoch %lld is negative", (long long)epoch);
    int64_t run_id;
    int rc = ckpt__run_id(s, run, &run_id, NULL);
    if (rc)
        return rc;
    /* Prefer the checkpoint on the head's line, then the newest. */
    sqlite3_stmt *st;
    if ((rc = ckpt__prepare(
             s->db,
             LINE_CTE " SELECT " CKPT_COLS " FROM checkpoints WHERE run_id = ?1 AND epoch = ?2"
             " ORDER BY (id IN (SELECT id FROM anc)) DESC, step DESC, id DESC LIMIT 1",
             &st)))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, epoch);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        row_to_info(st, out, NULL);
    else if (r == SQLITE_DONE)
        rc = ckpt__err(CKPT_ENOTFOUND, "run '%s' has no checkpoint for epoch %lld", run,
                       (long long)epoch);
    else
        rc = ckpt__sqlerr(s->db, r, "finding a checkpoint");
    sqlite3_finalize(st);
    return rc;
}

int ckpt_rollback(ckpt_store *s, const char *run, int64_t checkpoint_id)
{
    int rc;
    if ((rc = ckpt__writable(s, "rolling back")))
        return rc;
    if ((rc = ckpt_metrics_flush(s)))
        return rc;
    if ((rc = ckpt__begin(s->db, "rolling back")))
        return rc;
    int64_t run_id, target_run;
    ckpt_checkpoint_info ci;
    if ((rc = ckpt__run_id(s, run, &run_id, NULL)) ||
        (rc = ckpt__checkpoint_get(s, checkpoint_id, &ci, &target_run)))
        goto fail;
    if (target_run != run_id) {
        rc = ckpt__err(CKPT_EINVAL, "checkpoint %lld does not belong to run '%s'",
                       (long long)checkpoint_id, run);
        goto fail;
    }
    int64_t head = 0;
    sqlite3_stmt *st;
    if ((rc = ckpt__prepare(s->db, "SELECT coalesce(head_id, 0) FROM runs WHERE id = ?", &st)))
        goto fail;
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) == SQLITE_ROW)
        head = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (head == checkpoint_id) {
        ckpt__rollback(s->db);
        return CKPT_OK;
    }
    char sql[512];
    int64_t now = ckpt__now_us();
    snprintf(sql, sizeof sql,
             "INSERT INTO branches(run_id, parent_id, fork_step, fork_checkpoint, created_at)"
             " SELECT %lld, branch_id, step, id, %lld FROM checkpoints WHERE id = %lld;"
             "UPDATE runs SET head_id = %lld, branch_id = last_insert_rowid(),"
             " branched_from = %lld WHERE id = %lld",
             (long long)run_id, (long long)now, (long long)checkpoint_id,
             (long long)checkpoint_id, (long long)checkpoint_id, (long long)run_id);
    if ((rc = ckpt__exec(s->db, sql, "rolling back")))
        goto fail;
    if ((rc = ckpt__commit(s->db, "rolling back")))
        return ckpt__poison(s, rc);
    /* Metric logging must pick up the new branch. */
    ckpt__free(s->mrun);
    s->mrun = NULL;
    return CKPT_OK;
fail:
    ckpt__rollback(s->db);
    return ckpt__poison(s, rc);
}

/* ---------------------------------------------------------------- status */

/* Start time of a process in clock ticks since boot (field 22 of
 * /proc/PID/stat), 0 if there is no such process. Together with the pid it
 * identifies a process even after the pid is reused. */
static int64_t proc_start(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return 0;
    /* p is at the end of field 2; step over the 20 separators before
     * field 22. */
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(p + 1, &end, 10);
    return (errno || end == p + 1) ? 0 : (int64_t)v;
}

static void hostname(char *buf, size_t cap)
{
    if (gethostname(buf, cap) != 0)
        snprintf(buf, cap, "?");
    buf[cap - 1] = 0;
}

int ckpt_resume(ckpt_store *s, const char *run, ckpt_checkpoint_info *out)
{
    int rc;
    int64_t run_id;
    if ((rc = ckpt__writable(s, "resuming a run")) || (rc = ckpt__run_id(s, run, &run_id, NULL)))
        return rc;
    char host[256];
    hostname(host, sizeof host);
    sqlite3_stmt *st;
    if ((rc = ckpt__prepare(s->db,
                            "UPDATE runs SET status = 'running', owner_pid = ?, owner_host = ?,"
                            " owner_start = ? WHERE id = ?",
                            &st)))
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)getpid());
    sqlite3_bind_text(st, 2, host, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, proc_start((long)getpid()));
    sqlite3_bind_int64(st, 4, run_id);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return ckpt__poison(s, ckpt__sqlerr(s->db, r, "marking a run as running"));
    return ckpt_head(s, run, out);
}

int ckpt_run_finish(ckpt_store *s, const char *run)
{
    int rc;
    int64_t run_id;
    if ((rc = ckpt__writable(s, "finishing a run")) || (rc = ckpt__run_id(s, run, &run_id, NULL)))
        return rc;
    if ((rc = ckpt_metrics_flush(s)))
        return rc;
    char sql[160];
    snprintf(sql, sizeof sql,
             "UPDATE runs SET status = 'finished', owner_pid = NULL, owner_host = NULL,"
             " owner_start = NULL WHERE id = %lld",
             (long long)run_id);
    return ckpt__poison(s, ckpt__exec(s->db, sql, "finishing a run"));
}

int ckpt_run_status(ckpt_store *s, const char *run, const char **out)
{
    sqlite3_stmt *st;
    int rc = ckpt__prepare(s->db,
                           "SELECT status, owner_pid, owner_host, owner_start FROM runs WHERE name = ?",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r != SQLITE_ROW) {
        rc = r == SQLITE_DONE ? ckpt__err(CKPT_ENOTFOUND, "no run named '%s' in %s", run, s->path)
                              : ckpt__sqlerr(s->db, r, "reading a run's status");
        sqlite3_finalize(st);
        return rc;
    }
    const char *status = (const char *)sqlite3_column_text(st, 0);
    if (status && strcmp(status, "running") == 0) {
        char host[256];
        hostname(host, sizeof host);
        const char *oh = (const char *)sqlite3_column_text(st, 2);
        long pid = (long)sqlite3_column_int64(st, 1);
        int64_t start = sqlite3_column_int64(st, 3);
        if (oh && strcmp(oh, host) == 0 && (pid <= 0 || proc_start(pid) != start))
            *out = "interrupted";
        else
            *out = "running";
    } else if (status && strcmp(status, "finished") == 0) {
        *out = "finished";
    } else {
        *out = "new";
    }
    sqlite3_finalize(st);
    return CKPT_OK;
}

/* ---------------------------------------------------------------- references */

int ckpt_ref_parse(const char *ref, char *run, size_t run_cap, int64_t *epoch)
{
    if (!ref || !*ref)
        return ckpt__err(CKPT_EINVAL, "empty checkpoint reference (expected RUN or RUN@EPOCH)");
    const char *at = strrchr(ref, '@');
    size_t n = at ? (size_t)(at - ref) : strlen(ref);
    if (n == 0)
        return ckpt__err(CKPT_EINVAL, "checkpoint reference '%.64s' has no run name", ref);
    if (n >= run_cap)
        return ckpt__err(CKPT_EINVAL, "run name in '%.64s...' is too long", ref);
    if (at && memchr(ref, '@', n))
        return ckpt__err(CKPT_EINVAL, "checkpoint reference '%.64s' has more than one '@'", ref);
    memcpy(run, ref, n);
    run[n] = 0;
    *epoch = CKPT_HEAD;
    if (at) {
        const char *p = at + 1;
        if (*p < '0' || *p > '9')
            return ckpt__err(CKPT_EINVAL,
                             "checkpoint reference '%.64s': epoch '%.32s' is not a non-negative "
                             "integer",
                             ref, p);
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno || *end || v < 0)
            return ckpt__err(CKPT_EINVAL,
                             "checkpoint reference '%.64s': epoch '%.32s' is not a non-negative "
                             "integer",
                             ref, p);
        *epoch = v;
    }
    return ckpt__check_name(run, "run");
}
