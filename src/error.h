/*
 * error.h - the per-thread last-error message and the internal allocator.
 * Every module reports failures through ckpt__err(), which sets the message
 * and returns the code so callers can write `return ckpt__err(...)`.
 */
#ifndef CKPT_ERROR_H
#define CKPT_ERROR_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

#if defined(__GNUC__)
#define CKPT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CKPT_PRINTF(a, b)
#endif

/* Sets this thread's message (printf-style) and returns code. */
int ckpt__err(int code, const char *fmt, ...) CKPT_PRINTF(2, 3);
/* Prefixes the current message: "prefix: old message". Returns code. */
int ckpt__err_prefix(int code, const char *fmt, ...) CKPT_PRINTF(2, 3);
/* Clears the message (to "not an error"). */
void ckpt__err_clear(void);

/* Installs a as the library's allocator (NULL: the C library's) without
 * touching SQLite; ckpt_set_allocator() also routes SQLite through it. */
int ckpt__set_allocator_only(const ckpt_allocator *a);

/* The allocator every module uses (routed through ckpt_set_allocator). */
void *ckpt__malloc(size_t n);
void *ckpt__calloc(size_t count, size_t size);
void *ckpt__realloc(void *p, size_t n);
void ckpt__free(void *p);
char *ckpt__strdup(const char *s);
char *ckpt__strndup(const char *s, size_t n);

/* Grows *buf to at least need bytes (contents kept). Errors: CKPT_ENOMEM. */
int ckpt__grow(uint8_t **buf, size_t *cap, size_t need);

/* Little-endian 64-bit integer at p (manifests store chunk ids so). */
static inline uint64_t ckpt__le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = (v << 8) | p[k];
    return v;
}

/* Overflow-checked size arithmetic: returns 0 on success, -1 on overflow. */
static inline int ckpt__mul_size(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int ckpt__add_size(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

#endif
