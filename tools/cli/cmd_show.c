/* cmd_show.c - `ckpt show REF`: the tensors of a checkpoint. */
#include <stdio.h>

#include "cli.h"

static void hex16(const uint8_t *h, char *out)
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void shape_str(const ckpt_tensor_info *t, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

int cmd_show(cli *c)
{
    const char *pos[1];
    int np = cli_getopt(c, "show", NULL, pos, 1);
    if (np < 0)
        return EXIT_USAGE;
    if (np == 0)
        return cli_usage("show", "missing REF (RUN or RUN@EPOCH)");
    char run[300];
    int64_t epoch;
    if (ckpt_ref_parse(pos[0], run, sizeof run, &epoch) != CKPT_OK)
        return cli_usage("show", "%s", ckpt_errmsg());
    ckpt_reader *r;
    int rc = ckpt_reader_open(&r, cli_store, run, epoch);
    if (rc)
        return cli_fail("show", rc);
    const ckpt_checkpoint_info *ci = ckpt_reader_checkpoint(r);
    size_t n = ckpt_reader_count(r);
    char time[32];
    fmt_time_us(ci->created_us, time, sizeof time);
    if (c->json) {
        printf("{\"run\": ");
        json_str(stdout, run);
        printf(", \"epoch\": %lld, \"step\": %lld, \"id\": %lld, \"time\": \"%s\","
               " \"logical_bytes\": %llu, \"stored_bytes\": %llu, \"tensors\": [",
               (long long)ci->epoch, (long long)ci->step, (long long)ci->id, time,
               (unsigned long long)ci->logical_bytes, (unsigned long long)ci->stored_bytes);
    } else {
        char lb[32], sb[32];
        fmt_bytes(ci->logical_bytes, lb, sizeof lb);
        fmt_bytes(ci->stored_bytes, sb, sizeof sb);
        printf("run %s  epoch %lld  step %lld  %s  %zu tensors  %s (%s stored)\n\n", run,
               (long long)ci->epoch, (long long)ci->step, time, n, lb, sb);
    }
    static const char *const hdr[] = {"NAME", "KIND", "DTYPE", "SHAPE", "BYTES", "HASH"};
    table *t = c->json ? NULL : table_new(6, hdr, "llllrl");
    for (size_t i = 0; i < n; i++) {
        ckpt_tensor_info ti;
        ckpt_reader_tensor(r, i, &ti);
        char shape[256], hash[33], bytes[32];
        shape_str(&ti, shape, sizeof shape);
        hex16(ti.hash, hash);
        snprintf(bytes, sizeof bytes, "%llu", (unsigned long long)ti.nbytes);
        if (c->json) {
            printf("%s\n  {\"name\": ", i ? "," : "");
            json_str(stdout, ti.name);
            printf(", \"kind\": \"%s\", \"dtype\": \"%s\", \"shape\": %s, \"nbytes\": %s,"
                   " \"hash\": \"%s\"}",
                   ckpt_kind_name(ti.kind), ckpt_dtype_name(ti.dtype), shape, bytes, hash);
        } else {
            const char *row[] = {ti.name, ckpt_kind_name(ti.kind), ckpt_dtype_name(ti.dtype),
                                 shape, bytes, hash};
            table_add(t, row);
        }
    }
    if (c->json) {
        printf("%s]}\n", n ? "\n" : "");
    } else {
        table_print(t, stdout);
        table_free(t);
    }
    ckpt_reader_close(r);
    return EXIT_OK;
}
