/* cmd_list.c - `ckpt list [RUN]`: one row per checkpoint. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The epoch's metrics of a checkpoint: on its branch, in its epoch, the
 * last value of each name up to its step. All metric rows of the listed
 * runs are read once, sorted, and searched per checkpoint: one query
 * instead of one per checkpoint keeps `list` fast on 10,000 checkpoints. */
typedef struct mrow {
    int64_t run, branch, epoch, step;
    double value;
    int null;
    char *name;
} mrow;

static int cmp_key(int64_t run, int64_t branch, int64_t epoch, const mrow *r)
{
    if (run != r->run)
        return run < r->run ? -1 : 1;
    if (branch != r->branch)
        return branch < r->branch ? -1 : 1;
    if (epoch != r->epoch)
        return epoch < r->epoch ? -1 : 1;
    return 0;
}

static mrow *load_metrics(sqlite3 *db, const char *run, size_t *n)
{
    *n = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT m.run_id, m.branch_id, m.epoch, m.step, m.value, m.name"
                           " FROM metrics m JOIN runs r ON r.id = m.run_id"
                           " WHERE ?1 IS NULL OR r.name = ?1"
                           " ORDER BY m.run_id, m.branch_id, m.epoch, m.name, m.step",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    if (run)
        sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    size_t cap = 0;
    mrow *rows = NULL;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 1024;
            mrow *p = realloc(rows, cap * sizeof *rows);
            if (!p)
                break;
            rows = p;
        }
        mrow *r = &rows[(*n)++];
        r->run = sqlite3_column_int64(st, 0);
        r->branch = sqlite3_column_int64(st, 1);
        r->epoch = sqlite3_column_int64(st, 2);
        r->step = sqlite3_column_int64(st, 3);
        r->null = sqlite3_column_type(st, 4) == SQLITE_NULL;
        r->value = sqlite3_column_double(st, 4);
        r->name = strdup((const char *)sqlite3_column_text(st, 5));
    }
    sqlite3_finalize(st);
    return rows;
}

/* "name=value ..." (or JSON members) of one checkpoint into *buf, grown as
 * needed (a run may log any number of metrics). */
static void epoch_metrics(const mrow *rows, size_t n, int64_t run, int64_t branch, int64_t epoch,
                          int64_t step, int json, char **buf, size_t *cap)
{
    size_t lo = 0, hi = n, len = 0;
    (*buf)[0] = 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp_key(run, branch, epoch, &rows[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < n && cmp_key(run, branch, epoch, &rows[i]) == 0;) {
        /* rows of one name, steps ascending: take the last <= step */
        size_t j = i, best = SIZE_MAX;
        for (; j < n && cmp_key(run, branch, epoch, &rows[j]) == 0 &&
               strcmp(rows[j].name, rows[i].name) == 0;
             j++)
            if (rows[j].step <= step)
                best = j;
        if (best != SIZE_MAX) {
            /* names are at most 256 bytes, 6 per byte escaped */
            char v[64], item[1700];
            if (rows[best].null)
                snprintf(v, sizeof v, json ? "null" : "nan");
            else if (json)
                fmt_json_value(rows[best].value, v, sizeof v);
            else
                fmt_value(rows[best].value, v, sizeof v);
            size_t k = (size_t)snprintf(item, sizeof item, "%s", len ? (json ? ", " : " ") : "");
            if (json)
                k += json_str_buf(item + k, sizeof item - k, rows[best].name);
            else
                k += (size_t)snprintf(item + k, sizeof item - k, "%s", rows[best].name);
            k += (size_t)snprintf(item + k, sizeof item - k, "%s%s", json ? ": " : "=", v);
            if (k >= sizeof item)
                k = sizeof item - 1;
            if (len + k + 1 > *cap) {
                size_t nc = 2 * (len + k + 1);
                char *p = realloc(*buf, nc);
                if (!p)
                    return;
                *buf = p;
                *cap = nc;
            }
            memcpy(*buf + len, item, k + 1);
            len += k;
        }
        i = j;
    }
}

/* Which checkpoints lie on their run's line (the head and its ancestors):
 * parent pointers followed in memory, a linear pass instead of a
 * recursive query (half of `ckpt list`'s time on 10,000 checkpoints). */
typedef struct cnode {
    int64_t id, parent, head;
    int online;
} cnode;

static int cmp_cnode(const void *a, const void *b)
{
    int64_t x = ((const cnode *)a)->id, y = ((const cnode *)b)->id;
    return x < y ? -1 : x > y;
}

static cnode *find_node(cnode *v, size_t n, int64_t id)
{
    cnode key = {id, 0, 0, 0};
    return bsearch(&key, v, n, sizeof *v, cmp_cnode);
}

static cnode *load_lines(sqlite3 *db, const char *run, size_t *n)
{
    *n = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT c.id, coalesce(c.parent_id, 0), coalesce(r.head_id, 0)"
                           " FROM checkpoints c JOIN runs r ON r.id = c.run_id"
                           " WHERE ?1 IS NULL OR r.name = ?1 ORDER BY c.id",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    if (run)
        sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    size_t cap = 0;
    cnode *v = NULL;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 1024;
            cnode *p = realloc(v, cap * sizeof *v);
            if (!p)
                break;
            v = p;
        }
        v[(*n)++] = (cnode){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                            sqlite3_column_int64(st, 2), 0};
    }
    sqlite3_finalize(st);
    /* Walk up from every head; stop at a node already marked (or a cycle
     * in a damaged store: at most n steps). */
    for (size_t i = 0; i < *n; i++) {
        if (v[i].head != v[i].id)
            continue;
        cnode *x = &v[i];
        for (size_t steps = 0; x && !x->online && steps <= *n; steps++) {
            x->online = 1;
            x = x->parent ? find_node(v, *n, x->parent) : NULL;
        }
    }
    return v;
}

int cmd_list(cli *c)
{
    const char *pos[1] = {0};
    int np = cli_getopt(c, "list", NULL, pos, 1);
    if (np < 0)
        return EXIT_USAGE;
    const char *run = np ? pos[0] : NULL;
    sqlite3 *db = ckpt_store_db(cli_store);
    if (run) {
        ckpt_checkpoint_info ci;
        int rc = ckpt_head(cli_store, run, &ci);
        if (rc != CKPT_OK && rc != CKPT_ENOCHECKPOINT)
            return cli_fail("list", rc);
    }
    sqlite3_stmt *st;
    const char *sql =
        "SELECT r.name, c.epoch, c.step, c.created_at, c.logical_bytes, c.stored_bytes,"
        " coalesce(r.head_id = c.id, 0), 0, c.run_id, c.branch_id, c.ntensors, c.id"
        " FROM checkpoints c JOIN runs r ON r.id = c.run_id"
        " WHERE ?1 IS NULL OR r.name = ?1 ORDER BY r.created_at, r.id, c.id";
    size_t nrows, nnodes;
    mrow *rows = load_metrics(db, run, &nrows);
    cnode *nodes = load_lines(db, run, &nnodes);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "ckpt list: %s\n", sqlite3_errmsg(db));
        return EXIT_FAIL;
    }
    if (run)
        sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    static const char *const hdr[] = {"RUN", "EPOCH", "STEP", "TIME", "SIZE", "STORED", "HEAD",
                                      "METRICS"};
    table *t = c->json ? NULL : table_new(8, hdr, "lrrlrrll");
    int first = 1, rc;
    if (c->json)
        printf("[");
    size_t mcap = 4096;
    char *mbuf = malloc(mcap);
    if (!mbuf) {
        sqlite3_finalize(st);
        for (size_t i = 0; i < nrows; i++)
            free(rows[i].name);
        free(rows);
        free(nodes);
        table_free(t);
        fprintf(stderr, "ckpt list: out of memory\n");
        return EXIT_FAIL;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        long long epoch = sqlite3_column_int64(st, 1), step = sqlite3_column_int64(st, 2);
        int is_head = sqlite3_column_int(st, 6);
        cnode *node = find_node(nodes, nnodes, sqlite3_column_int64(st, 11));
        int abandoned = !(node && node->online);
        epoch_metrics(rows, nrows, sqlite3_column_int64(st, 8), sqlite3_column_int64(st, 9), epoch,
                      step, c->json, &mbuf, &mcap);
        char time[32], size[32], stored[32];
        fmt_time_us(sqlite3_column_int64(st, 3), time, sizeof time);
        if (c->json) {
            printf("%s\n  {\"run\": ", first ? "" : ",");
            json_str(stdout, name);
            printf(", \"epoch\": %lld, \"step\": %lld, \"time\": \"%s\", \"logical_bytes\": %lld,"
                   " \"stored_bytes\": %lld, \"tensors\": %lld, \"is_head\": %s,"
                   " \"abandoned\": %s, \"id\": %lld, \"metrics\": {%s}}",
                   epoch, step, time, (long long)sqlite3_column_int64(st, 4),
                   (long long)sqlite3_column_int64(st, 5), (long long)sqlite3_column_int64(st, 10),
                   is_head ? "true" : "false", abandoned ? "true" : "false",
                   (long long)sqlite3_column_int64(st, 11), mbuf);
        } else {
            char e[32], s[32];
            snprintf(e, sizeof e, "%lld", epoch);
            snprintf(s, sizeof s, "%lld", step);
            fmt_bytes((uint64_t)sqlite3_column_int64(st, 4), size, sizeof size);
            fmt_bytes((uint64_t)sqlite3_column_int64(st, 5), stored, sizeof stored);
            const char *row[] = {name, e, s, time, size, stored,
                                 is_head ? "*" : (abandoned ? "abandoned" : ""), mbuf};
            table_add(t, row);
        }
        first = 0;
    }
    free(mbuf);
    free(nodes);
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].name);
    free(rows);
    sqlite3_finalize(st);
    if (c->json) {
        printf("%s]\n", first ? "" : "\n");
    } else {
        table_print(t, stdout);
        table_free(t);
    }
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "ckpt list: %s\n", sqlite3_errmsg(db));
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
