/* cmd_init.c - `ckpt init`: create (or check and upgrade) a store. */
#include "cli.h"

int cmd_init(cli *c)
{
    if (c->argc > 0)
        return cli_usage("init", "unexpected argument '%s'", c->argv[0]);
    sqlite3 *db = ckpt_store_db(cli_store);
    sqlite3_stmt *st;
    long long runs = 0, cps = 0;
    if (sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM checkpoints)",
                           -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            runs = sqlite3_column_int64(st, 0);
            cps = sqlite3_column_int64(st, 1);
        }
        sqlite3_finalize(st);
    }
    if (c->json)
        printf("{\"path\": "), json_str(stdout, c->db_path),
            printf(", \"runs\": %lld, \"checkpoints\": %lld}\n", runs, cps);
    else
        printf("ckpt store %s: %lld run(s), %lld checkpoint(s)\n", c->db_path, runs, cps);
    return EXIT_OK;
}
