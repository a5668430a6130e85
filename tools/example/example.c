/*
 * example.c - the README's C API example: save three checkpoints of a tiny
 * model with metrics, then restore each one and check it byte for byte.
 * Build against an installed ckpt:  cc example.c $(pkg-config --cflags --libs ckpt)
 */
#include <ckpt.h>
#include <stdio.h>
#include <string.h>

#define N 1000

static int fail(const char *what)
{
    fprintf(stderr, "example: %s: %s\n", what, ckpt_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "example.db";
    ckpt_store *s;
    if (ckpt_open(&s, path, NULL) != CKPT_OK)
        return fail("open");
    const char *config = "model:\n  hidden: [32]\noptimizer:\n  lr: 0.001\n";
    int rc = ckpt_run_create(s, "example", config, strlen(config));
    if (rc != CKPT_OK && rc != CKPT_EEXISTS)
        return fail("create run");

    float w[3][N];
    int64_t shape[1] = {N};
    for (int epoch = 1; epoch <= 3; epoch++) {
        for (int i = 0; i < N; i++)
            w[epoch - 1][i] = (float)(i % 17) * 0.01f * (float)epoch;
        ckpt_metric_log(s, "example", "loss", epoch, epoch * 100, 1.0 / epoch);
        ckpt_writer *wr;
        if (ckpt_writer_begin(&wr, s, "example", epoch, epoch * 100) != CKPT_OK)
            return fail("begin");
        if (ckpt_writer_put(wr, "layer1.weight", CKPT_KIND_MODEL, CKPT_F32, 1, shape, w[epoch - 1],
                            sizeof w[0]) != CKPT_OK) {
            ckpt_writer_abort(wr);
            return fail("put");
        }
        if (ckpt_writer_commit(wr, NULL) != CKPT_OK) /* frees wr either way */
            return fail("commit");
    }

    for (int epoch = 1; epoch <= 3; epoch++) {
        ckpt_reader *r;
        size_t i;
        float back[N];
        if (ckpt_reader_open(&r, s, "example", epoch) != CKPT_OK ||
            ckpt_reader_find(r, "layer1.weight", &i) != CKPT_OK ||
            ckpt_reader_read(r, i, 0, back, sizeof back) != CKPT_OK)
            return fail("restore");
        ckpt_reader_close(r);
        if (memcmp(back, w[epoch - 1], sizeof back) != 0) {
            fprintf(stderr, "example: epoch %d differs\n", epoch);
            return 1;
        }
        printf("epoch %d restored byte-identical\n", epoch);
    }
    return ckpt_close(s) == CKPT_OK ? 0 : fail("close");
}
