/* test_verify.c - corruption is detected, never returned (src/verify.c, chunks.c, reader.c). */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "ckpt.h"
#include "store.h"

#define N_FLOATS (600 * 1024) /* 2.4 MB: three chunks of 1 MiB */

typedef struct {
    int n;
    char last_tensor[128];
    int64_t last_epoch;
} seen;

static void on_problem(void *ctx, const char *run, int64_t epoch, int64_t step, const char *tensor,
                       const char *problem)
{
    (void)step;
    (void)problem;
    seen *s = ctx;
    s->n++;
    s->last_epoch = epoch;
    snprintf(s->last_tensor, sizeof s->last_tensor, "%s", tensor ? tensor : "");
    (void)run;
}

/* A store with two epochs of trained-like weights (normal-ish, small
 * updates), so raw, plane and delta chunks all occur. */
static ckpt_store *make_store(char *path, size_t cap, int codec)
{
    snprintf(path, cap, "%s", tu_path(tu_tmpdir(), "v.db"));
    ckpt_store *s;
    ckpt_open_opts o = {0, 0, CKPT_DURABLE_OFF};
    assert_int_equal(ckpt_open(&s, path, &o), CKPT_OK);
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_CHUNK_SIZE, 1 << 20), CKPT_OK);
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_CODEC, codec), CKPT_OK);
    /* Level 3: auto then stores the first epoch as planes even where they
     * save less than a quarter (level 1 keeps such chunks raw). */
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_LEVEL, 3), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    float *w = malloc(N_FLOATS * sizeof *w);
    uint32_t *rnd = malloc(N_FLOATS * sizeof *rnd);
    tu_fill_random(rnd, N_FLOATS * sizeof *rnd, 11);
    for (size_t i = 0; i < N_FLOATS; i++)
        w[i] = ((float)(rnd[i] % 20001) - 10000.0f) * 1e-5f;
    int64_t shape[1] = {N_FLOATS};
    for (int e = 1; e <= 2; e++) {
        ckpt_writer *wr;
        assert_int_equal(ckpt_writer_begin(&wr, s, "r", e, e), CKPT_OK);
        assert_int_equal(ckpt_writer_put(wr, "layer.w", CKPT_KIND_MODEL, CKPT_F32, 1, shape, w,
                                         N_FLOATS * sizeof *w), CKPT_OK);
        assert_int_equal(ckpt_writer_put(wr, "noise", CKPT_KIND_EXTRA, CKPT_U8, 1,
                                         (int64_t[]){4096}, rnd + e, 4096), CKPT_OK);
        assert_int_equal(ckpt_writer_commit(wr, NULL), CKPT_OK);
        for (size_t i = 0; i < N_FLOATS; i += 3)
            w[i] += 1e-6f * (float)(rnd[i] % 7);
    }
    free(w);
    free(rnd);
    return s;
}

static void flip_bit(sqlite3 *cdb, int64_t id, int64_t bit)
{
    sqlite3_blob *b;
    assert_int_equal(sqlite3_blob_open(cdb, "main", "chunks", "data", id, 1, &b), SQLITE_OK);
    unsigned char c;
    assert_int_equal(sqlite3_blob_read(b, &c, 1, (int)(bit / 8)), SQLITE_OK);
    c ^= (unsigned char)(1u << (bit % 8));
    assert_int_equal(sqlite3_blob_write(b, &c, 1, (int)(bit / 8)), SQLITE_OK);
    sqlite3_blob_close(b);
}

/* Reads every tensor of both epochs; returns how many reads failed. */
static int read_all(ckpt_store *s, int *corrupt)
{
    int failed = 0;
    *corrupt = 0;
    void *buf = malloc(N_FLOATS * 4);
    for (int e = 1; e <= 2; e++) {
        ckpt_reader *r;
        assert_int_equal(ckpt_reader_open(&r, s, "r", e), CKPT_OK);
        for (size_t i = 0; i < ckpt_reader_count(r); i++) {
            ckpt_tensor_info ti;
            ckpt_reader_tensor(r, i, &ti);
            int rc = ckpt_reader_read(r, i, 0, buf, ti.nbytes);
            if (rc) {
                failed++;
                if (rc == CKPT_ECORRUPT && strstr(ckpt_errmsg(), ti.name))
                    (*corrupt)++;
            }
        }
        ckpt_reader_close(r);
    }
    free(buf);
    return failed;
}

static void flips_all_detected(int codec, int nflips)
{
    char path[600];
    ckpt_store *s = make_store(path, sizeof path, codec);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(s->cdb, "SELECT id, length(data), codec FROM chunks", -1, &st, NULL), SQLITE_OK);
    int64_t ids[64], lens[64];
    int n = 0, codecs_seen = 0;
    while (sqlite3_step(st) == SQLITE_ROW && n < 64) {
        ids[n] = sqlite3_column_int64(st, 0);
        lens[n] = sqlite3_column_int64(st, 1);
        codecs_seen |= 1 << sqlite3_column_int(st, 2);
        n++;
    }
    sqlite3_finalize(st);
    assert_true(n >= 4);
    uint64_t rnd[2];
    int detected = 0, corrupt;
    for (int k = 0; k < nflips; k++) {
        tu_fill_random(rnd, sizeof rnd, (uint64_t)k * 7919 + (uint64_t)codec);
        int c = (int)(rnd[0] % (uint64_t)n);
        if (lens[c] == 0)
            continue;
        int64_t bit = (int64_t)(rnd[1] % (uint64_t)(lens[c] * 8));
        flip_bit(s->cdb, ids[c], bit);
        assert_int_equal(read_all(s, &corrupt) > 0, 1);
        assert_true(corrupt > 0);
        detected++;
        flip_bit(s->cdb, ids[c], bit);
    }
    assert_int_equal(read_all(s, &corrupt), 0);
    if (codec == CKPT_CODEC_AUTO) /* raw (noise), planes and delta chunks were all hit */
        assert_int_equal(codecs_seen, (1 << CKPT_CODEC_RAW) | (1 << CKPT_CODEC_PLANES) |
                                          (1 << CKPT_CODEC_DELTA));
    print_message("codec %d: %d single-bit flips in chunk data, %d detected (codecs seen mask 0x%x)\n",
                  codec, nflips, detected, codecs_seen);
    ckpt_close(s);
}

/* 1000 flips in all; CKPT_TEST_FLIPS lowers it (valgrind twin). */
static int flips(int dflt)
{
    const char *e = getenv("CKPT_TEST_FLIPS");
    int n = e ? atoi(e) : 0;
    return n > 0 && n < dflt ? n : dflt;
}

static void test_verify__every_bit_flip_in_raw_chunks_detected(void **state)
{
    (void)state;
    flips_all_detected(CKPT_CODEC_RAW, flips(400));
}

static void test_verify__every_bit_flip_in_encoded_chunks_detected(void **state)
{
    (void)state;
    flips_all_detected(CKPT_CODEC_AUTO, flips(600));
}

static void test_verify__names_damaged_tensor_and_exits_corrupt(void **state)
{
    (void)state;
    char path[600];
    ckpt_store *s = make_store(path, sizeof path, CKPT_CODEC_RAW);
    seen v = {0};
    uint64_t bad = 9;
    assert_int_equal(ckpt_verify(s, NULL, CKPT_HEAD, on_problem, &v, &bad), CKPT_OK);
    assert_int_equal(bad, 0);
    /* Damage the chunk holding 'noise' of epoch 2 (unique to it). */
    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open(&r, s, "r", 2), CKPT_OK);
    ckpt_reader_close(r);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(s->cdb, "SELECT id FROM chunks WHERE raw_len = 4096 ORDER BY id DESC LIMIT 1", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    flip_bit(s->cdb, id, 100);
    assert_int_equal(ckpt_verify(s, NULL, CKPT_HEAD, on_problem, &v, &bad), CKPT_ECORRUPT);
    assert_int_equal(bad, 1);
    assert_string_equal(v.last_tensor, "noise");
    assert_int_equal(v.last_epoch, 2);
    /* Verifying only epoch 1 finds nothing. */
    assert_int_equal(ckpt_verify(s, "r", 1, NULL, NULL, &bad), CKPT_OK);
    ckpt_close(s);
}

static void test_verify__zeroed_page_and_truncation_detected(void **state)
{
    (void)state;
    char path[600], cpath[700];
    ckpt_store *s = make_store(path, sizeof path, CKPT_CODEC_RAW);
    ckpt_close(s);
    snprintf(cpath, sizeof cpath, "%s-chunks", path);
    size_t n;
    unsigned char *orig = tu_read_file(cpath, &n);
    assert_non_null(orig);
    /* Zero one 64 KiB page in the middle of the chunk data. */
    unsigned char *z = malloc(n);
    memcpy(z, orig, n);
    size_t page = (n / 65536 / 2) * 65536;
    memset(z + page, 0, 65536);
    tu_write_file(cpath, z, n);
    ckpt_open_opts ro = {CKPT_OPEN_READONLY, 0, 0};
    assert_int_equal(ckpt_open(&s, path, &ro), CKPT_OK);
    seen v = {0};
    uint64_t bad = 0;
    assert_int_equal(ckpt_verify(s, NULL, CKPT_HEAD, on_problem, &v, &bad), CKPT_ECORRUPT);
    assert_true(bad >= 1);
    int corrupt;
    assert_true(read_all(s, &corrupt) > 0);
    ckpt_close(s);
    /* Truncate the chunk file to half. */
    tu_write_file(cpath, orig, n / 2);
    int rc = ckpt_open(&s, path, &ro);
    if (rc == CKPT_OK) {
        assert_int_equal(ckpt_verify(s, NULL, CKPT_HEAD, NULL, NULL, &bad), CKPT_ECORRUPT);
        assert_true(read_all(s, &corrupt) > 0);
        ckpt_close(s);
    } else {
        assert_int_equal(rc, CKPT_ECORRUPT);
    }
    free(z);
    free(orig);
}

/* Saves 'noise' of epoch 2 again as epoch 3 (same bytes: a dedup hit on the
 * damaged chunk) and checks the save heals it: verify is clean after. */
static void resave_heals(ckpt_store *s, const char *damage_sql, int flip)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(s->cdb, "SELECT id FROM chunks WHERE raw_len = 4096 ORDER BY id DESC LIMIT 1", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    unsigned char noise[4096];
    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open(&r, s, "r", 2), CKPT_OK);
    size_t idx;
    assert_int_equal(ckpt_reader_find(r, "noise", &idx), CKPT_OK);
    assert_int_equal(ckpt_reader_read(r, idx, 0, noise, sizeof noise), CKPT_OK);
    ckpt_reader_close(r);
    if (flip)
        flip_bit(s->cdb, id, 77);
    if (damage_sql) {
        char sql[200];
        snprintf(sql, sizeof sql, damage_sql, (long long)id);
        assert_int_equal(sqlite3_exec(s->cdb, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    uint64_t bad = 0;
    assert_int_equal(ckpt_verify(s, "r", 2, NULL, NULL, &bad), CKPT_ECORRUPT);
    ckpt_writer *w;
    assert_int_equal(ckpt_writer_begin(&w, s, "r", 3, 3), CKPT_OK);
    assert_int_equal(ckpt_writer_put(w, "noise", CKPT_KIND_EXTRA, CKPT_U8, 1, (int64_t[]){4096},
                                     noise, sizeof noise), CKPT_OK);
    assert_int_equal(ckpt_writer_commit(w, NULL), CKPT_OK);
    assert_int_equal(ckpt_verify(s, NULL, CKPT_HEAD, NULL, NULL, &bad), CKPT_OK);
    assert_int_equal(bad, 0);
    unsigned char back[4096];
    assert_int_equal(ckpt_reader_open(&r, s, "r", 2), CKPT_OK);
    assert_int_equal(ckpt_reader_find(r, "noise", &idx), CKPT_OK);
    assert_int_equal(ckpt_reader_read(r, idx, 0, back, sizeof back), CKPT_OK);
    ckpt_reader_close(r);
    assert_memory_equal(back, noise, sizeof noise);
}

static void test_verify__resave_heals_flipped_chunk(void **state)
{
    (void)state;
    char path[600];
    ckpt_store *s = make_store(path, sizeof path, CKPT_CODEC_RAW);
    resave_heals(s, NULL, 1);
    ckpt_close(s);
}

/* A chunk row whose raw_len was damaged (found by tests/fuzz: the dedup
 * check returned success without comparing). */
static void test_verify__resave_heals_wrong_raw_len(void **state)
{
    (void)state;
    char path[600];
    ckpt_store *s = make_store(path, sizeof path, CKPT_CODEC_RAW);
    resave_heals(s, "UPDATE chunks SET raw_len = 4000 WHERE id = %lld", 0);
    ckpt_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify__every_bit_flip_in_raw_chunks_detected),
        cmocka_unit_test(test_verify__every_bit_flip_in_encoded_chunks_detected),
        cmocka_unit_test(test_verify__names_damaged_tensor_and_exits_corrupt),
        cmocka_unit_test(test_verify__zeroed_page_and_truncation_detected),
        cmocka_unit_test(test_verify__resave_heals_flipped_chunk),
        cmocka_unit_test(test_verify__resave_heals_wrong_raw_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
