/* cmd_list.c - `ckpt list [RUN]`: one row per checkpoint. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The epoch's metrics of a checkpoint: on its branch, in its epoch, the
 * last value of each name up to its step. */
static const char *metrics_sql =
    "SELECT name, value, max(step) FROM metrics WHERE run_id = ? AND branch_id = ?"
    " AND epoch = ? AND step <= ? GROUP BY name ORDER BY name";

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
    sqlite3_stmt *st, *ms;
    const char *sql =
        "WITH RECURSIVE anc(id) AS (SELECT head_id FROM runs WHERE head_id IS NOT NULL"
        " UNION ALL SELECT c.parent_id FROM anc JOIN checkpoints c ON c.id = anc.id"
        " WHERE c.parent_id IS NOT NULL)"
        " SELECT r.name, c.epoch, c.step, c.created_at, c.logical_bytes, c.stored_bytes,"
        " coalesce(r.head_id = c.id, 0), c.id NOT IN anc, c.run_id, c.branch_id, c.ntensors, c.id"
        " FROM checkpoints c JOIN runs r ON r.id = c.run_id"
        " WHERE ?1 IS NULL OR r.name = ?1 ORDER BY r.created_at, r.id, c.id";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, metrics_sql, -1, &ms, NULL) != SQLITE_OK) {
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
    char *mbuf = malloc(4096);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        long long epoch = sqlite3_column_int64(st, 1), step = sqlite3_column_int64(st, 2);
        int is_head = sqlite3_column_int(st, 6), abandoned = sqlite3_column_int(st, 7);
        sqlite3_reset(ms);
        sqlite3_bind_int64(ms, 1, sqlite3_column_int64(st, 8));
        sqlite3_bind_int64(ms, 2, sqlite3_column_int64(st, 9));
        sqlite3_bind_int64(ms, 3, epoch);
        sqlite3_bind_int64(ms, 4, step);
        size_t n = 0;
        mbuf[0] = 0;
        while (sqlite3_step(ms) == SQLITE_ROW && n < 3900) {
            char v[64];
            if (sqlite3_column_type(ms, 1) == SQLITE_NULL)
                snprintf(v, sizeof v, c->json ? "null" : "nan");
            else
                fmt_value(sqlite3_column_double(ms, 1), v, sizeof v);
            const char *mn = (const char *)sqlite3_column_text(ms, 0);
            if (c->json)
                n += (size_t)snprintf(mbuf + n, 4096 - n, "%s\"%.64s\": %s", n ? ", " : "", mn, v);
            else
                n += (size_t)snprintf(mbuf + n, 4096 - n, "%s%.64s=%s", n ? " " : "", mn, v);
        }
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
    sqlite3_finalize(ms);
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
