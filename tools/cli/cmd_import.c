/* cmd_import.c - `ckpt import FILE --run RUN --epoch N [--step S]`. */
#include <stdio.h>

#include "cli.h"

int cmd_import(cli *c)
{
    const char *run = NULL, *epoch_s = NULL, *step_s = NULL;
    cli_opt opts[] = {{"--run", 1, &run}, {"--epoch", 1, &epoch_s}, {"--step", 1, &step_s}, {0}};
    const char *pos[1];
    int np = cli_getopt(c, "import", opts, pos, 1);
    if (np < 0)
        return EXIT_USAGE;
    if (np == 0)
        return cli_usage("import", "missing FILE.safetensors");
    if (!run || !*run)
        return cli_usage("import", "missing --run RUN");
    if (!epoch_s)
        return cli_usage("import", "missing --epoch N");
    int64_t epoch, step;
    if (cli_parse_i64(epoch_s, 0, INT64_MAX, &epoch))
        return cli_usage("import", "--epoch '%s' is not a non-negative integer", epoch_s);
    step = epoch;
    if (step_s && cli_parse_i64(step_s, 0, INT64_MAX, &step))
        return cli_usage("import", "--step '%s' is not a non-negative integer", step_s);
    int64_t id;
    int rc = ckpt_import_safetensors(cli_store, pos[0], run, epoch, step, &id);
    if (rc)
        return cli_fail("import", rc);
    ckpt_reader *r;
    if (ckpt_reader_open_id(&r, cli_store, id) == CKPT_OK) {
        long long n = (long long)ckpt_reader_count(r);
        ckpt_reader_close(r);
        if (c->json)
        {
            printf("{\"run\": ");
            json_str(stdout, run);
            printf(", \"epoch\": %lld, \"step\": %lld, \"id\": %lld, \"tensors\": %lld}\n",
                   (long long)epoch, (long long)step, (long long)id, n);
        }
        else
            printf("imported %s as %s@%lld (step %lld, %lld tensors)\n", pos[0], run,
                   (long long)epoch, (long long)step, n);
    }
    return EXIT_OK;
}
