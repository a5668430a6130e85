/*
 * data.h - Fashion-MNIST (or MNIST) in the gzipped IDX format: images kept as
 * bytes (one per pixel) and labels 0..9.
 */
#ifndef TRAIN_DATA_H
#define TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#define TR_IMAGE_ROWS 28
#define TR_IMAGE_COLS 28
#define TR_IMAGE_SIZE (TR_IMAGE_ROWS * TR_IMAGE_COLS)
#define TR_CLASSES 10

typedef struct tr_dataset {
    size_t n;          /* examples */
    uint8_t *pixels;   /* n * TR_IMAGE_SIZE, row-major 28x28 per example */
    uint8_t *labels;   /* n, each < TR_CLASSES */
} tr_dataset;

/* Loads DIR/PREFIX-images-idx3-ubyte.gz and DIR/PREFIX-labels-idx1-ubyte.gz
 * (prefix "train" or "t10k"), keeping the first `limit` examples (0 = all;
 * a limit above the file's count keeps all). On failure prints a message
 * naming the file and what is wrong to stderr and returns -1; *out is then
 * empty. */
int tr_data_load(const char *dir, const char *prefix, size_t limit, tr_dataset *out);
void tr_data_free(tr_dataset *d);

#endif
