/* cmd_verify.c - `ckpt verify [REF]`: name every damaged tensor, exit 1. */
#include <stdio.h>

#include "cli.h"

typedef struct {
    int json;
    int n;
} vctx;

static void report(void *ctx, const char *run, int64_t epoch, int64_t step, const char *tensor,
                   const char *problem)
{
    vctx *v = ctx;
    if (v->json) {
        printf("%s\n  {\"run\": ", v->n ? "," : "");
        json_str(stdout, run);
        printf(", \"epoch\": %lld, \"step\": %lld, \"tensor\": ", (long long)epoch, (long long)step);
        json_str(stdout, tensor);
        printf(", \"problem\": ");
        json_str(stdout, problem);
        printf("}");
    } else if (run) {
        printf("DAMAGED  %s@%lld (step %lld)  tensor '%s': %s\n", run, (long long)epoch,
               (long long)step, tensor ? tensor : "?", problem);
    } else {
        printf("DAMAGED  %s\n", problem);
    }
    v->n++;
}

int cmd_verify(cli *c)
{
    const char *pos[1];
    int np = cli_getopt(c, "verify", NULL, pos, 1);
    if (np < 0)
        return EXIT_USAGE;
    char run[300];
    int64_t epoch = CKPT_HEAD;
    int whole_run = 0;
    if (np) {
        if (ckpt_ref_parse(pos[0], run, sizeof run, &epoch) != CKPT_OK)
            return cli_usage("verify", "%s", ckpt_errmsg());
        whole_run = epoch == CKPT_HEAD;
    }
    vctx v = {c->json, 0};
    if (c->json)
        printf("{\"problems\": [");
    uint64_t bad = 0;
    int rc = ckpt_verify(cli_store, np ? run : NULL, epoch, report, &v, &bad);
    if (c->json)
        printf("%s], \"damaged\": %llu}\n", v.n ? "\n" : "", (unsigned long long)bad);
    if (rc == CKPT_OK) {
        if (!c->json)
            printf("ok: %s%s verified, nothing damaged\n", np ? pos[0] : "store",
                   whole_run ? " (all checkpoints)" : "");
        return EXIT_OK;
    }
    if (rc == CKPT_ECORRUPT) {
        fprintf(stderr, "ckpt verify: %llu damaged item(s)\n", (unsigned long long)bad);
        return EXIT_FAIL;
    }
    return cli_fail("verify", rc);
}
