/*
 * fuzz_ref.c - the CLI's argument parsers: ckpt_ref_parse() ("RUN" or
 * "RUN@EPOCH") and cli_parse_i64() (tools/cli/util.c, compiled in).
 * Input: byte 0 = run buffer size (0..255, allocated exactly, so an
 * overrun is caught), bytes 1..2 select the range for cli_parse_i64, the
 * rest is the argument (cut at its first NUL, as argv would be).
 * Checks results against an independent reading of the same text.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/cli/cli.h"
#include "fuzz_common.h"

/* util.c refers to the CLI's global store handle. */
ckpt_store *cli_store;

static const int64_t bounds[] = {INT64_MIN, -1000000, -1, 0, 1, 19, 64, 1000000, INT64_MAX};
#define NB (sizeof bounds / sizeof bounds[0])

/* -?[0-9]+ with its value if it fits int64: 1 yes, 0 not that shape, -1 out of range. */
static int ref_i64(const char *s, int64_t *out)
{
    int neg = *s == '-';
    const char *p = s + neg;
    if (!*p)
        return 0;
    unsigned __int128 v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        if (v <= ((unsigned __int128)1 << 64))
            v = v * 10 + (unsigned)(*p - '0');
    }
    if (neg ? v > (unsigned __int128)INT64_MAX + 1 : v > INT64_MAX)
        return -1;
    *out = neg ? (int64_t)(0 - (uint64_t)v) : (int64_t)v;
    return 1;
}

static void check_i64(const char *s, int64_t lo, int64_t hi)
{
    int64_t v = 12345, want = 0;
    int rc = cli_parse_i64(s, lo, hi, &v);
    int shape = ref_i64(s, &want);
    int ok = shape == 1 && want >= lo && want <= hi;
    FZ_CHECK(rc == (ok ? 0 : -1), "cli_parse_i64('%s', %" PRId64 ", %" PRId64 ") = %d, expected %s",
             s, lo, hi, rc, ok ? "success" : "failure");
    FZ_CHECK(!ok || v == want, "cli_parse_i64('%s') gave %" PRId64 ", expected %" PRId64, s, v,
             want);
    FZ_CHECK(ok || v == 12345, "cli_parse_i64('%s') wrote its output on failure", s);
}

static void check_ref(const char *ref, size_t cap)
{
    char *run = malloc(cap ? cap : 1);
    int64_t epoch = 77;
    int rc = fz_rc(ckpt_ref_parse(ref, run, cap, &epoch), "ckpt_ref_parse");
    FZ_CHECK(rc == CKPT_OK || rc == CKPT_EINVAL, "ckpt_ref_parse returned %d", rc);
    /* The reference: the run is everything before the last '@' (the whole
     * text without one); it must be a valid run name (1..256 bytes, no
     * control characters, no '@') that fits cap; the epoch a non-negative
     * decimal integer in int64. */
    const char *at = strrchr(ref, '@');
    size_t n = at ? (size_t)(at - ref) : strlen(ref);
    int ok = n > 0 && n < cap && n <= 256 && !memchr(ref, '@', n);
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)ref[i] >= 0x20 && ref[i] != 0x7f;
    int64_t want = CKPT_HEAD;
    if (ok && at)
        ok = at[1] != '-' && ref_i64(at + 1, &want) == 1;
    FZ_CHECK((rc == CKPT_OK) == ok, "ckpt_ref_parse('%s', cap %zu) = %d, expected %s", ref, cap, rc,
             ok ? "success" : "failure");
    if (ok) {
        FZ_CHECK(strlen(run) == n && memcmp(run, ref, n) == 0, "run '%s' from '%s'", run, ref);
        FZ_CHECK(epoch == want, "epoch %" PRId64 " from '%s', expected %" PRId64, epoch, ref, want);
        /* Printing the reference back and parsing it gives the same. */
        char again[300], run2[300];
        int64_t e2;
        if (epoch == CKPT_HEAD)
            snprintf(again, sizeof again, "%s", run);
        else
            snprintf(again, sizeof again, "%s@%" PRId64, run, epoch);
        FZ_CHECK(ckpt_ref_parse(again, run2, sizeof run2, &e2) == CKPT_OK &&
                     strcmp(run2, run) == 0 && e2 == epoch,
                 "'%s' does not parse back", again);
    }
    free(run);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t cap = data[0];
    int64_t lo = bounds[data[1] % NB], hi = bounds[data[2] % NB];
    char *s = malloc(size - 2);
    memcpy(s, data + 3, size - 3);
    s[size - 3] = 0;
    check_ref(s, cap);
    check_i64(s, lo, hi);
    free(s);
    return 0;
}
