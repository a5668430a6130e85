/*
 * stress_common.h - the deterministic checkpoint content shared by the stress
 * writer and checker: every tensor's layout and bytes, and every metric value,
 * are pure functions of (run, epoch), so a checker can recompute what any
 * committed checkpoint must hold without talking to the writer.
 */
#ifndef CKPT_STRESS_COMMON_H
#define CKPT_STRESS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

/* Tensors per checkpoint: fixed, so readers can tell a whole checkpoint. */
#define ST_NTENSORS 8
/* Largest tensor in bytes (layer weight at its biggest: 9 MiB). */
#define ST_MAX_TENSOR_BYTES ((size_t)9 << 20)
/* Metrics: ST_STEPS_PER_EPOCH steps per epoch, ST_NMETRICS names per step. */
#define ST_STEPS_PER_EPOCH 4
#define ST_NMETRICS 3

typedef struct st_tensor {
    const char *name;
    int kind, dtype, ndim;
    int64_t shape[2];
    size_t nbytes;
} st_tensor;

/* Layout of tensor i (0 <= i < ST_NTENSORS) of (run, epoch). */
void st_layout(const char *run, int64_t epoch, size_t i, st_tensor *out);

/* Writes the nbytes bytes of tensor i of (run, epoch) into buf. */
void st_fill(const char *run, int64_t epoch, size_t i, uint8_t *buf);

/* Step of the checkpoint of an epoch (its last training step). */
int64_t st_checkpoint_step(int64_t epoch);

/* Name and value of metric k (0 <= k < ST_NMETRICS) at a step of an epoch. */
const char *st_metric_name(int k);
double st_metric_value(const char *run, int64_t epoch, int64_t step, int k);

/* Epoch-independent hash of a run name. */
uint64_t st_run_seed(const char *run);

/* Monotonic clock in seconds. */
double st_now(void);

#endif
