/* testutil.h - helpers shared by the cmocka unit tests. */
#ifndef CKPT_TESTUTIL_H
#define CKPT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* A new empty directory for this test (under $CKPT_TEST_TMP or /tmp).
 * Returns a static buffer valid until the next call. */
const char *tu_tmpdir(void);
/* path = dir + "/" + name, in a static ring of buffers. */
const char *tu_path(const char *dir, const char *name);
/* Deterministic pseudo-random bytes (splitmix64). */
void tu_fill_random(void *buf, size_t n, uint64_t seed);
/* Writes/reads a whole file; read returns malloc'd buffer (free()), NULL on error. */
int tu_write_file(const char *path, const void *data, size_t n);
void *tu_read_file(const char *path, size_t *n);

#endif
