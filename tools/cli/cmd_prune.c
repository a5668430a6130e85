/* cmd_prune.c - `ckpt prune REF...` and `ckpt gc`: delete checkpoints and
 * free the chunks nothing refers to any more. */
#include <stdio.h>

#include "cli.h"

static int report_gc(cli *c, int deleted)
{
    uint64_t chunks, bytes;
    int rc = ckpt_gc(cli_store, &chunks, &bytes);
    if (rc)
        return cli_fail(deleted >= 0 ? "prune" : "gc", rc);
    char b[32];
    fmt_bytes(bytes, b, sizeof b);
    if (c->json)
        printf("{\"deleted\": %d, \"chunks_freed\": %llu, \"bytes_freed\": %llu}\n",
               deleted < 0 ? 0 : deleted, (unsigned long long)chunks, (unsigned long long)bytes);
    else
        printf("freed %llu chunk(s), %s (reused by later saves)\n", (unsigned long long)chunks, b);
    return EXIT_OK;
}

int cmd_prune(cli *c)
{
    const char *nogc = NULL;
    cli_opt opts[] = {{"--no-gc", 0, &nogc}, {0}};
    const char *pos[64];
    int np = cli_getopt(c, "prune", opts, pos, 64);
    if (np < 0)
        return EXIT_USAGE;
    if (np == 0)
        return cli_usage("prune", "missing REF (RUN@EPOCH)");
    int64_t ids[64];
    for (int i = 0; i < np; i++) {
        char run[300];
        int64_t epoch;
        if (ckpt_ref_parse(pos[i], run, sizeof run, &epoch) != CKPT_OK)
            return cli_usage("prune", "%s", ckpt_errmsg());
        if (epoch == CKPT_HEAD)
            return cli_usage("prune", "'%s' names the run's head; give RUN@EPOCH", pos[i]);
        ckpt_checkpoint_info ci;
        int rc = ckpt_checkpoint_find(cli_store, run, epoch, &ci);
        if (rc)
            return cli_fail("prune", rc);
        ids[i] = ci.id;
    }
    for (int i = 0; i < np; i++) {
        int rc = ckpt_checkpoint_delete(cli_store, ids[i]);
        if (rc)
            return cli_fail("prune", rc);
        if (!c->json)
            printf("deleted %s\n", pos[i]);
    }
    if (nogc) {
        if (c->json)
            printf("{\"deleted\": %d}\n", np);
        return EXIT_OK;
    }
    return report_gc(c, np);
}

int cmd_gc(cli *c)
{
    if (cli_getopt(c, "gc", NULL, NULL, 0) < 0)
        return EXIT_USAGE;
    return report_gc(c, -1);
}
