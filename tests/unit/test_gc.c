/* test_gc.c - deleting checkpoints and collecting chunks (src/gc.c): a
 * delta whose base's checkpoint was pruned still restores. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "ckpt.h"
#include "store.h"

#define N (512 * 1024) /* 2 MiB of f32: two chunks of 1 MiB */

static int64_t chunk_count(ckpt_store *s, const char *where)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM chunks %s", where);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(s->cdb, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void weights(float *w, int epoch)
{
    uint32_t x = 12345;
    for (size_t i = 0; i < N; i++) {
        x = x * 1664525u + 1013904223u;
        w[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.1f;
        /* small updates per epoch: XOR deltas against epoch 1 pay */
        w[i] += (float)epoch * 1e-6f * (float)(i % 3);
    }
}

static void test_gc__delta_survives_pruned_base_checkpoint(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s", tu_path(dir, "g.db"));
    ckpt_store *s;
    ckpt_open_opts o = {0, 0, CKPT_DURABLE_OFF};
    assert_int_equal(ckpt_open(&s, path, &o), CKPT_OK);
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_CHUNK_SIZE, 1 << 20), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    float *w = malloc(N * sizeof *w), *back = malloc(N * sizeof *w);
    int64_t ids[5], shape[1] = {N};
    for (int e = 1; e <= 4; e++) {
        weights(w, e);
        ckpt_writer *wr;
        assert_int_equal(ckpt_writer_begin(&wr, s, "r", e, e), CKPT_OK);
        assert_int_equal(ckpt_writer_put(wr, "w", CKPT_KIND_MODEL, CKPT_F32, 1, shape, w, N * 4), CKPT_OK);
        assert_int_equal(ckpt_writer_commit(wr, &ids[e]), CKPT_OK);
    }
    /* Epochs 2..4 are deltas whose base is epoch 1's full chunks. */
    assert_true(chunk_count(s, "WHERE codec = 3") >= 4);
    int64_t before = chunk_count(s, "");
    /* The head cannot be deleted. */
    assert_int_equal(ckpt_checkpoint_delete(s, ids[4]), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "head"));
    /* Delete epoch 1 (owner of the bases) and epoch 2. */
    assert_int_equal(ckpt_checkpoint_delete(s, ids[1]), CKPT_OK);
    assert_int_equal(ckpt_checkpoint_delete(s, ids[2]), CKPT_OK);
    uint64_t freed_chunks, freed_bytes;
    assert_int_equal(ckpt_gc(s, &freed_chunks, &freed_bytes), CKPT_OK);
    /* Epoch 2's delta chunks go; epoch 1's full chunks stay as bases. */
    assert_int_equal(freed_chunks, 2);
    assert_true(freed_bytes > 0);
    assert_int_equal(chunk_count(s, ""), before - 2);
    for (int e = 3; e <= 4; e++) {
        weights(w, e);
        ckpt_reader *r;
        assert_int_equal(ckpt_reader_open(&r, s, "r", e), CKPT_OK);
        assert_int_equal(ckpt_reader_read(r, 0, 0, back, N * 4), CKPT_OK);
        assert_memory_equal(back, w, N * 4);
        ckpt_reader_close(r);
    }
    ckpt_checkpoint_info ci;
    assert_int_equal(ckpt_checkpoint_find(s, "r", 1, &ci), CKPT_ENOTFOUND);
    assert_int_equal(ckpt_checkpoint_find(s, "r", 3, &ci), CKPT_OK);
    assert_int_equal(ci.parent, 0); /* took the deleted ones' parent: none */
    assert_int_equal(ckpt_verify(s, NULL, CKPT_HEAD, NULL, NULL, NULL), CKPT_OK);
    /* A second gc frees nothing. */
    assert_int_equal(ckpt_gc(s, &freed_chunks, NULL), CKPT_OK);
    assert_int_equal(freed_chunks, 0);

    /* gc refuses while a save or a read is in progress, changing nothing. */
    ckpt_writer *wr;
    assert_int_equal(ckpt_writer_begin(&wr, s, "r", 5, 5), CKPT_OK);
    ckpt_store *other;
    assert_int_equal(ckpt_open(&other, path, &o), CKPT_OK);
    assert_int_equal(ckpt_gc(other, NULL, NULL), CKPT_EBUSY);
    ckpt_writer_abort(wr);
    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open(&r, s, "r", 3), CKPT_OK);
    assert_int_equal(ckpt_gc(other, NULL, NULL), CKPT_EBUSY);
    ckpt_reader_close(r);
    assert_int_equal(ckpt_gc(other, NULL, NULL), CKPT_OK);
    ckpt_close(other);
    free(w);
    free(back);
    ckpt_close(s);
}

static void test_gc__collects_chunks_of_an_aborted_save(void **state)
{
    (void)state;
    ckpt_store *s;
    ckpt_open_opts o = {0, 0, CKPT_DURABLE_OFF};
    assert_int_equal(ckpt_open(&s, tu_path(tu_tmpdir(), "a.db"), &o), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    uint8_t buf[1000];
    tu_fill_random(buf, sizeof buf, 5);
    int64_t shape[1] = {1000};
    ckpt_writer *wr;
    assert_int_equal(ckpt_writer_begin(&wr, s, "r", 0, 0), CKPT_OK);
    assert_int_equal(ckpt_writer_put(wr, "b", CKPT_KIND_EXTRA, CKPT_U8, 1, shape, buf, 1000), CKPT_OK);
    assert_int_equal(ckpt_writer_commit(wr, NULL), CKPT_OK);
    /* Simulate the chunks of a save that crashed before its manifest. */
    assert_int_equal(sqlite3_exec(s->cdb, "INSERT INTO chunks(hash, codec, raw_len, data) VALUES (x'00112233445566778899aabbccddeeff', 1, 3, x'010203')", 0, 0, 0), SQLITE_OK);
    uint64_t n, bytes;
    assert_int_equal(ckpt_gc(s, &n, &bytes), CKPT_OK);
    assert_int_equal(n, 1);
    assert_int_equal(bytes, 3);
    assert_int_equal(ckpt_verify(s, NULL, CKPT_HEAD, NULL, NULL, NULL), CKPT_OK);
    ckpt_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gc__delta_survives_pruned_base_checkpoint),
        cmocka_unit_test(test_gc__collects_chunks_of_an_aborted_save),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
