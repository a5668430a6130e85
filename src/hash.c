/*
 * hash.c - XXH3-128 leaf/chunk/tensor hashes (see hash.h for the scheme).
 * XXH3 is not a cryptographic hash: a dedup hit is confirmed by comparing
 * the bytes (writer.c), so a collision can never hand back different data.
 */
#include "hash.h"

#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "error.h"

static void canon(XXH128_hash_t h, uint8_t out[16])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(out, c.digest, 16);
}

void ckpt__hash_chunk(const void *data, size_t n, uint8_t *leaves, uint8_t out[16])
{
    /* An empty chunk may come with data NULL (a zero-length buffer never
     * allocated); NULL + 0 is undefined in C, so hash from "" instead
     * (found by tests/fuzz, UBSan). */
    const uint8_t *p = n ? data : (const void *)"";
    size_t nleaves = 0;
    for (size_t off = 0; off < n || (n == 0 && nleaves == 0); off += CKPT__LEAF_SIZE) {
        size_t len = n - off < CKPT__LEAF_SIZE ? n - off : CKPT__LEAF_SIZE;
        canon(XXH3_128bits(p + off, len), leaves + 16 * nleaves);
        nleaves++;
        if (n == 0)
            break;
    }
    canon(XXH3_128bits(leaves, 16 * nleaves), out);
}

/* XXH3_state_t must be 64-byte aligned, more than malloc promises: keep
 * the raw block's address just before the aligned state (found by
 * tests/fault with UBSan). */
int ckpt__tensor_hash_init(ckpt__tensor_hash *h)
{
    unsigned char *raw = ckpt__malloc(sizeof(XXH3_state_t) + 64 + sizeof(void *));
    if (!raw)
        return ckpt__err(CKPT_ENOMEM, "out of memory");
    uintptr_t a = ((uintptr_t)(raw + sizeof(void *)) + 63) & ~(uintptr_t)63;
    memcpy((void *)(a - sizeof(void *)), &raw, sizeof raw);
    XXH3_state_t *st = (XXH3_state_t *)a;
    XXH3_128bits_reset(st);
    h->state = st;
    return CKPT_OK;
}

void ckpt__tensor_hash_update(ckpt__tensor_hash *h, const uint8_t *leaves, size_t nleaves)
{
    XXH3_128bits_update(h->state, leaves, 16 * nleaves);
}

void ckpt__tensor_hash_final(ckpt__tensor_hash *h, uint64_t nbytes, uint8_t out[16])
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(nbytes >> (8 * i));
    XXH3_128bits_update(h->state, le, 8);
    canon(XXH3_128bits_digest(h->state), out);
}

void ckpt__tensor_hash_free(ckpt__tensor_hash *h)
{
    if (h->state) {
        void *raw;
        memcpy(&raw, (unsigned char *)h->state - sizeof(void *), sizeof raw);
        ckpt__free(raw);
    }
    h->state = NULL;
}

void ckpt__hex16(const uint8_t h[16], char out[33])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hx[h[i] >> 4];
        out[2 * i + 1] = hx[h[i] & 15];
    }
    out[32] = 0;
}
