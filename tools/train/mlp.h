/*
 * mlp.h - a multilayer perceptron (dense layers, ReLU between them, softmax
 * cross-entropy on top) trained with Adam, in float32 with a fixed order of
 * every sum so that the same inputs always give the same bits.
 */
#ifndef TRAIN_MLP_H
#define TRAIN_MLP_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "rng.h"

typedef struct tr_layer {
    int in, out;
    float *w;          /* in x out, row-major: row k holds input k's weights */
    float *b;          /* out */
    float *gw, *gb;    /* gradients of the last batch */
    float *mw, *mb;    /* Adam first moments */
    float *vw, *vb;    /* Adam second moments */
} tr_layer;

typedef struct tr_adam {
    double lr, beta1, beta2, eps;
} tr_adam;

typedef struct tr_mlp {
    int nlayers;
    tr_layer *layers;
    int64_t adam_step;   /* optimizer steps taken (t in Adam's bias correction) */
    size_t max_batch;
    int max_width;
    float **act;         /* nlayers + 1 buffers of max_batch x width */
    float *delta, *delta_prev; /* max_batch x max_width scratch */
    uint8_t *labels;     /* max_batch labels of the current batch */
} tr_mlp;

/* Allocates a network 784 -> hidden[0] -> ... -> 10 with zero weights and
 * zero Adam state for batches of up to max_batch. Returns -1 (message on
 * stderr) when out of memory. */
int tr_mlp_init(tr_mlp *m, const int *hidden, int nhidden, size_t max_batch);
void tr_mlp_free(tr_mlp *m);

/* Glorot-uniform weights (Keras' default for Dense), zero biases. */
void tr_mlp_glorot(tr_mlp *m, tr_rng *r);

/* One optimizer step on examples idx[0..n) of d (n <= max_batch). Adds the
 * sum of their losses to *loss_sum and the number classified right to
 * *correct. */
void tr_mlp_train_batch(tr_mlp *m, const tr_dataset *d, const int32_t *idx, size_t n,
                        const tr_adam *opt, double *loss_sum, int64_t *correct);

/* Mean loss and accuracy over all of d, in batches of max_batch. */
void tr_mlp_evaluate(tr_mlp *m, const tr_dataset *d, double *loss, double *acc);

/* Number of parameters (weights and biases). */
size_t tr_mlp_param_count(const tr_mlp *m);

#endif
