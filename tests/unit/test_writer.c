/* test_writer.c - saving and reading checkpoints (src/writer.c, reader.c, chunks.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "ckpt.h"
#include "store.h"

static ckpt_store *open_store(const char **dir_out)
{
    const char *dir = tu_tmpdir();
    ckpt_store *s;
    ckpt_open_opts o = {0, 0, CKPT_DURABLE_OFF};
    assert_int_equal(ckpt_open(&s, tu_path(dir, "t.db"), &o), CKPT_OK);
    if (dir_out)
        *dir_out = dir;
    return s;
}

static void save_one(ckpt_store *s, const char *run, int64_t epoch, const char *name,
                     const void *data, size_t n, int64_t *id)
{
    ckpt_writer *w;
    int64_t shape[1] = {(int64_t)(n / 4)};
    assert_int_equal(ckpt_writer_begin(&w, s, run, epoch, epoch * 10), CKPT_OK);
    assert_int_equal(ckpt_writer_put(w, name, CKPT_KIND_MODEL, CKPT_F32, 1, shape, data, n), CKPT_OK);
    assert_int_equal(ckpt_writer_commit(w, id), CKPT_OK);
}

static void test_writer__roundtrip_all_dtypes_and_shapes(void **state)
{
    (void)state;
    ckpt_store *s = open_store(NULL);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    ckpt_writer *w;
    assert_int_equal(ckpt_writer_begin(&w, s, "r", 1, 100), CKPT_OK);
    uint8_t buf[4096];
    tu_fill_random(buf, sizeof buf, 1);
    int64_t shape8[8] = {1, 2, 1, 2, 1, 2, 1, 2};
    for (int d = CKPT_F64; d <= CKPT_BOOL; d++) {
        char name[32];
        snprintf(name, sizeof name, "t_%s", ckpt_dtype_name(d));
        size_t es = ckpt_dtype_size(d);
        assert_int_equal(ckpt_writer_put(w, name, CKPT_KIND_MODEL, d, 8, shape8, buf, 16 * es), CKPT_OK);
    }
    double scalar = -0.0;
    assert_int_equal(ckpt_writer_put(w, "scalar", CKPT_KIND_STATE, CKPT_F64, 0, NULL, &scalar, 8), CKPT_OK);
    int64_t zero[2] = {0, 5};
    assert_int_equal(ckpt_writer_put(w, "empty", CKPT_KIND_EXTRA, CKPT_F32, 2, zero, NULL, 0), CKPT_OK);
    int64_t id;
    assert_int_equal(ckpt_writer_commit(w, &id), CKPT_OK);

    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open(&r, s, "r", 1), CKPT_OK);
    assert_int_equal(ckpt_reader_count(r), 12);
    assert_int_equal(ckpt_reader_checkpoint(r)->step, 100);
    for (int d = CKPT_F64; d <= CKPT_BOOL; d++) {
        ckpt_tensor_info ti;
        assert_int_equal(ckpt_reader_tensor(r, (size_t)(d - 1), &ti), CKPT_OK);
        assert_int_equal(ti.dtype, d);
        assert_int_equal(ti.ndim, 8);
        assert_int_equal(ti.shape[7], 2);
        uint8_t out[256];
        assert_int_equal(ckpt_reader_read(r, (size_t)(d - 1), 0, out, ti.nbytes), CKPT_OK);
        assert_memory_equal(out, buf, ti.nbytes);
    }
    size_t i;
    assert_int_equal(ckpt_reader_find(r, "scalar", &i), CKPT_OK);
    double back = 1;
    assert_int_equal(ckpt_reader_read(r, i, 0, &back, 8), CKPT_OK);
    assert_memory_equal(&back, &scalar, 8);
    ckpt_tensor_info ti;
    assert_int_equal(ckpt_reader_find(r, "empty", &i), CKPT_OK);
    ckpt_reader_tensor(r, i, &ti);
    assert_int_equal(ti.nbytes, 0);
    assert_int_equal(ti.ndim, 2);
    assert_int_equal(ckpt_reader_find(r, "nope", &i), CKPT_ENOTFOUND);
    assert_non_null(strstr(ckpt_errmsg(), "nope"));
    ckpt_reader_close(r);
    assert_int_equal(ckpt_close(s), CKPT_OK);
}

static void test_writer__multichunk_tensor_and_byte_ranges(void **state)
{
    (void)state;
    ckpt_store *s = open_store(NULL);
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_CHUNK_SIZE, 1 << 20), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    size_t n = (5u << 20) + 12; /* five full chunks and a short one */
    uint8_t *data = malloc(n), *out = malloc(n);
    tu_fill_random(data, n, 7);
    int64_t id;
    save_one(s, "r", 0, "w", data, n, &id);
    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open_id(&r, s, id), CKPT_OK);
    assert_int_equal(ckpt_reader_read(r, 0, 0, out, n), CKPT_OK);
    assert_memory_equal(out, data, n);
    /* Ranges across chunk boundaries. */
    uint64_t offs[] = {0, 1, (1u << 20) - 3, (3u << 20) + 5, n - 7};
    for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++) {
        size_t len = n - offs[k] < 2000000 ? n - offs[k] : 2000000;
        memset(out, 0, len);
        assert_int_equal(ckpt_reader_read(r, 0, offs[k], out, len), CKPT_OK);
        assert_memory_equal(out, data + offs[k], len);
    }
    assert_int_equal(ckpt_reader_read(r, 0, n - 1, out, 2), CKPT_ERANGE);
    assert_int_equal(ckpt_reader_read(r, 1, 0, out, 1), CKPT_ERANGE);
    ckpt_reader_close(r);
    free(data);
    free(out);
    ckpt_close(s);
}

static void test_writer__dedup_across_checkpoints_and_runs(void **state)
{
    (void)state;
    ckpt_store *s = open_store(NULL);
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_CODEC, CKPT_CODEC_RAW), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "a", NULL, 0), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "b", NULL, 0), CKPT_OK);
    size_t n = 3u << 20;
    uint8_t *data = malloc(n);
    tu_fill_random(data, n, 3);
    int64_t id1, id2, id3;
    save_one(s, "a", 1, "w", data, n, &id1);
    save_one(s, "a", 2, "w", data, n, &id2);
    save_one(s, "b", 1, "other", data, n, &id3);
    ckpt_checkpoint_info c1, c2, c3;
    assert_int_equal(ckpt_checkpoint_find(s, "a", 1, &c1), CKPT_OK);
    assert_int_equal(ckpt_checkpoint_find(s, "a", 2, &c2), CKPT_OK);
    assert_int_equal(ckpt_checkpoint_find(s, "b", 1, &c3), CKPT_OK);
    assert_int_equal(c1.stored_bytes, n);
    assert_int_equal(c2.stored_bytes, 0);
    assert_int_equal(c3.stored_bytes, 0);
    assert_int_equal(c2.parent, c1.id);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(s->cdb, "SELECT count(*), sum(length(data)) FROM chunks", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 1), (int64_t)n);
    sqlite3_finalize(st);
    free(data);
    ckpt_close(s);
}

static void test_writer__abort_and_failed_put_leave_nothing_visible(void **state)
{
    (void)state;
    ckpt_store *s = open_store(NULL);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    float x[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    ckpt_writer *w;
    assert_int_equal(ckpt_writer_begin(&w, s, "r", 1, 1), CKPT_OK);
    assert_int_equal(ckpt_writer_put(w, "x", CKPT_KIND_MODEL, CKPT_F32, 1, shape, x, sizeof x), CKPT_OK);
    ckpt_writer_abort(w);
    ckpt_checkpoint_info ci;
    assert_int_equal(ckpt_head(s, "r", &ci), CKPT_ENOCHECKPOINT);

    /* Bad arguments are reported and named. */
    assert_int_equal(ckpt_writer_begin(&w, s, "r", 1, 1), CKPT_OK);
    assert_int_equal(ckpt_writer_put(w, "x", CKPT_KIND_MODEL, CKPT_F32, 1, shape, x, 12), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "'x'"));
    assert_int_equal(ckpt_writer_put(w, "x", 99, CKPT_F32, 1, shape, x, 16), CKPT_EINVAL);
    assert_int_equal(ckpt_writer_put(w, "x", CKPT_KIND_MODEL, 0, 1, shape, x, 16), CKPT_EINVAL);
    assert_int_equal(ckpt_writer_put(w, "x", CKPT_KIND_MODEL, CKPT_F32, 9, shape, x, 16), CKPT_EINVAL);
    int64_t huge[3] = {INT64_C(4294967296), INT64_C(4294967296), 16};
    assert_int_equal(ckpt_writer_put(w, "h", CKPT_KIND_MODEL, CKPT_F32, 3, huge, x, 16), CKPT_EINVAL);
    int64_t neg[1] = {-4};
    assert_int_equal(ckpt_writer_put(w, "n", CKPT_KIND_MODEL, CKPT_F32, 1, neg, x, 16), CKPT_EINVAL);
    assert_int_equal(ckpt_writer_put(w, "", CKPT_KIND_MODEL, CKPT_F32, 1, shape, x, 16), CKPT_EINVAL);
    assert_int_equal(ckpt_writer_put(w, "x", CKPT_KIND_MODEL, CKPT_F32, 1, shape, x, 16), CKPT_OK);
    assert_int_equal(ckpt_writer_put(w, "x", CKPT_KIND_MODEL, CKPT_F32, 1, shape, x, 16), CKPT_EEXISTS);
    int64_t id;
    assert_int_equal(ckpt_writer_commit(w, &id), CKPT_OK);
    assert_int_equal(ckpt_head(s, "r", &ci), CKPT_OK);
    assert_int_equal(ci.ntensors, 1);

    assert_int_equal(ckpt_writer_begin(&w, s, "nope", 1, 1), CKPT_ENOTFOUND);
    assert_non_null(strstr(ckpt_errmsg(), "nope"));
    assert_int_equal(ckpt_writer_begin(&w, s, "r", -1, 1), CKPT_EINVAL);
    ckpt_close(s);
}

static void test_writer__reopen_keeps_checkpoints(void **state)
{
    (void)state;
    const char *dir;
    ckpt_store *s = open_store(&dir);
    assert_int_equal(ckpt_run_create(s, "r", "lr: 0.1\n", 8), CKPT_OK);
    float x[256];
    for (int i = 0; i < 256; i++)
        x[i] = (float)i * 0.5f;
    int64_t id;
    save_one(s, "r", 3, "x", x, sizeof x, &id);
    ckpt_close(s);
    ckpt_open_opts ro = {CKPT_OPEN_READONLY, 0, 0};
    assert_int_equal(ckpt_open(&s, tu_path(dir, "t.db"), &ro), CKPT_OK);
    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open(&r, s, "r", CKPT_HEAD), CKPT_OK);
    float y[256];
    assert_int_equal(ckpt_reader_read(r, 0, 0, y, sizeof y), CKPT_OK);
    assert_memory_equal(x, y, sizeof x);
    ckpt_reader_close(r);
    ckpt_writer *w;
    assert_int_equal(ckpt_writer_begin(&w, s, "r", 4, 4), CKPT_EREADONLY);
    char *cfg;
    assert_int_equal(ckpt_run_config(s, "r", &cfg), CKPT_OK);
    assert_string_equal(cfg, "lr: 0.1\n");
    ckpt_free(cfg);
    ckpt_close(s);
}

static void test_writer__codec_from_store_defaults_and_run_config(void **state)
{
    (void)state;
    const char *dir;
    ckpt_store *s = open_store(&dir);
    /* Store default: raw, saved and seen by the next open. */
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_CODEC, CKPT_CODEC_RAW), CKPT_OK);
    assert_int_equal(ckpt_save_params(s), CKPT_OK);
    ckpt_close(s);
    assert_int_equal(ckpt_open(&s, tu_path(dir, "t.db"), NULL), CKPT_OK);
    int64_t v;
    assert_int_equal(ckpt_get_param(s, CKPT_PARAM_CODEC, &v), CKPT_OK);
    assert_int_equal(v, CKPT_CODEC_RAW);
    /* Compressible data: zeros. Raw by the store's default... */
    size_t n = 1 << 20;
    uint8_t *z = calloc(1, n);
    z[7] = 1;
    assert_int_equal(ckpt_run_create(s, "plain", NULL, 0), CKPT_OK);
    int64_t id;
    save_one(s, "plain", 0, "z", z, n, &id);
    ckpt_checkpoint_info ci;
    assert_int_equal(ckpt_head(s, "plain", &ci), CKPT_OK);
    assert_int_equal(ci.stored_bytes, n);
    /* ...compressed for a run whose config asks for planes. */
    const char *cfg = "ckpt:\n  codec: planes\n  level: 3\n";
    assert_int_equal(ckpt_run_create(s, "packed", cfg, strlen(cfg)), CKPT_OK);
    z[9] = 2; /* not a dedup hit */
    save_one(s, "packed", 0, "z", z, n, &id);
    assert_int_equal(ckpt_head(s, "packed", &ci), CKPT_OK);
    assert_true(ci.stored_bytes < n / 100);
    /* A bad codec in a run config is refused at save time, naming the key. */
    const char *bad = "ckpt: {codec: lzma}\n";
    assert_int_equal(ckpt_run_create(s, "bad", bad, strlen(bad)), CKPT_OK);
    ckpt_writer *w;
    assert_int_equal(ckpt_writer_begin(&w, s, "bad", 0, 0), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "ckpt.codec"));
    assert_int_equal(ckpt_codec_parse("planes"), CKPT_CODEC_PLANES);
    free(z);
    ckpt_close(s);
}

/* Restores fetch on workers through connections of their own. A save in
 * progress on the same handle holds the chunk file's write lock once its
 * pages spill (over 16 MiB): a restore through that handle must still work,
 * and quickly (busy timeout 300 ms: a lockout would fail with CKPT_EBUSY). */
static void test_writer__restore_on_handle_with_save_in_progress(void **state)
{
    (void)state;
    ckpt_store *s;
    ckpt_open_opts o = {0, 300, CKPT_DURABLE_OFF};
    assert_int_equal(ckpt_open(&s, tu_path(tu_tmpdir(), "busy.db"), &o), CKPT_OK);
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_CHUNK_SIZE, 1 << 20), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    size_t n = (size_t)6 << 20, big = (size_t)40 << 20;
    uint8_t *a = malloc(n), *back = malloc(n), *b = malloc(big);
    assert_non_null(a);
    assert_non_null(back);
    assert_non_null(b);
    tu_fill_random(a, n, 11);
    tu_fill_random(b, big, 12);
    save_one(s, "r", 0, "a", a, n, NULL);
    ckpt_writer *w;
    int64_t shape[1] = {(int64_t)(big / 4)};
    assert_int_equal(ckpt_writer_begin(&w, s, "r", 1, 10), CKPT_OK);
    assert_int_equal(ckpt_writer_put(w, "b", CKPT_KIND_MODEL, CKPT_F32, 1, shape, b, big), CKPT_OK);
    assert_false(sqlite3_get_autocommit(s->cdb)); /* the save's chunk transaction is open */
    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open(&r, s, "r", 0), CKPT_OK);
    assert_int_equal(ckpt_reader_read(r, 0, 0, back, n), CKPT_OK);
    assert_memory_equal(a, back, n);
    ckpt_reader_close(r);
    assert_int_equal(ckpt_writer_commit(w, NULL), CKPT_OK);
    /* and with no save in progress, through the workers */
    memset(back, 0, n);
    assert_int_equal(ckpt_reader_open(&r, s, "r", 0), CKPT_OK);
    assert_int_equal(ckpt_reader_read(r, 0, 0, back, n), CKPT_OK);
    assert_memory_equal(a, back, n);
    ckpt_reader_close(r);
    ckpt_close(s);
    free(a);
    free(back);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer__roundtrip_all_dtypes_and_shapes),
        cmocka_unit_test(test_writer__multichunk_tensor_and_byte_ranges),
        cmocka_unit_test(test_writer__dedup_across_checkpoints_and_runs),
        cmocka_unit_test(test_writer__abort_and_failed_put_leave_nothing_visible),
        cmocka_unit_test(test_writer__reopen_keeps_checkpoints),
        cmocka_unit_test(test_writer__codec_from_store_defaults_and_run_config),
        cmocka_unit_test(test_writer__restore_on_handle_with_save_in_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
