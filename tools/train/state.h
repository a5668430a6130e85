/*
 * state.h - everything a training run needs to continue exactly (network,
 * Adam state, RNG, data order and position, counters), and its mapping to
 * and from the tensors of a ckpt checkpoint.
 */
#ifndef TRAIN_STATE_H
#define TRAIN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"
#include "mlp.h"
#include "rng.h"

typedef struct tr_state {
    tr_mlp mlp;
    tr_rng rng;
    int32_t *order;    /* permutation of the training set for the current epoch */
    size_t n;          /* training examples (length of order) */
    int64_t position;  /* examples of order already trained on this epoch */
    int64_t epoch;     /* epochs completed */
    int64_t step;      /* optimizer steps taken over the whole run */
    double loss_sum;   /* sum of training losses so far this epoch */
    int64_t correct;   /* training examples classified right so far this epoch */
} tr_state;

/* Checkpoint tensors (all little-endian as the host writes them):
 *   model      dense_<l>.kernel  f32 [in, out]   (row k: weights of input k)
 *              dense_<l>.bias    f32 [out]
 *   optimizer  adam.m.dense_<l>.kernel, adam.v.dense_<l>.kernel  f32 [in, out]
 *              adam.m.dense_<l>.bias,   adam.v.dense_<l>.bias    f32 [out]
 *              adam.step         i64 []          (only with save_optimizer)
 *   rng        rng.state         i64 [4]         (xoshiro256** words, bit-cast)
 *   state      data.order        i32 [n]         data.position  i64 []
 *              train.epoch       i64 []          train.step     i64 []
 *              train.loss_sum    f64 []          train.correct  i64 []
 */

/* Allocates order (identity) and the network; zero counters. */
int tr_state_init(tr_state *st, const int *hidden, int nhidden, size_t batch, size_t n);
void tr_state_free(tr_state *st);

/* Commits st as a checkpoint of run at (st->epoch, st->step). On failure
 * prints why and returns -1 (nothing is committed). */
int tr_state_save(ckpt_store *s, const char *run, const tr_state *st, int save_optimizer,
                  int64_t *out_id, uint64_t *out_bytes);

/* Loads checkpoint `id` into st (allocated by tr_state_init with the run's
 * config). Every tensor's dtype and shape is checked against the network.
 * *had_optimizer says whether Adam's state was there (if not, it is zero).
 * On failure prints which tensor is wrong and returns -1. */
int tr_state_load(ckpt_store *s, const char *run, int64_t id, tr_state *st,
                  int *had_optimizer);

#endif
