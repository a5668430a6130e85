/* cmd_init.c - `ckpt init [--codec C] [--level N] [--chunk-mib N]`: create
 * (or check and upgrade) a store, optionally saving its codec defaults. */
#include "cli.h"

int cmd_init(cli *c)
{
    const char *codec = NULL, *level = NULL, *chunk = NULL;
    cli_opt opts[] = {{"--codec", 1, &codec}, {"--level", 1, &level}, {"--chunk-mib", 1, &chunk}, {0}};
    const char *pos[1];
    int np = cli_getopt(c, "init", opts, pos, 0);
    if (np < 0)
        return EXIT_USAGE;
    if (codec || level || chunk) {
        int64_t v;
        if (codec) {
            int k = ckpt_codec_parse(codec);
            if (k < 0)
                return cli_usage("init", "%s", ckpt_errmsg());
            ckpt_set_param(cli_store, CKPT_PARAM_CODEC, k);
        }
        if (level && (cli_parse_i64(level, 1, 19, &v) || ckpt_set_param(cli_store, CKPT_PARAM_LEVEL, v)))
            return cli_usage("init", "--level '%s' is not a zstd level 1..19", level);
        if (chunk && (cli_parse_i64(chunk, 1, 64, &v) ||
                      ckpt_set_param(cli_store, CKPT_PARAM_CHUNK_SIZE, v << 20)))
            return cli_usage("init", "--chunk-mib '%s' is not a size 1..64", chunk);
        int rc = ckpt_save_params(cli_store);
        if (rc)
            return cli_fail("init", rc);
    }
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
    int64_t k = 0, lvl = 0, cs = 0;
    ckpt_get_param(cli_store, CKPT_PARAM_CODEC, &k);
    ckpt_get_param(cli_store, CKPT_PARAM_LEVEL, &lvl);
    ckpt_get_param(cli_store, CKPT_PARAM_CHUNK_SIZE, &cs);
    static const char *const names[] = {"auto", "raw", "planes"};
    const char *kn = k >= 0 && k <= 2 ? names[k] : "?";
    if (c->json) {
        printf("{\"path\": ");
        json_str(stdout, c->db_path);
        printf(", \"runs\": %lld, \"checkpoints\": %lld, \"codec\": \"%s\", \"level\": %lld,"
               " \"chunk_size\": %lld}\n",
               runs, cps, kn, (long long)lvl, (long long)cs);
    } else {
        printf("ckpt store %s: %lld run(s), %lld checkpoint(s); codec %s, level %lld, chunks of "
               "%lld MiB\n",
               c->db_path, runs, cps, kn, (long long)lvl, (long long)(cs >> 20));
    }
    return EXIT_OK;
}
