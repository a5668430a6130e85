/* cmd_metrics.c - `ckpt metrics RUN`: a step x metric table. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_metrics(cli *c)
{
    const char *name = NULL, *all = NULL;
    cli_opt opts[] = {{"--name", 1, &name}, {"--all", 0, &all}, {0}};
    const char *pos[1];
    int np = cli_getopt(c, "metrics", opts, pos, 1);
    if (np < 0)
        return EXIT_USAGE;
    if (np == 0)
        return cli_usage("metrics", "missing RUN");
    const char *run = pos[0];
    ckpt_checkpoint_info ci;
    int rc = ckpt_head(cli_store, run, &ci);
    if (rc != CKPT_OK && rc != CKPT_ENOCHECKPOINT)
        return cli_fail("metrics", rc);
    sqlite3 *db = ckpt_store_db(cli_store);
    const char *src = all ? "v_metrics_all" : "(SELECT *, 0 AS abandoned, 0 AS branch FROM v_metrics)";
    char sql[512];
    /* Column order: names by first appearance. */
    snprintf(sql, sizeof sql,
             "SELECT name, epoch, step, value, time, abandoned, branch FROM %s WHERE run = ?1"
             " AND (?2 IS NULL OR name = ?2) ORDER BY abandoned, branch, step, name",
             src);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "ckpt metrics: %s\n", sqlite3_errmsg(db));
        return EXIT_FAIL;
    }
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    if (name)
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);

    if (c->json) {
        int first = 1;
        printf("[");
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            printf("%s\n  {\"name\": ", first ? "" : ",");
            json_str(stdout, (const char *)sqlite3_column_text(st, 0));
            char v[64];
            if (sqlite3_column_type(st, 3) == SQLITE_NULL)
                snprintf(v, sizeof v, "null");
            else
                fmt_json_value(sqlite3_column_double(st, 3), v, sizeof v);
            printf(", \"epoch\": %lld, \"step\": %lld, \"value\": %s, \"time\": %.6f%s}",
                   (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2), v,
                   sqlite3_column_double(st, 4),
                   sqlite3_column_int(st, 5) ? ", \"abandoned\": true" : "");
            first = 0;
        }
        printf("%s]\n", first ? "" : "\n");
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? EXIT_OK : EXIT_FAIL;
    }

    /* Pivot: rows (abandoned, branch, epoch, step), columns metric names. */
    char **names = NULL;
    size_t nnames = 0;
    typedef struct {
        long long epoch, step, branch;
        int abandoned;
        double *v;
        unsigned char *has;
    } row;
    row *rows = NULL;
    size_t nrows = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *mn = (const char *)sqlite3_column_text(st, 0);
        size_t k = 0;
        while (k < nnames && strcmp(names[k], mn) != 0)
            k++;
        if (k == nnames) {
            names = realloc(names, (nnames + 1) * sizeof *names);
            names[nnames++] = strdup(mn);
            for (size_t r = 0; r < nrows; r++) {
                rows[r].v = realloc(rows[r].v, nnames * sizeof(double));
                rows[r].has = realloc(rows[r].has, nnames);
                rows[r].has[nnames - 1] = 0;
            }
        }
        long long epoch = sqlite3_column_int64(st, 1), step = sqlite3_column_int64(st, 2);
        long long branch = sqlite3_column_int64(st, 6);
        int ab = sqlite3_column_int(st, 5);
        if (!nrows || rows[nrows - 1].step != step || rows[nrows - 1].epoch != epoch ||
            rows[nrows - 1].branch != branch || rows[nrows - 1].abandoned != ab) {
            rows = realloc(rows, (nrows + 1) * sizeof *rows);
            rows[nrows] = (row){epoch, step, branch, ab, calloc(nnames, sizeof(double)),
                                calloc(nnames, 1)};
            nrows++;
        }
        rows[nrows - 1].v[k] = sqlite3_column_double(st, 3);
        rows[nrows - 1].has[k] = sqlite3_column_type(st, 3) != SQLITE_NULL ? 1 : 2;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "ckpt metrics: %s\n", sqlite3_errmsg(db));
        return EXIT_FAIL;
    }
    if (nrows == 0) {
        printf(name ? "run %s has no metric '%s'\n" : "run %s has no metrics yet\n", run, name);
    } else {
        size_t ncols = 2 + nnames + (all ? 1 : 0);
        const char **hdr = calloc(ncols, sizeof *hdr);
        char *align = calloc(ncols + 1, 1);
        hdr[0] = "EPOCH";
        hdr[1] = "STEP";
        align[0] = align[1] = 'r';
        for (size_t k = 0; k < nnames; k++) {
            hdr[2 + k] = names[k];
            align[2 + k] = 'r';
        }
        if (all) {
            hdr[ncols - 1] = "LINE";
            align[ncols - 1] = 'l';
        }
        table *t = table_new((int)ncols, hdr, align);
        char **cells = calloc(ncols, sizeof *cells);
        for (size_t i = 0; i < ncols; i++)
            cells[i] = malloc(64);
        for (size_t r = 0; r < nrows; r++) {
            snprintf(cells[0], 64, "%lld", rows[r].epoch);
            snprintf(cells[1], 64, "%lld", rows[r].step);
            for (size_t k = 0; k < nnames; k++) {
                if (rows[r].has[k] == 1)
                    fmt_value(rows[r].v[k], cells[2 + k], 64);
                else
                    snprintf(cells[2 + k], 64, rows[r].has[k] == 2 ? "nan" : "");
            }
            if (all)
                snprintf(cells[ncols - 1], 64, rows[r].abandoned ? "abandoned" : "current");
            table_add(t, (const char *const *)cells);
            free(rows[r].v);
            free(rows[r].has);
        }
        table_print(t, stdout);
        table_free(t);
        for (size_t i = 0; i < ncols; i++)
            free(cells[i]);
        free(cells);
        free(hdr);
        free(align);
    }
    for (size_t k = 0; k < nnames; k++)
        free(names[k]);
    free(names);
    free(rows);
    return EXIT_OK;
}
