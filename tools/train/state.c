/*
 * state.c - saves the trainer's complete state as one ckpt checkpoint and
 * loads it back, checking every tensor against the network the config
 * describes so a checkpoint from another config or tool is refused with the
 * tensor's name instead of being trained on.
 */
#include "state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tr_state_init(tr_state *st, const int *hidden, int nhidden, size_t batch, size_t n)
{
    memset(st, 0, sizeof *st);
    if (n > INT32_MAX) {
        fprintf(stderr, "ckpt-train: %zu training examples are more than supported\n", n);
        return -1;
    }
    st->order = malloc((n ? n : 1) * sizeof *st->order);
    if (st->order == NULL) {
        fprintf(stderr, "ckpt-train: out of memory for the data order\n");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        st->order[i] = (int32_t)i;
    st->n = n;
    if (tr_mlp_init(&st->mlp, hidden, nhidden, batch) != 0) {
        free(st->order);
        st->order = NULL;
        return -1;
    }
    return 0;
}

void tr_state_free(tr_state *st)
{
    tr_mlp_free(&st->mlp);
    free(st->order);
    memset(st, 0, sizeof *st);
}

/* ------------------------------------------------------------------ save */

typedef struct saver {
    ckpt_writer *w;
    uint64_t bytes;
} saver;

static int put(saver *sv, const char *name, int kind, int dtype, int ndim, const int64_t *shape,
               const void *data, size_t nbytes)
{
    int rc = ckpt_writer_put(sv->w, name, kind, dtype, ndim, shape, data, nbytes);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: cannot store tensor %s: %s\n", name, ckpt_errmsg());
        return -1;
    }
    sv->bytes += nbytes;
    return 0;
}

static int put_i64(saver *sv, const char *name, int kind, int64_t v)
{
    return put(sv, name, kind, CKPT_I64, 0, NULL, &v, sizeof v);
}

static int put_layer(saver *sv, const char *prefix, int kind, const tr_layer *L, int l,
                     const float *w, const float *b)
{
    char name[96];
    int64_t wshape[2] = {L->in, L->out};
    int64_t bshape[1] = {L->out};
    snprintf(name, sizeof name, "%sdense_%d.kernel", prefix, l);
    if (put(sv, name, kind, CKPT_F32, 2, wshape, w, (size_t)L->in * (size_t)L->out * sizeof(float)) != 0)
        return -1;
    snprintf(name, sizeof name, "%sdense_%d.bias", prefix, l);
    return put(sv, name, kind, CKPT_F32, 1, bshape, b, (size_t)L->out * sizeof(float));
}

int tr_state_save(ckpt_store *s, const char *run, const tr_state *st, int save_optimizer,
                  int64_t *out_id, uint64_t *out_bytes)
{
    saver sv = {0};
    int rc = ckpt_writer_begin(&sv.w, s, run, st->epoch, st->step);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: cannot begin the checkpoint of epoch %" PRId64 ": %s\n",
                st->epoch, ckpt_errmsg());
        return -1;
    }
    const tr_mlp *m = &st->mlp;
    for (int l = 0; l < m->nlayers; l++)
        if (put_layer(&sv, "", CKPT_KIND_MODEL, &m->layers[l], l, m->layers[l].w, m->layers[l].b) != 0)
            goto fail;
    if (save_optimizer) {
        for (int l = 0; l < m->nlayers; l++) {
            const tr_layer *L = &m->layers[l];
            if (put_layer(&sv, "adam.m.", CKPT_KIND_OPTIMIZER, L, l, L->mw, L->mb) != 0 ||
                put_layer(&sv, "adam.v.", CKPT_KIND_OPTIMIZER, L, l, L->vw, L->vb) != 0)
                goto fail;
        }
        if (put_i64(&sv, "adam.step", CKPT_KIND_OPTIMIZER, m->adam_step) != 0)
            goto fail;
    }
    int64_t rng_words[4];
    int64_t rng_shape[1] = {4};
    memcpy(rng_words, st->rng.s, sizeof rng_words);
    if (put(&sv, "rng.state", CKPT_KIND_RNG, CKPT_I64, 1, rng_shape, rng_words, sizeof rng_words) != 0)
        goto fail;
    int64_t order_shape[1] = {(int64_t)st->n};
    if (put(&sv, "data.order", CKPT_KIND_STATE, CKPT_I32, 1, order_shape, st->order,
            st->n * sizeof *st->order) != 0 ||
        put_i64(&sv, "data.position", CKPT_KIND_STATE, st->position) != 0 ||
        put_i64(&sv, "train.epoch", CKPT_KIND_STATE, st->epoch) != 0 ||
        put_i64(&sv, "train.step", CKPT_KIND_STATE, st->step) != 0 ||
        put(&sv, "train.loss_sum", CKPT_KIND_STATE, CKPT_F64, 0, NULL, &st->loss_sum,
            sizeof st->loss_sum) != 0 ||
        put_i64(&sv, "train.correct", CKPT_KIND_STATE, st->correct) != 0)
        goto fail;

    rc = ckpt_writer_commit(sv.w, out_id);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: cannot commit the checkpoint of epoch %" PRId64 ": %s\n",
                st->epoch, ckpt_errmsg());
        return -1;
    }
    if (out_bytes != NULL)
        *out_bytes = sv.bytes;
    return 0;

fail:
    ckpt_writer_abort(sv.w);
    return -1;
}

/* ------------------------------------------------------------------ load */

typedef struct loader {
    ckpt_reader *r;
    const char *run;
    int64_t epoch;
} loader;

static void shape_text(char *buf, size_t cap, int dtype, int ndim, const int64_t *shape)
{
    const char *dn = ckpt_dtype_name(dtype);
    size_t used = 0;
    int n = snprintf(buf, cap, "%s [", dn ? dn : "?");
    if (n < 0)
        return;
    used = (size_t)n;
    for (int i = 0; i < ndim && used < cap; i++) {
        n = snprintf(buf + used, cap - used, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (n < 0)
            return;
        used += (size_t)n;
    }
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

/* Reads tensor `name`, which must have exactly this dtype and shape, into
 * buf. Returns 0, 1 if absent and !required, -1 on error (printed). */
static int get(loader *ld, const char *name, int required, int dtype, int ndim,
               const int64_t *shape, void *buf, size_t nbytes)
{
    size_t idx;
    ckpt_tensor_info ti;
    int rc = ckpt_reader_find(ld->r, name, &idx);
    if (rc == CKPT_ENOTFOUND && !required)
        return 1;
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: checkpoint of run %s at epoch %" PRId64
                        " has no tensor %s; it was not written by ckpt-train with this config\n",
                ld->run, ld->epoch, name);
        return -1;
    }
    rc = ckpt_reader_tensor(ld->r, idx, &ti);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: tensor %s: %s\n", name, ckpt_errmsg());
        return -1;
    }
    int same = ti.dtype == dtype && ti.ndim == ndim && ti.nbytes == (uint64_t)nbytes;
    for (int i = 0; same && i < ndim; i++)
        same = ti.shape[i] == shape[i];
    if (!same) {
        char have[128], want[128];
        shape_text(have, sizeof have, ti.dtype, ti.ndim, ti.shape);
        shape_text(want, sizeof want, dtype, ndim, shape);
        fprintf(stderr, "ckpt-train: checkpoint of run %s at epoch %" PRId64
                        ": tensor %s is %s but the run's config needs %s\n",
                ld->run, ld->epoch, name, have, want);
        return -1;
    }
    rc = ckpt_reader_read(ld->r, idx, 0, buf, nbytes);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: cannot read tensor %s: %s\n", name, ckpt_errmsg());
        return -1;
    }
    return 0;
}

static int get_i64(loader *ld, const char *name, int required, int64_t *out)
{
    return get(ld, name, required, CKPT_I64, 0, NULL, out, sizeof *out);
}

static int get_layer(loader *ld, const char *prefix, int required, const tr_layer *L, int l,
                     float *w, float *b)
{
    char name[96];
    int64_t wshape[2] = {L->in, L->out};
    int64_t bshape[1] = {L->out};
    snprintf(name, sizeof name, "%sdense_%d.kernel", prefix, l);
    int rc = get(ld, name, required, CKPT_F32, 2, wshape, w,
                 (size_t)L->in * (size_t)L->out * sizeof(float));
    if (rc != 0)
        return rc;
    snprintf(name, sizeof name, "%sdense_%d.bias", prefix, l);
    return get(ld, name, 1, CKPT_F32, 1, bshape, b, (size_t)L->out * sizeof(float));
}

static int bad_state(const loader *ld, const char *name, const char *what)
{
    fprintf(stderr, "ckpt-train: checkpoint of run %s at epoch %" PRId64 ": tensor %s: %s\n",
            ld->run, ld->epoch, name, what);
    return -1;
}

int tr_state_load(ckpt_store *s, const char *run, int64_t id, tr_state *st,
                  int *had_optimizer)
{
    loader ld = {NULL, run, -1};
    int rc = ckpt_reader_open_id(&ld.r, s, id);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: cannot open the head checkpoint of run %s: %s\n", run,
                ckpt_errmsg());
        return -1;
    }
    const ckpt_checkpoint_info *ci = ckpt_reader_checkpoint(ld.r);
    ld.epoch = ci->epoch;
    int result = -1;
    tr_mlp *m = &st->mlp;

    for (int l = 0; l < m->nlayers; l++)
        if (get_layer(&ld, "", 1, &m->layers[l], l, m->layers[l].w, m->layers[l].b) != 0)
            goto out;

    /* Adam's state is all there or all absent (train.save_optimizer). */
    rc = get_i64(&ld, "adam.step", 0, &m->adam_step);
    if (rc < 0)
        goto out;
    *had_optimizer = rc == 0;
    for (int l = 0; l < m->nlayers; l++) {
        tr_layer *L = &m->layers[l];
        if (*had_optimizer) {
            if (get_layer(&ld, "adam.m.", 1, L, l, L->mw, L->mb) != 0 ||
                get_layer(&ld, "adam.v.", 1, L, l, L->vw, L->vb) != 0)
                goto out;
        } else {
            size_t nw = (size_t)L->in * (size_t)L->out;
            memset(L->mw, 0, nw * sizeof(float));
            memset(L->vw, 0, nw * sizeof(float));
            memset(L->mb, 0, (size_t)L->out * sizeof(float));
            memset(L->vb, 0, (size_t)L->out * sizeof(float));
        }
    }
    if (!*had_optimizer)
        m->adam_step = 0;
    if (m->adam_step < 0) {
        bad_state(&ld, "adam.step", "negative step count");
        goto out;
    }

    int64_t rng_words[4];
    int64_t rng_shape[1] = {4};
    if (get(&ld, "rng.state", 1, CKPT_I64, 1, rng_shape, rng_words, sizeof rng_words) != 0)
        goto out;
    memcpy(st->rng.s, rng_words, sizeof rng_words);
    if ((st->rng.s[0] | st->rng.s[1] | st->rng.s[2] | st->rng.s[3]) == 0) {
        bad_state(&ld, "rng.state", "all-zero xoshiro state");
        goto out;
    }

    /* The order's length must match the training set the config selects: a
     * different dataset (or limit) cannot continue this run exactly. */
    size_t idx;
    ckpt_tensor_info ti;
    if (ckpt_reader_find(ld.r, "data.order", &idx) == CKPT_OK &&
        ckpt_reader_tensor(ld.r, idx, &ti) == CKPT_OK && ti.ndim == 1 &&
        ti.shape[0] != (int64_t)st->n) {
        fprintf(stderr, "ckpt-train: checkpoint of run %s at epoch %" PRId64
                        ": data.order has %" PRId64 " entries but the training set has %zu "
                        "examples (was the dataset or train.limit_train changed?)\n",
                run, ld.epoch, ti.shape[0], st->n);
        goto out;
    }
    int64_t order_shape[1] = {(int64_t)st->n};
    if (get(&ld, "data.order", 1, CKPT_I32, 1, order_shape, st->order,
            st->n * sizeof *st->order) != 0)
        goto out;
    {
        uint8_t *seen = calloc(st->n ? st->n : 1, 1);
        if (seen == NULL) {
            fprintf(stderr, "ckpt-train: out of memory\n");
            goto out;
        }
        int ok = 1;
        for (size_t i = 0; i < st->n && ok; i++) {
            int32_t v = st->order[i];
            ok = v >= 0 && (size_t)v < st->n && !seen[v];
            if (ok)
                seen[v] = 1;
        }
        free(seen);
        if (!ok) {
            bad_state(&ld, "data.order", "not a permutation of the training set");
            goto out;
        }
    }
    if (get_i64(&ld, "data.position", 1, &st->position) != 0 ||
        get_i64(&ld, "train.epoch", 1, &st->epoch) != 0 ||
        get_i64(&ld, "train.step", 1, &st->step) != 0 ||
        get(&ld, "train.loss_sum", 1, CKPT_F64, 0, NULL, &st->loss_sum, sizeof st->loss_sum) != 0 ||
        get_i64(&ld, "train.correct", 1, &st->correct) != 0)
        goto out;
    if (st->position < 0 || (uint64_t)st->position > st->n) {
        bad_state(&ld, "data.position", "outside the training set");
        goto out;
    }
    if (st->epoch != ci->epoch || st->step != ci->step) {
        char what[160];
        snprintf(what, sizeof what,
                 "says epoch %" PRId64 " step %" PRId64 " but the checkpoint is at epoch %" PRId64
                 " step %" PRId64, st->epoch, st->step, ci->epoch, ci->step);
        bad_state(&ld, "train.epoch", what);
        goto out;
    }
    if (st->correct < 0 || st->correct > st->position) {
        bad_state(&ld, "train.correct", "more right answers than examples seen");
        goto out;
    }
    result = 0;
out:
    ckpt_reader_close(ld.r);
    return result;
}
