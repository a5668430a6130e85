/*
 * fuzz_store_sql.c - a structure-aware variant of fuzz_store_open: the
 * input is a list of row edits applied with plain SQLite to a copy of a
 * valid store (the template: multi-chunk tensor, deltas, dedup,
 * branches), the way a buggy tool or a hostile person could edit it; then
 * fz_exercise_store() opens the result. Byte mutations of a database file
 * rarely get past SQLite's own checks; edits reach ckpt's logic: ids that
 * point nowhere or in cycles, lengths that lie, shapes, codecs, payloads.
 *
 * Each edit: op byte, then operands (input bytes, 0 when exhausted):
 *   op % 6 == 0  UPDATE table.column of row k to a value
 *             1  DELETE row k
 *             2  INSERT a copy of row k with one column set to a value
 *             3  patch up to 8 bytes of a text/blob cell at an offset
 *             4  run one of a few schema edits (drop a view, set user_version...)
 *             5  UPDATE table.column of row k to the same column of row j
 *   table = byte % tables, column = byte % columns, k = byte (mod rows);
 *   value: kind byte % 7: NULL, small int, int64 (8 bytes), interesting int,
 *   double (8 bytes), text (length byte + bytes), blob (length byte + bytes).
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#define MAX_EDITS 24

typedef struct tdef {
    const char *name; /* schema-qualified */
    const char *key;  /* expression naming a row */
    const char *cols[12];
} tdef;

static const tdef tables[] = {
    {"main.runs", "rowid", {"id", "name", "status", "created_at", "config", "head_id", "branch_id",
                            "branched_from", "owner_pid", "owner_host", "owner_start"}},
    {"main.branches", "rowid", {"id", "run_id", "parent_id", "fork_step", "fork_checkpoint", "created_at"}},
    {"main.params", "(run_id, key)", {"run_id", "key", "value", "type"}},
    {"main.checkpoints", "rowid", {"id", "run_id", "branch_id", "epoch", "step", "created_at",
                                   "parent_id", "ntensors", "logical_bytes", "stored_bytes"}},
    {"main.tensors", "rowid", {"id", "checkpoint_id", "idx", "name", "kind", "dtype", "shape",
                               "nbytes", "hash", "chunk_size", "chunks"}},
    {"main.metric_series", "rowid", {"id", "run_id", "branch_id", "name"}},
    {"main.metric_values", "rowid", {"key", "epoch", "value", "time"}},
    {"main.meta", "key", {"key", "value"}},
    {"c.chunks", "rowid", {"id", "hash", "codec", "base_id", "raw_len", "data"}},
    {"c.meta", "key", {"key", "value"}},
};
#define NTABLES (sizeof tables / sizeof tables[0])

static const char *const schema_edits[] = {
    "DROP VIEW main.v_runs",
    "DROP VIEW main.v_lineage",
    "DROP TABLE main.metric_values",
    "DROP TABLE c.chunks",
    "DROP INDEX main.checkpoints_run",
    "PRAGMA main.user_version = 1",
    "PRAGMA main.user_version = 3",
    "PRAGMA c.user_version = 0",
    "PRAGMA c.application_id = 0",
    "PRAGMA main.application_id = 1667986540", /* the chunk file's id */
    "ALTER TABLE main.tensors RENAME TO t2",
    "CREATE TABLE main.extra(x)",
    "ALTER TABLE c.chunks DROP COLUMN base_id",
    "DELETE FROM main.tensors",
    "DELETE FROM c.chunks WHERE codec = 1",
    "UPDATE c.chunks SET base_id = id WHERE codec = 3",
    "UPDATE main.checkpoints SET parent_id = id",
    "UPDATE main.branches SET parent_id = id",
    "UPDATE main.runs SET status = 'running', owner_pid = 1, owner_host = 'elsewhere'",
    "UPDATE main.tensors SET chunk_size = 1",
};
#define NEDITS (sizeof schema_edits / sizeof schema_edits[0])

static const int64_t interesting[] = {0, 1, -1, 2, 3, 7, 8, 16, 255, 256, 4096, 65535, 65536,
                                      1 << 20, (1 << 20) + 1, 64 << 20, (64 << 20) + 1,
                                      INT32_MAX, (int64_t)INT32_MAX + 1, UINT32_MAX,
                                      (int64_t)1 << 32, (int64_t)1 << 62, INT64_MAX, INT64_MIN,
                                      INT64_MIN + 1, -2, -4096};
#define NINT (sizeof interesting / sizeof interesting[0])

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static unsigned byte(rd *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static uint64_t u64(rd *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)byte(r) << (8 * i);
    return v;
}

static int ncols(const tdef *t)
{
    int n = 0;
    while (n < 12 && t->cols[n])
        n++;
    return n;
}

/* Binds a value read from the input at parameter i. */
static void bind_value(sqlite3_stmt *st, int i, rd *r)
{
    unsigned kind = byte(r) % 7;
    switch (kind) {
    case 0: sqlite3_bind_null(st, i); break;
    case 1: sqlite3_bind_int64(st, i, (int8_t)byte(r)); break;
    case 2: sqlite3_bind_int64(st, i, (int64_t)u64(r)); break;
    case 3: sqlite3_bind_int64(st, i, interesting[byte(r) % NINT]); break;
    case 4: {
        uint64_t b = u64(r);
        double d;
        memcpy(&d, &b, sizeof d);
        sqlite3_bind_double(st, i, d);
        break;
    }
    default: {
        size_t len = byte(r) % 64;
        if (len > r->n)
            len = r->n;
        if (kind == 5)
            sqlite3_bind_text(st, i, (const char *)r->p, (int)len, SQLITE_TRANSIENT);
        else
            sqlite3_bind_blob(st, i, r->p, (int)len, SQLITE_TRANSIENT);
        r->p += len, r->n -= len;
    }
    }
}

/* "... WHERE key IN (SELECT key FROM t LIMIT 1 OFFSET k % count)" */
static void row_where(char *buf, size_t cap, const tdef *t, unsigned k)
{
    snprintf(buf, cap,
             "%s IN (SELECT %s FROM %s LIMIT 1 OFFSET %u %% max(1, (SELECT count(*) FROM %s)))",
             t->key, t->key, t->name, k, t->name);
}

static void run(sqlite3 *db, const char *sql, rd *r, int nvalues)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return;
    for (int i = 1; i <= nvalues; i++)
        bind_value(st, i, r);
    while (sqlite3_step(st) == SQLITE_ROW)
        ;
    sqlite3_finalize(st);
}

static void patch(sqlite3 *db, const tdef *t, const char *col, const char *where, rd *r)
{
    char sql[1024];
    snprintf(sql, sizeof sql, "SELECT typeof(%s), CAST(%s AS BLOB) FROM %s WHERE %s", col, col,
             t->name, where);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return;
    unsigned off = byte(r) | byte(r) << 8;
    unsigned len = 1 + byte(r) % 8;
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return;
    }
    int text = strcmp((const char *)sqlite3_column_text(st, 0), "text") == 0;
    size_t n = (size_t)sqlite3_column_bytes(st, 1);
    const void *b = sqlite3_column_blob(st, 1);
    if (n == 0 || !b) {
        sqlite3_finalize(st);
        return;
    }
    uint8_t *v = malloc(n);
    memcpy(v, b, n);
    sqlite3_finalize(st);
    off %= (unsigned)n;
    for (unsigned i = 0; i < len && off + i < n; i++)
        v[off + i] = (uint8_t)byte(r);
    snprintf(sql, sizeof sql, "UPDATE %s SET %s = ? WHERE %s", t->name, col, where);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (text)
            sqlite3_bind_text(st, 1, (const char *)v, (int)n, SQLITE_TRANSIENT);
        else
            sqlite3_bind_blob(st, 1, v, (int)n, SQLITE_TRANSIENT);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    free(v);
}

static void apply(sqlite3 *db, rd *r)
{
    char sql[2048], where[512], cols[512];
    for (int e = 0; e < MAX_EDITS && r->n; e++) {
        unsigned op = byte(r) % 6;
        if (op == 4) {
            run(db, schema_edits[byte(r) % NEDITS], r, 0);
            continue;
        }
        const tdef *t = &tables[byte(r) % NTABLES];
        int nc = ncols(t), ci = (int)(byte(r) % (unsigned)nc);
        const char *col = t->cols[ci];
        row_where(where, sizeof where, t, byte(r));
        switch (op) {
        case 0:
            snprintf(sql, sizeof sql, "UPDATE %s SET %s = ? WHERE %s", t->name, col, where);
            run(db, sql, r, 1);
            break;
        case 1:
            snprintf(sql, sizeof sql, "DELETE FROM %s WHERE %s", t->name, where);
            run(db, sql, r, 0);
            break;
        case 2: {
            /* rowid tables get a new id (NULL); the chosen column the value */
            size_t w = 0;
            for (int i = 0; i < nc; i++) {
                const char *c = i == ci ? "?1" : (i == 0 && !strcmp(t->key, "rowid")) ? "NULL"
                                                                                       : t->cols[i];
                w += (size_t)snprintf(cols + w, sizeof cols - w, "%s%s", i ? ", " : "", c);
            }
            snprintf(sql, sizeof sql, "INSERT INTO %s SELECT %s FROM %s WHERE %s", t->name, cols,
                     t->name, where);
            run(db, sql, r, 1);
            break;
        }
        case 3:
            patch(db, t, col, where, r);
            break;
        case 5: {
            char other[512];
            row_where(other, sizeof other, t, byte(r));
            snprintf(sql, sizeof sql, "UPDATE %s SET %s = (SELECT %s FROM %s WHERE %s) WHERE %s",
                     t->name, col, col, t->name, other, where);
            run(db, sql, r, 0);
            break;
        }
        }
    }
}

static uint8_t *tpl_main, *tpl_chunks;
static size_t tpl_main_n, tpl_chunks_n;

static int progress(void *ctx)
{
    (void)ctx;
    return 1; /* an edit this long is not worth running: interrupt it */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tpl_main) {
        const char *tpl = fz_path("template");
        fz_make_template_store(tpl, 0);
        tpl_main = fz_read_file(tpl, &tpl_main_n);
        tpl_chunks = fz_read_file(fz_path("template-chunks"), &tpl_chunks_n);
        if (!tpl_main || !tpl_chunks)
            abort();
        fz_remove_store(tpl);
    }
    const char *path = fz_path("s"), *cpath = fz_path("s-chunks");
    fz_remove_store(path);
    fz_write_file(path, tpl_main, tpl_main_n);
    fz_write_file(cpath, tpl_chunks, tpl_chunks_n);

    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        abort();
    char attach[1200];
    snprintf(attach, sizeof attach, "ATTACH '%s' AS c", cpath);
    if (sqlite3_exec(db, attach, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA ignore_check_constraints=1; PRAGMA foreign_keys=0; BEGIN", NULL,
                     NULL, NULL) != SQLITE_OK)
        abort();
    sqlite3_progress_handler(db, 1000000, progress, NULL);
    rd r = {data, size};
    apply(db, &r);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);

    fz_exercise_store(path);
    fz_remove_store(path);
    return 0;
}
