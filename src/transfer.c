/*
 * transfer.c - import and export of safetensors files. Built only on the
 * public API (writer, reader, runs); the format itself is in safetensors.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "error.h"
#include "safetensors.h"
#include "store.h"

/* Tensor data is copied to the export file through a buffer of this size,
 * so exporting never holds a whole checkpoint (or tensor) in memory. */
#define EXPORT_BUF (8u << 20)

#define KIND_PREFIX "ckpt.kind."

static int os_err(int e, const char *what, const char *path)
{
    int code = (e == ENOSPC || e == EDQUOT || e == EFBIG) ? CKPT_EFULL : CKPT_EIO;
    return ckpt__err(code, "%s %s: %s", what, path, strerror(e));
}

static int write_all(int fd, const void *buf, size_t n, const char *path)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return os_err(errno, "writing", path);
        }
        if (w == 0)
            return os_err(ENOSPC, "writing", path);
        p += w;
        n -= (size_t)w;
    }
    return CKPT_OK;
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off, const char *path)
{
    char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return os_err(errno, "reading", path);
        }
        if (r == 0)
            return ckpt__err(CKPT_EINVAL, "%s: file shrank while being read (at offset %" PRIu64 ")",
                             path, off);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return CKPT_OK;
}

/* fsync of the directory holding path, so that a rename into it survives a
 * power loss. */
static int sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? ckpt__strndup(path, slash == path ? 1 : (size_t)(slash - path))
                      : ckpt__strdup(".");
    if (!dir)
        return ckpt__err(CKPT_ENOMEM, "out of memory");
    int rc = CKPT_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        rc = os_err(errno, "opening directory", dir);
    else if (fsync(fd) != 0 && errno != EINVAL)
        rc = os_err(errno, "syncing directory", dir);
    if (fd >= 0)
        close(fd);
    ckpt__free(dir);
    return rc;
}

/* ---------------------------------------------------------------- export */

typedef struct exporter {
    ckpt_reader *r;
    char *config;
    ckpt__st_tensor *t;
    size_t n;
    char **mk; /* owned strings only where mk_own[i] */
    const char **mv;
    unsigned char *mk_own;
    size_t nmeta;
    char num[2][24];
    char *hdr;
    size_t hdr_len;
    char *buf;
    size_t buf_len;
} exporter;

static void exporter_free(exporter *e)
{
    for (size_t i = 0; i < e->nmeta; i++)
        if (e->mk_own[i])
            ckpt__free(e->mk[i]);
    ckpt__free(e->mk);
    ckpt__free(e->mv);
    ckpt__free(e->mk_own);
    ckpt__free(e->t);
    ckpt__free(e->hdr);
    ckpt__free(e->buf);
    ckpt_free(e->config);
    ckpt_reader_close(e->r);
}

/* Builds the header (tensor table and __metadata__) from the open reader. */
static int build_header(ckpt_store *s, exporter *e)
{
    const ckpt_checkpoint_info *ci = ckpt_reader_checkpoint(e->r);
    const char *run = ckpt_reader_run(e->r);
    int rc = ckpt_run_config(s, run, &e->config);
    if (rc)
        return rc;
    e->n = ckpt_reader_count(e->r);
    size_t maxmeta;
    if (ckpt__add_size(e->n, 4, &maxmeta))
        return ckpt__err(CKPT_ENOMEM, "too many tensors");
    e->t = ckpt__calloc(e->n ? e->n : 1, sizeof *e->t);
    e->mk = ckpt__calloc(maxmeta, sizeof *e->mk);
    e->mv = ckpt__calloc(maxmeta, sizeof *e->mv);
    e->mk_own = ckpt__calloc(maxmeta, 1);
    if (!e->t || !e->mk || !e->mv || !e->mk_own)
        return ckpt__err(CKPT_ENOMEM, "out of memory exporting run '%s'", run);

    snprintf(e->num[0], sizeof e->num[0], "%" PRId64, ci->epoch);
    snprintf(e->num[1], sizeof e->num[1], "%" PRId64, ci->step);
    e->mk[0] = "ckpt.run", e->mv[0] = run;
    e->mk[1] = "ckpt.epoch", e->mv[1] = e->num[0];
    e->mk[2] = "ckpt.step", e->mv[2] = e->num[1];
    e->nmeta = 3;
    if (e->config) {
        e->mk[3] = "ckpt.config", e->mv[3] = e->config;
        e->nmeta = 4;
    }

    uint64_t off = 0, biggest = 0;
    for (size_t i = 0; i < e->n; i++) {
        ckpt_tensor_info ti;
        if ((rc = ckpt_reader_tensor(e->r, i, &ti)))
            return rc;
        ckpt__st_tensor *t = &e->t[i];
        t->name = (char *)ti.name;
        t->dtype = ti.dtype;
        t->ndim = ti.ndim;
        memcpy(t->shape, ti.shape, sizeof t->shape);
        t->begin = off;
        if (__builtin_add_overflow(off, ti.nbytes, &off))
            return ckpt__err(CKPT_ECORRUPT, "run '%s': tensor sizes overflow", run);
        t->end = off;
        if (ti.nbytes > biggest)
            biggest = ti.nbytes;

        const char *kind = ckpt_kind_name(ti.kind);
        if (!kind)
            return ckpt__err(CKPT_ECORRUPT, "run '%s' epoch %" PRId64 ": tensor '%s' has kind %d",
                             run, ci->epoch, ti.name, ti.kind);
        size_t nl = strlen(ti.name), kl;
        if (ckpt__add_size(nl, sizeof KIND_PREFIX, &kl))
            return ckpt__err(CKPT_ENOMEM, "out of memory");
        char *key = ckpt__malloc(kl);
        if (!key)
            return ckpt__err(CKPT_ENOMEM, "out of memory exporting run '%s'", run);
        memcpy(key, KIND_PREFIX, sizeof KIND_PREFIX - 1);
        memcpy(key + sizeof KIND_PREFIX - 1, ti.name, nl + 1);
        e->mk[e->nmeta] = key;
        e->mk_own[e->nmeta] = 1;
        e->mv[e->nmeta] = kind;
        e->nmeta++;
    }
    e->buf_len = biggest < EXPORT_BUF ? (size_t)biggest : EXPORT_BUF;
    if (e->buf_len) {
        e->buf = ckpt__malloc(e->buf_len);
        if (!e->buf)
            return ckpt__err(CKPT_ENOMEM, "out of memory exporting run '%s'", run);
    }
    return ckpt__st_write_header(e->t, e->n, (const char *const *)e->mk, e->mv, e->nmeta, &e->hdr,
                                 &e->hdr_len);
}

static int write_file(exporter *e, int fd, const char *tmp)
{
    int rc = write_all(fd, e->hdr, e->hdr_len, tmp);
    for (size_t i = 0; i < e->n && !rc; i++) {
        uint64_t size = e->t[i].end - e->t[i].begin;
        for (uint64_t off = 0; off < size && !rc; off += e->buf_len) {
            size_t len = size - off < e->buf_len ? (size_t)(size - off) : e->buf_len;
            if ((rc = ckpt_reader_read(e->r, i, off, e->buf, len)))
                break;
            rc = write_all(fd, e->buf, len, tmp);
        }
    }
    if (!rc && fsync(fd) != 0)
        rc = os_err(errno, "syncing", tmp);
    return rc;
}

static int export_reader(ckpt_store *s, exporter e, const char *path);

int ckpt_export_safetensors(ckpt_store *s, const char *run, int64_t epoch, const char *path)
{
    if (!s || !run || !path || !*path)
        return ckpt__err(CKPT_EINVAL, "ckpt_export_safetensors: store, run and path are required");
    exporter e = {0};
    int rc = ckpt_reader_open(&e.r, s, run, epoch);
    if (rc)
        return ckpt__err_prefix(rc, "exporting to %s", path);
    return export_reader(s, e, path);
}

int ckpt_export_safetensors_id(ckpt_store *s, int64_t checkpoint_id, const char *path)
{
    if (!s || !path || !*path)
        return ckpt__err(CKPT_EINVAL, "ckpt_export_safetensors_id: store and path are required");
    exporter e = {0};
    int rc = ckpt_reader_open_id(&e.r, s, checkpoint_id);
    if (rc)
        return ckpt__err_prefix(rc, "exporting to %s", path);
    return export_reader(s, e, path);
}

/* Writes the checkpoint e.r reads to path; frees e. */
static int export_reader(ckpt_store *s, exporter e, const char *path)
{
    const char *run = ckpt_reader_run(e.r);
    int rc;
    if ((rc = build_header(s, &e))) {
        exporter_free(&e);
        return ckpt__err_prefix(rc, "exporting to %s", path);
    }

    /* Same directory as path, so the rename is atomic. */
    size_t pl = strlen(path), tl;
    char *tmp = NULL;
    if (ckpt__add_size(pl, 32, &tl) || !(tmp = ckpt__malloc(tl))) {
        exporter_free(&e);
        return ckpt__err(CKPT_ENOMEM, "out of memory exporting to %s", path);
    }
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) {
        /* left behind by a crashed export of a process with our pid */
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (fd < 0) {
        rc = os_err(errno, "creating", tmp);
    } else {
        rc = write_file(&e, fd, tmp);
        if (close(fd) != 0 && !rc)
            rc = os_err(errno, "closing", tmp);
        if (!rc && rename(tmp, path) != 0)
            rc = os_err(errno, "renaming to", path);
        if (rc)
            unlink(tmp);
        else
            rc = sync_dir(path);
    }
    if (rc)
        rc = ckpt__err_prefix(rc, "exporting run '%s' to %s", run, path);
    ckpt__free(tmp);
    exporter_free(&e);
    return rc;
}

/* ---------------------------------------------------------------- import */

typedef struct kind_ref {
    const char *name; /* tensor name: the key after "ckpt.kind." */
    const char *value;
    int kind;         /* parsed value */
    int used;         /* names a tensor of the file */
} kind_ref;

static int kind_ref_cmp(const void *a, const void *b)
{
    return strcmp(((const kind_ref *)a)->name, ((const kind_ref *)b)->name);
}

/* Kinds from __metadata__ "ckpt.kind.<name>" (written by export); a tensor
 * without one is a model tensor. An entry whose value is not a kind, or
 * that names no tensor of the file, is refused: the file claims something
 * ckpt cannot honour. (Metadata keys are unique: the parser refuses
 * duplicate keys.) */
static int resolve_kinds(const ckpt__st_header *h, int *kinds, const char *path)
{
    size_t nk = 0;
    for (size_t i = 0; i < h->nmeta; i++)
        if (strncmp(h->meta_key[i], KIND_PREFIX, sizeof KIND_PREFIX - 1) == 0)
            nk++;
    kind_ref *refs = NULL;
    if (nk) {
        refs = ckpt__calloc(nk, sizeof *refs);
        if (!refs)
            return ckpt__err(CKPT_ENOMEM, "out of memory importing");
        nk = 0;
        for (size_t i = 0; i < h->nmeta; i++)
            if (strncmp(h->meta_key[i], KIND_PREFIX, sizeof KIND_PREFIX - 1) == 0)
                refs[nk++] = (kind_ref){h->meta_key[i] + sizeof KIND_PREFIX - 1, h->meta_val[i],
                                        ckpt_kind_parse(h->meta_val[i]), 0};
        qsort(refs, nk, sizeof *refs, kind_ref_cmp);
    }
    int rc = CKPT_OK;
    for (size_t i = 0; i < nk && rc == CKPT_OK; i++)
        if (refs[i].kind < 0)
            rc = ckpt__err(CKPT_EINVAL,
                           "%s: __metadata__ \"%s%.256s\" is '%.64s', not a kind (model, "
                           "optimizer, rng, state, extra)",
                           path, KIND_PREFIX, refs[i].name, refs[i].value);
    for (size_t i = 0; i < h->n && rc == CKPT_OK; i++) {
        kind_ref key = {h->t[i].name, NULL, 0, 0};
        kind_ref *f = nk ? bsearch(&key, refs, nk, sizeof *refs, kind_ref_cmp) : NULL;
        kinds[i] = f ? f->kind : CKPT_KIND_MODEL;
        if (f)
            f->used = 1;
    }
    for (size_t i = 0; i < nk && rc == CKPT_OK; i++)
        if (!refs[i].used)
            rc = ckpt__err(CKPT_EINVAL,
                           "%s: __metadata__ \"%s%.256s\" names no tensor of the file", path,
                           KIND_PREFIX, refs[i].name);
    ckpt__free(refs);
    return rc;
}

/* A run's current line (the head and its ancestors) holds at most one
 * checkpoint per (epoch, step): importing the same file twice must not make
 * `RUN@EPOCH` ambiguous. Checkpoints on abandoned branches do not count. */
static int check_not_on_line(ckpt_store *s, const char *run, int64_t epoch, int64_t step,
                             const char *path)
{
    int64_t run_id;
    int rc = ckpt__run_id(s, run, &run_id, NULL);
    if (rc == CKPT_ENOTFOUND)
        return CKPT_OK; /* a new run */
    if (rc == CKPT_OK && (rc = ckpt__line_has(s, run_id, epoch, step)) == 1)
        rc = ckpt__err(CKPT_EEXISTS,
                       "importing %s: run '%s' already has a checkpoint at epoch %" PRId64
                       " step %" PRId64 " on its current line (give another --step, or roll "
                       "back with `ckpt restore` first)",
                       path, run, epoch, step);
    return rc;
}

/* The writer's tensor-name rule (1..256 bytes, no control characters),
 * checked here too so that such a file is refused before the run is
 * created rather than after. */
static int check_tensor_names(const ckpt__st_header *h, const char *path)
{
    for (size_t i = 0; i < h->n; i++) {
        const char *name = h->t[i].name;
        size_t n = strlen(name);
        if (n > 256)
            return ckpt__err(CKPT_EINVAL, "%s: tensor name '%.64s...' is %zu bytes long (at most 256)",
                             path, name, n);
        for (size_t k = 0; k < n; k++) {
            unsigned char c = (unsigned char)name[k];
            if (c < 0x20 || c == 0x7f)
                return ckpt__err(CKPT_EINVAL,
                                 "%s: tensor name '%.64s' has a control character (0x%02x) at byte %zu",
                                 path, name, c, k);
        }
    }
    return CKPT_OK;
}

/* Creates run unless it exists, with the config a ckpt export recorded
 * in __metadata__ ("ckpt.config"), so export -> import keeps it. */
static int ensure_run(ckpt_store *s, const char *run, const ckpt__st_header *h)
{
    ckpt_checkpoint_info ci;
    int rc = ckpt_head(s, run, &ci);
    if (rc == CKPT_OK || rc == CKPT_ENOCHECKPOINT)
        return CKPT_OK;
    if (rc != CKPT_ENOTFOUND)
        return rc;
    const char *config = NULL;
    for (size_t i = 0; i < h->nmeta; i++)
        if (strcmp(h->meta_key[i], "ckpt.config") == 0)
            config = h->meta_val[i];
    rc = ckpt_run_create(s, run, config, config ? strlen(config) : 0);
    if (rc == CKPT_EINVAL && config)
        return ckpt__err_prefix(rc, "its __metadata__ \"ckpt.config\" is not a valid config");
    /* another process may have created it since ckpt_head */
    return rc == CKPT_EEXISTS ? CKPT_OK : rc;
}

static int store_tensors(ckpt_store *s, const ckpt__st_header *h, const int *kinds,
                         const unsigned char *data, const char *run, int64_t epoch, int64_t step,
                         int64_t *out_id)
{
    ckpt_writer *w;
    int rc = ckpt_writer_begin(&w, s, run, epoch, step);
    if (rc)
        return rc;
    for (size_t i = 0; i < h->n; i++) {
        const ckpt__st_tensor *t = &h->t[i];
        rc = ckpt_writer_put(w, t->name, kinds[i], t->dtype, t->ndim, t->shape,
                             data ? data + t->begin : (const unsigned char *)"",
                             (size_t)(t->end - t->begin));
        if (rc) {
            ckpt_writer_abort(w);
            return rc;
        }
    }
    return ckpt_writer_commit(w, out_id);
}

int ckpt_import_safetensors(ckpt_store *s, const char *path, const char *run, int64_t epoch,
                            int64_t step, int64_t *out_id)
{
    if (!s || !path || !run)
        return ckpt__err(CKPT_EINVAL, "ckpt_import_safetensors: store, path and run are required");
    if (epoch < 0 || step < 0)
        return ckpt__err(CKPT_EINVAL, "importing %s: epoch %" PRId64 " and step %" PRId64
                         " must not be negative", path, epoch, step);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return ckpt__err(CKPT_ENOTFOUND, "importing %s: no such file", path);
        return os_err(errno, "opening", path);
    }
    ckpt__st_header h = {0};
    char *hdr = NULL;
    int *kinds = NULL;
    void *map = MAP_FAILED;
    size_t map_len = 0;
    const unsigned char *data = NULL;
    struct stat st;
    unsigned char pre[8] = {0};
    uint64_t size, hlen = 0, data_size;
    int rc;

    if (fstat(fd, &st) != 0) {
        rc = os_err(errno, "reading", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = ckpt__err(CKPT_EINVAL, "%s is not a regular file", path);
        goto out;
    }
    size = (uint64_t)st.st_size;
    if (size >= 8) {
        if ((rc = pread_all(fd, pre, 8, 0, path)))
            goto out;
        hlen = ckpt__st_read_u64le(pre);
    }
    if ((rc = ckpt__st_check_sizes(size, hlen, path, &data_size)))
        goto out;
    /* hlen <= 100 MiB here, so it fits a size_t */
    if (!(hdr = ckpt__malloc((size_t)hlen))) {
        rc = ckpt__err(CKPT_ENOMEM, "out of memory reading the header of %s", path);
        goto out;
    }
    if ((rc = pread_all(fd, hdr, (size_t)hlen, 8, path)) ||
        (rc = ckpt__st_parse_header(hdr, (size_t)hlen, data_size, path, &h)) ||
        (rc = check_tensor_names(&h, path)))
        goto out;
    ckpt__free(hdr);
    hdr = NULL;
    if (!(kinds = ckpt__calloc(h.n ? h.n : 1, sizeof *kinds))) {
        rc = ckpt__err(CKPT_ENOMEM, "out of memory importing %s", path);
        goto out;
    }
    if ((rc = resolve_kinds(&h, kinds, path)) ||
        (rc = check_not_on_line(s, run, epoch, step, path)))
        goto out;

    if (data_size) {
        if (size > SIZE_MAX) {
            rc = ckpt__err(CKPT_EINVAL, "%s: %" PRIu64 " bytes is too large to map", path, size);
            goto out;
        }
        map_len = (size_t)size;
        map = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            rc = errno == ENOMEM ? ckpt__err(CKPT_ENOMEM, "mapping %s: %s", path, strerror(errno))
                                 : os_err(errno, "mapping", path);
            goto out;
        }
        madvise(map, map_len, MADV_SEQUENTIAL);
        data = (const unsigned char *)map + 8 + hlen;
    }

    /* Everything about the file is checked: only now touch the store. */
    if ((rc = ensure_run(s, run, &h)) ||
        (rc = store_tensors(s, &h, kinds, data, run, epoch, step, out_id)))
        rc = ckpt__err_prefix(rc, "importing %s into run '%s'", path, run);

out:
    if (map != MAP_FAILED)
        munmap(map, map_len);
    close(fd);
    ckpt__free(hdr);
    ckpt__free(kinds);
    ckpt__st_header_free(&h);
    return rc;
}
