/*
 * hash.h - content hashes. Bytes are hashed in 1 MiB leaves with XXH3-128;
 * a chunk's hash is XXH3-128 over its leaf hashes and a tensor's hash is
 * XXH3-128 over all of its leaf hashes and its length. Every byte is hashed
 * once, chunks hash in parallel, and the tensor hash does not depend on the
 * chunk size (which must therefore be a multiple of the leaf size).
 */
#ifndef CKPT_HASH_H
#define CKPT_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CKPT__LEAF_SIZE ((size_t)1 << 20)

/* Leaf hashes of n bytes: ceil(n / LEAF) entries of 16 bytes into leaves
 * (which must hold that many), and the chunk hash into out. */
void ckpt__hash_chunk(const void *data, size_t n, uint8_t *leaves, uint8_t out[16]);

/* Streaming tensor hash over leaf hashes. */
typedef struct ckpt__tensor_hash {
    void *state; /* XXH3_state_t */
} ckpt__tensor_hash;
int ckpt__tensor_hash_init(ckpt__tensor_hash *h);
void ckpt__tensor_hash_update(ckpt__tensor_hash *h, const uint8_t *leaves, size_t nleaves);
void ckpt__tensor_hash_final(ckpt__tensor_hash *h, uint64_t nbytes, uint8_t out[16]);
void ckpt__tensor_hash_free(ckpt__tensor_hash *h);

/* Lower-case hex of 16 bytes into out (33 bytes with the NUL). */
void ckpt__hex16(const uint8_t h[16], char out[33]);

#endif
