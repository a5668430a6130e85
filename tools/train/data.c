/*
 * data.c - reads the gzipped IDX files of Fashion-MNIST with zlib and checks
 * everything a damaged or foreign file could get wrong (magic, dimensions,
 * counts, label range, truncation) before training sees a byte of it.
 */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u

typedef struct idx_file {
    gzFile gz;
    char path[4096];
} idx_file;

static int idx_open(idx_file *f, const char *dir, const char *prefix, const char *kind)
{
    int n = snprintf(f->path, sizeof f->path, "%s/%s-%s.gz", dir, prefix, kind);
    if (n < 0 || (size_t)n >= sizeof f->path) {
        fprintf(stderr, "ckpt-train: data directory path too long: %s\n", dir);
        return -1;
    }
    f->gz = gzopen(f->path, "rb");
    if (f->gz == NULL) {
        int e = errno;
        fprintf(stderr, "ckpt-train: cannot open dataset file %s: %s\n", f->path,
                e ? strerror(e) : "out of memory");
        return -1;
    }
    gzbuffer(f->gz, 1 << 17);
    return 0;
}

/* zlib's message for the last error, without the "path: " it prefixes,
 * since every message here already starts with the path. */
static const char *gz_message(idx_file *f, int *zerr)
{
    const char *msg = gzerror(f->gz, zerr);
    size_t plen = strlen(f->path);
    if (*zerr == Z_ERRNO)
        return strerror(errno);
    if (strncmp(msg, f->path, plen) == 0 && msg[plen] == ':' && msg[plen + 1] == ' ')
        return msg + plen + 2;
    return msg;
}

/* Reads exactly len bytes; `what` names the part being read for messages. */
static int idx_read(idx_file *f, void *buf, size_t len, const char *what)
{
    uint8_t *p = buf;
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        int got = gzread(f->gz, p, chunk);
        if (got < 0) {
            int zerr = 0;
            const char *msg = gz_message(f, &zerr);
            fprintf(stderr, "ckpt-train: %s: cannot read %s: %s\n", f->path, what, msg);
            return -1;
        }
        if (got == 0) {
            int zerr = 0;
            const char *msg = gz_message(f, &zerr);
            if (zerr != Z_OK && zerr != Z_BUF_ERROR)
                fprintf(stderr, "ckpt-train: %s: cannot read %s: %s\n", f->path, what, msg);
            else
                fprintf(stderr,
                        "ckpt-train: %s: file is truncated: %zu more bytes of %s expected\n",
                        f->path, len, what);
            return -1;
        }
        p += got;
        len -= (size_t)got;
    }
    return 0;
}

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Reads the header: magic, then ndims big-endian u32 dimensions. */
static int idx_header(idx_file *f, uint32_t magic, uint32_t *dims, int ndims)
{
    uint8_t b[16];
    size_t len = 4 + 4 * (size_t)ndims;
    if (idx_read(f, b, len, "the IDX header") != 0)
        return -1;
    uint32_t m = be32(b);
    if (m != magic) {
        fprintf(stderr,
                "ckpt-train: %s: not an IDX %s file (magic number 0x%08x, expected 0x%08x)\n",
                f->path, magic == IDX_MAGIC_IMAGES ? "image" : "label", (unsigned)m,
                (unsigned)magic);
        return -1;
    }
    for (int i = 0; i < ndims; i++)
        dims[i] = be32(b + 4 + 4 * i);
    return 0;
}

/* After the payload the gzip stream must end: trailing data means the file
 * is not what its header says. Reading to the end also makes zlib check the
 * gzip CRC, so a corrupted payload is caught even when it inflates. */
static int idx_expect_end(idx_file *f, int drained)
{
    uint8_t extra;
    if (!drained) {
        /* Only part of the file was needed: its CRC cannot be checked
         * without inflating the rest, which a limit is meant to avoid. */
        return 0;
    }
    int got = gzread(f->gz, &extra, 1);
    if (got < 0) {
        int zerr = 0;
        fprintf(stderr, "ckpt-train: %s: %s\n", f->path, gz_message(f, &zerr));
        return -1;
    }
    if (got > 0) {
        fprintf(stderr, "ckpt-train: %s: unexpected data after the last example\n", f->path);
        return -1;
    }
    int zerr = 0;
    const char *msg = gz_message(f, &zerr);
    if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
        fprintf(stderr, "ckpt-train: %s: %s\n", f->path, msg);
        return -1;
    }
    return 0;
}

static void idx_close(idx_file *f)
{
    if (f->gz != NULL)
        gzclose(f->gz);
    f->gz = NULL;
}

int tr_data_load(const char *dir, const char *prefix, size_t limit, tr_dataset *out)
{
    idx_file img = {0}, lab = {0};
    uint32_t idims[3], ldims[1];
    memset(out, 0, sizeof *out);

    if (idx_open(&img, dir, prefix, "images-idx3-ubyte") != 0)
        goto fail;
    if (idx_open(&lab, dir, prefix, "labels-idx1-ubyte") != 0)
        goto fail;
    if (idx_header(&img, IDX_MAGIC_IMAGES, idims, 3) != 0 ||
        idx_header(&lab, IDX_MAGIC_LABELS, ldims, 1) != 0)
        goto fail;
    if (idims[1] != TR_IMAGE_ROWS || idims[2] != TR_IMAGE_COLS) {
        fprintf(stderr, "ckpt-train: %s: images are %ux%u, expected %dx%d\n", img.path,
                (unsigned)idims[1], (unsigned)idims[2], TR_IMAGE_ROWS, TR_IMAGE_COLS);
        goto fail;
    }
    if (idims[0] != ldims[0]) {
        fprintf(stderr, "ckpt-train: %s holds %u images but %s holds %u labels\n", img.path,
                (unsigned)idims[0], lab.path, (unsigned)ldims[0]);
        goto fail;
    }
    if (idims[0] == 0) {
        fprintf(stderr, "ckpt-train: %s holds no images\n", img.path);
        goto fail;
    }
    size_t n = idims[0];
    int drained = 1;
    if (limit > 0 && limit < n) {
        n = limit;
        drained = 0;
    }
    /* n <= 2^32 and TR_IMAGE_SIZE is small: no overflow on 64-bit size_t,
     * but check anyway for 32-bit hosts. */
    if (n > SIZE_MAX / TR_IMAGE_SIZE) {
        fprintf(stderr, "ckpt-train: %s: %zu images do not fit in memory\n", img.path, n);
        goto fail;
    }
    out->pixels = malloc(n * TR_IMAGE_SIZE);
    out->labels = malloc(n);
    if (out->pixels == NULL || out->labels == NULL) {
        fprintf(stderr, "ckpt-train: out of memory loading %zu examples from %s\n", n,
                img.path);
        goto fail;
    }
    if (idx_read(&img, out->pixels, n * TR_IMAGE_SIZE, "image pixels") != 0 ||
        idx_read(&lab, out->labels, n, "labels") != 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (out->labels[i] >= TR_CLASSES) {
            fprintf(stderr, "ckpt-train: %s: label %u of example %zu (byte offset %zu) is not in 0..%d\n",
                    lab.path, (unsigned)out->labels[i], i, 8 + i, TR_CLASSES - 1);
            goto fail;
        }
    }
    if (idx_expect_end(&img, drained) != 0 || idx_expect_end(&lab, drained) != 0)
        goto fail;
    out->n = n;
    idx_close(&img);
    idx_close(&lab);
    return 0;

fail:
    idx_close(&img);
    idx_close(&lab);
    tr_data_free(out);
    return -1;
}

void tr_data_free(tr_dataset *d)
{
    free(d->pixels);
    free(d->labels);
    memset(d, 0, sizeof *d);
}
