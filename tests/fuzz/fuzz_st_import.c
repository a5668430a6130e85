/*
 * fuzz_st_import.c - the whole safetensors import path: the input is
 * written to a file and ckpt_import_safetensors() stores it into one store
 * per process (runs named by a counter). An import must succeed exactly
 * when ckpt__st_parse_file() accepts the image (and the names pass the
 * writer's rule); a successful one is exported again and every tensor must
 * come back with the same dtype, shape and bytes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "safetensors.h"

/* A new store after this many imports keeps the store (and time per
 * input) small over a long run. */
#define IMPORTS_PER_STORE 2000

static ckpt_store *store;
static unsigned long counter, imported;

static void open_store(void)
{
    const char *path = fz_path("import.db");
    if (store) {
        ckpt_close(store);
        fz_remove_store(path);
    }
    ckpt_open_opts o = {0, 2000, CKPT_DURABLE_OFF};
    if (ckpt_open(&store, path, &o) != CKPT_OK ||
        ckpt_set_param(store, CKPT_PARAM_THREADS, 1) != CKPT_OK) {
        fprintf(stderr, "cannot open %s: %s\n", path, ckpt_errmsg());
        abort();
    }
    imported = 0;
}

static void close_store(void)
{
    if (store) {
        ckpt_close(store);
        fz_remove_store(fz_path("import.db"));
    }
}

static const ckpt__st_tensor *find(const ckpt__st_header *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->t[i].name, name) == 0)
            return &h->t[i];
    return NULL;
}

static int names_ok(const ckpt__st_header *h)
{
    for (size_t i = 0; i < h->n; i++) {
        size_t n = strlen(h->t[i].name);
        if (n > 256)
            return 0;
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)h->t[i].name[k] < 0x20 || h->t[i].name[k] == 0x7f)
                return 0;
    }
    return 1;
}

/* The importer's rule for "ckpt.kind.<name>" metadata: the value is a kind
 * and the name a tensor of the file. */
static int kinds_ok(const ckpt__st_header *h)
{
    static const char prefix[] = "ckpt.kind.";
    for (size_t i = 0; i < h->nmeta; i++) {
        if (strncmp(h->meta_key[i], prefix, sizeof prefix - 1) != 0)
            continue;
        if (ckpt_kind_parse(h->meta_val[i]) < 0)
            return 0;
        int found = 0;
        for (size_t t = 0; t < h->n && !found; t++)
            found = strcmp(h->t[t].name, h->meta_key[i] + sizeof prefix - 1) == 0;
        if (!found)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store) {
        open_store();
        atexit(close_store);
    } else if (imported >= IMPORTS_PER_STORE) {
        open_store();
    }
    const char *in = fz_path("in.safetensors"), *out = fz_path("out.safetensors");
    fz_write_file(in, data, size);
    char run[32];
    snprintf(run, sizeof run, "r%lu", ++counter);

    ckpt__st_header h;
    int prc = ckpt__st_parse_file(data, size, in, &h);
    int64_t id = 0;
    int rc = fz_rc(ckpt_import_safetensors(store, in, run, (int64_t)(counter % 3), 7, &id),
                   "ckpt_import_safetensors");
    if (prc != CKPT_OK) {
        FZ_CHECK(rc == prc, "import gave %d where parsing gave %d", rc, prc);
        return 0;
    }
    if (!names_ok(&h)) {
        FZ_CHECK(rc == CKPT_EINVAL, "import of a tensor name the writer refuses gave %d", rc);
        ckpt__st_header_free(&h);
        return 0;
    }
    if (!kinds_ok(&h)) {
        FZ_CHECK(rc == CKPT_EINVAL, "import of a file with invalid ckpt.kind metadata gave %d", rc);
        ckpt__st_header_free(&h);
        return 0;
    }
    FZ_CHECK(rc == CKPT_OK, "a file that parses was not imported: %s", ckpt_errmsg());
    imported++;
    FZ_CHECK(id > 0, "import gave checkpoint id %" PRId64, id);

    rc = fz_rc(ckpt_export_safetensors(store, run, CKPT_HEAD, out), "ckpt_export_safetensors");
    FZ_CHECK(rc == CKPT_OK, "an imported checkpoint does not export: %s", ckpt_errmsg());
    size_t en = 0;
    uint8_t *exp = fz_read_file(out, &en);
    FZ_CHECK(exp != NULL, "export wrote no file");
    ckpt__st_header e;
    rc = fz_rc(ckpt__st_parse_file(exp, en, out, &e), "parsing the export");
    FZ_CHECK(rc == CKPT_OK, "the export does not parse: %s", ckpt_errmsg());
    FZ_CHECK(e.n == h.n, "exported %zu tensors of %zu", e.n, h.n);
    const uint8_t *d0 = data + 8 + h.header_len, *d1 = exp + 8 + e.header_len;
    for (size_t i = 0; i < h.n; i++) {
        const ckpt__st_tensor *a = &h.t[i], *b = find(&e, a->name);
        FZ_CHECK(b != NULL, "tensor '%s' missing from the export", a->name);
        FZ_CHECK(a->dtype == b->dtype && a->ndim == b->ndim &&
                     memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0 &&
                     a->end - a->begin == b->end - b->begin,
                 "tensor '%s' changed dtype or shape", a->name);
        FZ_CHECK(memcmp(d0 + a->begin, d1 + b->begin, (size_t)(a->end - a->begin)) == 0,
                 "tensor '%s' changed bytes", a->name);
    }
    int has_run = 0;
    for (size_t k = 0; k < e.nmeta; k++)
        if (strcmp(e.meta_key[k], "ckpt.run") == 0)
            has_run = strcmp(e.meta_val[k], run) == 0;
    FZ_CHECK(has_run, "export metadata lacks ckpt.run = %s", run);
    ckpt__st_header_free(&e);
    ckpt__st_header_free(&h);
    free(exp);
    return 0;
}
