/* cmd_runs.c - `ckpt runs`: one row per run with status and latest metrics. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* "name=value name=value" of the latest value of each metric of a run. */
static char *latest_metrics(sqlite3 *db, const char *run, int json)
{
    static const char *sql =
        "SELECT name, value FROM (SELECT name, value, row_number() OVER"
        " (PARTITION BY name ORDER BY step DESC) AS rn FROM v_metrics WHERE run = ?)"
        " WHERE rn = 1 ORDER BY name";
    sqlite3_stmt *st;
    size_t cap = 256, n = 0;
    char *out = calloc(1, cap);
    if (!out || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return out;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char v[64];
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (sqlite3_column_type(st, 1) == SQLITE_NULL)
            snprintf(v, sizeof v, json ? "null" : "nan");
        else if (json)
            fmt_json_value(sqlite3_column_double(st, 1), v, sizeof v);
        else
            fmt_value(sqlite3_column_double(st, 1), v, sizeof v);
        size_t need = n + 6 * strlen(name) + strlen(v) + 16;
        if (need > cap) {
            cap = 2 * need;
            char *p = realloc(out, cap);
            if (!p)
                break;
            out = p;
        }
        if (json) {
            n += (size_t)snprintf(out + n, cap - n, "%s", n ? ", " : "");
            n += json_str_buf(out + n, cap - n, name);
            n += (size_t)snprintf(out + n, cap - n, ": %s", v);
        }
        else
            n += (size_t)snprintf(out + n, cap - n, "%s%s=%s", n ? " " : "", name, v);
    }
    sqlite3_finalize(st);
    return out;
}

int cmd_runs(cli *c)
{
    if (cli_getopt(c, "runs", NULL, NULL, 0) < 0)
        return EXIT_USAGE;
    sqlite3 *db = ckpt_store_db(cli_store);
    sqlite3_stmt *st;
    const char *sql =
        "SELECT r.name, (SELECT count(*) FROM checkpoints WHERE run_id = r.id),"
        " (SELECT max(epoch) FROM checkpoints WHERE run_id = r.id), h.epoch, h.step, r.created_at"
        " FROM runs r LEFT JOIN checkpoints h ON h.id = r.head_id ORDER BY r.created_at, r.id";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "ckpt runs: %s\n", sqlite3_errmsg(db));
        return EXIT_FAIL;
    }
    static const char *const hdr[] = {"RUN", "STATUS", "CKPTS", "LAST EPOCH", "HEAD", "CREATED",
                                      "LATEST METRICS"};
    table *t = c->json ? NULL : table_new(7, hdr, "llrrrll");
    int first = 1, rc;
    if (c->json)
        printf("[");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *status = "?";
        if (ckpt_run_status(cli_store, name, &status) != CKPT_OK)
            status = "?";
        long long n = sqlite3_column_int64(st, 1);
        int has_head = sqlite3_column_type(st, 3) != SQLITE_NULL;
        char last[32] = "-", head[64] = "-", created[32], cnt[32];
        if (sqlite3_column_type(st, 2) != SQLITE_NULL)
            snprintf(last, sizeof last, "%lld", (long long)sqlite3_column_int64(st, 2));
        if (has_head)
            snprintf(head, sizeof head, "%lld@%lld", (long long)sqlite3_column_int64(st, 3),
                     (long long)sqlite3_column_int64(st, 4));
        fmt_time_us(sqlite3_column_int64(st, 5), created, sizeof created);
        snprintf(cnt, sizeof cnt, "%lld", n);
        char *m = latest_metrics(db, name, c->json);
        if (c->json) {
            printf("%s\n  {\"run\": ", first ? "" : ",");
            json_str(stdout, name);
            printf(", \"status\": \"%s\", \"checkpoints\": %lld, \"last_epoch\": %s,"
                   " \"head_epoch\": %s, \"head_step\": %s, \"created\": \"%s\", \"metrics\": {%s}}",
                   status, n, sqlite3_column_type(st, 2) == SQLITE_NULL ? "null" : last,
                   has_head ? (const char *)sqlite3_column_text(st, 3) : "null",
                   has_head ? (const char *)sqlite3_column_text(st, 4) : "null", created,
                   m ? m : "");
        } else {
            const char *row[] = {name, status, cnt, last, head, created, m ? m : ""};
            table_add(t, row);
        }
        free(m);
        first = 0;
    }
    sqlite3_finalize(st);
    if (c->json) {
        printf("%s]\n", first ? "" : "\n");
    } else {
        table_print(t, stdout);
        table_free(t);
    }
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "ckpt runs: %s\n", sqlite3_errmsg(db));
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
