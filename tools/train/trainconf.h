/*
 * trainconf.h - the trainer's configuration: defaults, parsing of the YAML
 * config (through the library's ckpt_config_flatten) with strict checks of
 * every key, and comparison of two configs.
 */
#ifndef TRAIN_TRAINCONF_H
#define TRAIN_TRAINCONF_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define TR_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define TR_PRINTF(fmt, args)
#endif

#define TR_MAX_HIDDEN 64      /* hidden layers */
#define TR_MAX_WIDTH 65536    /* units in one hidden layer */
#define TR_MAX_BATCH 65536
#define TR_MAX_EPOCHS 1000000

typedef struct tr_config {
    int nhidden;
    int hidden[TR_MAX_HIDDEN];
    char activation[16];   /* "relu" */
    char optimizer[16];    /* "adam" */
    double lr, beta1, beta2, eps;
    int64_t batch_size;
    int64_t epochs;
    uint64_t seed;
    int64_t checkpoint_every; /* epochs between checkpoints */
    int save_optimizer;
    int64_t limit_train, limit_test; /* 0: all examples */
    char data_dir[4096];
} tr_config;

/* The defaults: 784 -> 32 relu -> 10, Adam(lr 1e-3, 0.9, 0.999, 1e-7),
 * batch 32, 5 epochs, seed 1, checkpoint every epoch with optimizer state. */
void tr_config_defaults(tr_config *c);

/* Parses a YAML config over the defaults. `source` names it in messages
 * (a file name, or "the config stored with run X"). On error prints a
 * message naming the key (or line and column) and returns -1. */
int tr_config_parse(const char *yaml, size_t len, const char *source, tr_config *c);

/* Writes the dotted name of the first setting in which a and b differ to
 * key (and both values, as text, to va and vb); returns 0 if equal. */
int tr_config_diff(const tr_config *a, const tr_config *b, char *key, size_t keycap,
                   char *va, char *vb, size_t valcap);

/* "784-32-10"-style summary of the network into buf. */
void tr_config_shape(const tr_config *c, char *buf, size_t cap);

#endif
