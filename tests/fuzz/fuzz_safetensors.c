/*
 * fuzz_safetensors.c - ckpt__st_parse_file() on a whole file image. What it
 * accepts must satisfy the format's promises (known dtypes, shapes that
 * match the byte ranges, ranges tiling the data section exactly, unique
 * non-empty names), and must survive a round trip: the header written back
 * by ckpt__st_write_header() parses to the same tensors and metadata.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fuzz_common.h"
#include "safetensors.h"

static int by_begin(const void *a, const void *b)
{
    const ckpt__st_tensor *x = *(ckpt__st_tensor *const *)a, *y = *(ckpt__st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    /* empty tensors share their begin with the next one */
    return x->end < y->end ? -1 : x->end > y->end;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(ckpt__st_tensor *const *)a)->name, (*(ckpt__st_tensor *const *)b)->name);
}

static void check_header(const ckpt__st_header *h, uint64_t data_size)
{
    ckpt__st_tensor **v = malloc((h->n ? h->n : 1) * sizeof *v);
    for (size_t i = 0; i < h->n; i++) {
        const ckpt__st_tensor *t = &h->t[i];
        FZ_CHECK(t->name && t->name[0], "tensor %zu has an empty name", i);
        FZ_CHECK(strcmp(t->name, "__metadata__") != 0, "a tensor named __metadata__");
        size_t es = ckpt__st_dtype_size(t->dtype);
        FZ_CHECK(es > 0 && ckpt__st_dtype_name(t->dtype), "tensor '%s': dtype %d", t->name,
                 t->dtype);
        FZ_CHECK(t->ndim >= 0 && t->ndim <= CKPT_MAX_DIMS, "tensor '%s': ndim %d", t->name, t->ndim);
        unsigned __int128 bytes = es;
        for (int d = 0; d < t->ndim; d++) {
            FZ_CHECK(t->shape[d] >= 0, "tensor '%s': negative dim", t->name);
            bytes *= (uint64_t)t->shape[d];
            if (bytes > data_size)
                bytes = (unsigned __int128)data_size + 1; /* stays > without overflowing */
        }
        FZ_CHECK(t->begin <= t->end && t->end <= data_size, "tensor '%s': range %llu..%llu of %llu",
                 t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                 (unsigned long long)data_size);
        FZ_CHECK(bytes == t->end - t->begin, "tensor '%s': shape and byte range disagree", t->name);
        v[i] = &h->t[i];
    }
    qsort(v, h->n, sizeof *v, by_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < h->n; i++) {
        FZ_CHECK(v[i]->begin == at, "tensor '%s' starts at %llu, expected %llu", v[i]->name,
                 (unsigned long long)v[i]->begin, (unsigned long long)at);
        at = v[i]->end;
    }
    FZ_CHECK(at == data_size, "tensors cover %llu of %llu data bytes", (unsigned long long)at,
             (unsigned long long)data_size);
    qsort(v, h->n, sizeof *v, by_name);
    for (size_t i = 1; i < h->n; i++)
        FZ_CHECK(strcmp(v[i - 1]->name, v[i]->name) != 0, "duplicate tensor '%s'", v[i]->name);
    free(v);
    for (size_t k = 0; k < h->nmeta; k++)
        FZ_CHECK(h->meta_key[k] && h->meta_val[k], "metadata entry %zu is NULL", k);
    for (size_t k = 1; k < h->nmeta; k++)
        for (size_t j = 0; j < k && k < 64; j++)
            FZ_CHECK(strcmp(h->meta_key[j], h->meta_key[k]) != 0, "duplicate metadata key '%s'",
                     h->meta_key[k]);
}

static void round_trip(const ckpt__st_header *h, const uint8_t *data, uint64_t data_size)
{
    char *hdr = NULL;
    size_t hlen = 0;
    int rc = fz_rc(ckpt__st_write_header(h->t, h->n, (const char *const *)h->meta_key,
                                         (const char *const *)h->meta_val, h->nmeta, &hdr, &hlen),
                   "ckpt__st_write_header");
    /* A parsed header may still be unwritable only for lack of memory. */
    FZ_CHECK(rc == CKPT_OK || rc == CKPT_ENOMEM, "a header that parsed cannot be written: %s",
             ckpt_errmsg());
    if (rc)
        return;
    FZ_CHECK(hlen >= 8 && (hlen - 8) % 8 == 0 && ckpt__st_read_u64le((uint8_t *)hdr) == hlen - 8,
             "written header: %zu bytes, prefix %llu", hlen,
             (unsigned long long)ckpt__st_read_u64le((uint8_t *)hdr));
    size_t total = hlen + (size_t)data_size;
    uint8_t *img = malloc(total ? total : 1);
    memcpy(img, hdr, hlen);
    memcpy(img + hlen, data, (size_t)data_size);
    ckpt__free(hdr);
    ckpt__st_header h2;
    rc = fz_rc(ckpt__st_parse_file(img, total, "round trip", &h2), "parsing a written header");
    FZ_CHECK(rc == CKPT_OK, "a written header does not parse: %s", ckpt_errmsg());
    FZ_CHECK(h2.n == h->n && h2.nmeta == h->nmeta, "round trip: %zu/%zu tensors, %zu/%zu metadata",
             h2.n, h->n, h2.nmeta, h->nmeta);
    for (size_t i = 0; i < h->n; i++) {
        const ckpt__st_tensor *a = &h->t[i], *b = &h2.t[i];
        FZ_CHECK(strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->ndim == b->ndim &&
                     memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0 &&
                     a->begin == b->begin && a->end == b->end,
                 "round trip changed tensor %zu ('%s')", i, a->name);
    }
    for (size_t k = 0; k < h->nmeta; k++)
        FZ_CHECK(strcmp(h->meta_key[k], h2.meta_key[k]) == 0 &&
                     strcmp(h->meta_val[k], h2.meta_val[k]) == 0,
                 "round trip changed metadata '%s'", h->meta_key[k]);
    ckpt__st_header_free(&h2);
    free(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckpt__st_header h;
    int rc = fz_rc(ckpt__st_parse_file(data, size, "fuzz.safetensors", &h), "ckpt__st_parse_file");
    FZ_CHECK(rc == CKPT_OK || rc == CKPT_EINVAL || rc == CKPT_ENOMEM, "parse returned %d", rc);
    if (rc != CKPT_OK) {
        FZ_CHECK(h.t == NULL && h.n == 0 && h.pool == NULL, "failed parse left a header behind");
        FZ_CHECK(rc != CKPT_EINVAL || strstr(ckpt_errmsg(), "fuzz.safetensors") != NULL,
                 "message does not name the file: %s", ckpt_errmsg());
        return 0;
    }
    uint64_t data_size = size - 8 - h.header_len;
    FZ_CHECK(h.header_len == ckpt__st_read_u64le(data), "header_len %llu",
             (unsigned long long)h.header_len);
    check_header(&h, data_size);
    round_trip(&h, data + 8 + h.header_len, data_size);
    ckpt__st_header_free(&h);
    return 0;
}
