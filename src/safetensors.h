/*
 * safetensors.h - the safetensors file format: validation of an untrusted
 * header (strict JSON, dtypes, shapes, offsets) and writing of a header.
 * Pure functions on memory; file handling lives in transfer.c.
 */
#ifndef CKPT_SAFETENSORS_H
#define CKPT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

/* Largest header accepted, as in the reference implementation (~100 MB). */
#define CKPT__ST_MAX_HEADER ((uint64_t)100 << 20)
/* Deepest nesting of JSON arrays/objects accepted in a header. */
#define CKPT__ST_MAX_DEPTH 16
/* Longest JSON array accepted: a header's only arrays are shapes (at most
 * CKPT_MAX_DIMS) and data_offsets (2); the cap bounds the memory a hostile
 * header of compact numbers could make the parser allocate. */
#define CKPT__ST_MAX_ARRAY 64

typedef struct ckpt__st_tensor {
    char *name;                   /* NUL-terminated UTF-8, non-empty */
    int dtype;                    /* CKPT_F64 .. CKPT_BOOL */
    int ndim;                     /* 0..CKPT_MAX_DIMS */
    int64_t shape[CKPT_MAX_DIMS];
    uint64_t begin, end;          /* byte range relative to the data section */
} ckpt__st_tensor;

typedef struct ckpt__st_header {
    ckpt__st_tensor *t;  /* in the order of the JSON header */
    size_t n;
    char **meta_key;     /* __metadata__, in JSON order */
    char **meta_val;
    size_t nmeta;
    uint64_t header_len; /* N: bytes of JSON (with padding) after the 8-byte prefix */
    char *pool;          /* owns every string above */
} ckpt__st_header;

/* Parses and validates the JSON header json[0..len) of file fname (used in
 * messages only) whose data section is data_size bytes long. Checks strict
 * JSON (UTF-8, escapes, no duplicate keys, depth, no trailing garbage but
 * whitespace), known dtypes, ndim, shapes, sizes with overflow checks, and
 * that the tensors tile [0, data_size) exactly. On success *out owns its
 * memory (free with ckpt__st_header_free); on failure *out is zeroed.
 * Errors: CKPT_EINVAL (message names fname, tensor, value and file offset),
 * CKPT_ENOMEM. */
int ckpt__st_parse_header(const char *json, size_t len, uint64_t data_size, const char *fname,
                          ckpt__st_header *out);
void ckpt__st_header_free(ckpt__st_header *h);

/* Builds the first 8 + N bytes of a safetensors file: the little-endian
 * length, then the JSON header with __metadata__ (omitted if nmeta is 0)
 * and the tensors in the given order with their begin/end as given, padded
 * with spaces so that N is a multiple of 8. *out (free with ckpt__free)
 * receives the bytes, *out_len their count.
 * Errors: CKPT_EINVAL (unknown dtype, bad ndim/shape, begin > end, a string
 * that is not UTF-8 or has a NUL... the message names the tensor or key),
 * CKPT_ENOMEM. */
int ckpt__st_write_header(const ckpt__st_tensor *t, size_t n, const char *const *meta_key,
                          const char *const *meta_val, size_t nmeta, char **out, size_t *out_len);

/* The safetensors name of a dtype ("F32"), NULL if not one of ours. */
const char *ckpt__st_dtype_name(int dtype);
/* Bytes per element of a dtype, 0 if not one of ours. */
size_t ckpt__st_dtype_size(int dtype);

/* Reads the 8-byte little-endian header length. */
uint64_t ckpt__st_read_u64le(const unsigned char *p);

/* Checks the header length N read from the first 8 bytes of a file of
 * file_size bytes (at most CKPT__ST_MAX_HEADER, and 8 + N <= file_size) and
 * gives the size of the data section. Errors: CKPT_EINVAL naming fname. */
int ckpt__st_check_sizes(uint64_t file_size, uint64_t header_len, const char *fname,
                         uint64_t *data_size);

/* Validates a whole file image in memory (prefix, header, exact length):
 * check_sizes then parse_header. For tests and fuzzing; import reads only
 * the header. */
int ckpt__st_parse_file(const void *buf, size_t size, const char *fname, ckpt__st_header *out);

#endif
