/*
 * error.c - per-thread error messages, result-code names and the allocator
 * hook shared by the library and (through sqlite3_config) by SQLite.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char tls_msg[1024] = "not an error";

int ckpt__err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_msg, sizeof tls_msg, fmt, ap);
    va_end(ap);
    return code;
}

int ckpt__err_prefix(int code, const char *fmt, ...)
{
    char prefix[512], old[sizeof tls_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tls_msg, sizeof old);
    /* Both parts are bounded so the message is cut, never overrun. */
    snprintf(tls_msg, sizeof tls_msg, "%.500s: %.520s", prefix, old);
    return code;
}

void ckpt__err_clear(void)
{
    memcpy(tls_msg, "not an error", sizeof "not an error");
}

const char *ckpt_errmsg(void)
{
    return tls_msg;
}

const char *ckpt_strerror(int code)
{
    switch (code) {
    case CKPT_OK: return "ok";
    case CKPT_ERROR: return "internal error";
    case CKPT_ENOTFOUND: return "not found";
    case CKPT_EINVAL: return "invalid input";
    case CKPT_ECORRUPT: return "corrupt data";
    case CKPT_EIO: return "I/O error";
    case CKPT_EFULL: return "disk full";
    case CKPT_EBUSY: return "store busy";
    case CKPT_ENOMEM: return "out of memory";
    case CKPT_EEXISTS: return "already exists";
    case CKPT_EVERSION: return "store from a newer version";
    case CKPT_ENOTSTORE: return "not a ckpt store";
    case CKPT_ENOCHECKPOINT: return "no checkpoint yet";
    case CKPT_EREADONLY: return "store is read-only";
    case CKPT_ERANGE: return "out of range";
    default: return "unknown error";
    }
}

/* ---- allocator ---- */

static void *def_malloc(void *ctx, size_t n) { (void)ctx; return malloc(n); }
static void *def_realloc(void *ctx, void *p, size_t n) { (void)ctx; return realloc(p, n); }
static void def_free(void *ctx, void *p) { (void)ctx; free(p); }

static ckpt_allocator g_alloc = {def_malloc, def_realloc, def_free, NULL};

int ckpt__set_allocator_only(const ckpt_allocator *a);
int ckpt__set_allocator_only(const ckpt_allocator *a)
{
    if (a == NULL) {
        g_alloc = (ckpt_allocator){def_malloc, def_realloc, def_free, NULL};
        return CKPT_OK;
    }
    if (!a->malloc_fn || !a->realloc_fn || !a->free_fn)
        return ckpt__err(CKPT_EINVAL, "ckpt_set_allocator: all three functions are required");
    g_alloc = *a;
    return CKPT_OK;
}

void *ckpt__malloc(size_t n)
{
    return g_alloc.malloc_fn(g_alloc.ctx, n ? n : 1);
}

void *ckpt__calloc(size_t count, size_t size)
{
    size_t n;
    if (ckpt__mul_size(count, size, &n))
        return NULL;
    void *p = ckpt__malloc(n);
    if (p)
        memset(p, 0, n);
    return p;
}

void *ckpt__realloc(void *p, size_t n)
{
    return g_alloc.realloc_fn(g_alloc.ctx, p, n ? n : 1);
}

void ckpt__free(void *p)
{
    if (p)
        g_alloc.free_fn(g_alloc.ctx, p);
}

void ckpt_free(void *p)
{
    ckpt__free(p);
}

char *ckpt__strndup(const char *s, size_t n)
{
    char *d = ckpt__malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

char *ckpt__strdup(const char *s)
{
    return ckpt__strndup(s, strlen(s));
}

int ckpt__grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need && *buf)
        return CKPT_OK;
    uint8_t *p = ckpt__realloc(*buf, need ? need : 1);
    if (!p)
        return ckpt__err(CKPT_ENOMEM, "out of memory (%zu bytes for a chunk)", need);
    *buf = p;
    *cap = need;
    return CKPT_OK;
}
