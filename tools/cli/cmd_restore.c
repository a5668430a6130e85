/* cmd_restore.c - `ckpt restore REF [-o FILE]`: export, or roll back. */
#include <stdio.h>

#include "cli.h"

int cmd_restore(cli *c)
{
    const char *out = NULL;
    cli_opt opts[] = {{"-o", 1, &out}, {"--output", 1, &out}, {0}};
    const char *pos[1];
    int np = cli_getopt(c, "restore", opts, pos, 1);
    if (np < 0)
        return EXIT_USAGE;
    if (np == 0)
        return cli_usage("restore", "missing REF (RUN or RUN@EPOCH)");
    char run[300];
    int64_t epoch;
    if (ckpt_ref_parse(pos[0], run, sizeof run, &epoch) != CKPT_OK)
        return cli_usage("restore", "%s", ckpt_errmsg());
    ckpt_checkpoint_info ci;
    int rc = ckpt_checkpoint_find(cli_store, run, epoch, &ci);
    if (rc)
        return cli_fail("restore", rc);
    if (out) {
        if ((rc = ckpt_export_safetensors_id(cli_store, ci.id, out)))
            return cli_fail("restore", rc);
        if (c->json)
        {
            printf("{\"run\": ");
            json_str(stdout, run);
            printf(", \"epoch\": %lld, \"step\": %lld, \"file\": ", (long long)ci.epoch,
                   (long long)ci.step);
            json_str(stdout, out);
            printf("}\n");
        }
        else
            printf("wrote %s@%lld (step %lld, %lld tensors) to %s\n", run, (long long)ci.epoch,
                   (long long)ci.step, (long long)ci.ntensors, out);
        return EXIT_OK;
    }
    ckpt_checkpoint_info head;
    int hrc = ckpt_head(cli_store, run, &head);
    if ((rc = ckpt_rollback(cli_store, run, ci.id)))
        return cli_fail("restore", rc);
    if (c->json) {
        printf("{\"run\": ");
        json_str(stdout, run);
        printf(", \"head_epoch\": %lld, \"head_step\": %lld}\n", (long long)ci.epoch,
               (long long)ci.step);
    } else if (hrc == CKPT_OK && head.id == ci.id) {
        printf("%s: head is already epoch %lld (step %lld); nothing to do\n", run,
               (long long)ci.epoch, (long long)ci.step);
    } else {
        printf("%s: head moved to epoch %lld (step %lld); the next resume continues from it.\n",
               run, (long long)ci.epoch, (long long)ci.step);
        if (hrc == CKPT_OK)
            printf("The previous head (epoch %lld, step %lld) and the checkpoints after epoch %lld "
                   "are kept on an abandoned branch (see `ckpt log %s`).\n",
                   (long long)head.epoch, (long long)head.step, (long long)ci.epoch, run);
    }
    return EXIT_OK;
}
