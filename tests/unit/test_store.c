/* test_store.c - opening, refusing, upgrading a store (src/store.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "ckpt.h"
#include "store.h"

static void same_file(const char *path, const void *before, size_t n)
{
    size_t m;
    void *after = tu_read_file(path, &m);
    assert_non_null(after);
    assert_int_equal(m, n);
    assert_memory_equal(after, before, n);
    free(after);
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void test_store__refuses_foreign_files_untouched(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    ckpt_store *s;
    /* A text file. */
    const char *txt = tu_path(dir, "notes.txt");
    tu_write_file(txt, "hello, not a database\n", 22);
    assert_int_equal(ckpt_open(&s, txt, NULL), CKPT_ENOTSTORE);
    assert_non_null(strstr(ckpt_errmsg(), "notes.txt"));
    same_file(txt, "hello, not a database\n", 22);
    assert_false(exists(tu_path(dir, "notes.txt-chunks")));
    /* Another application's SQLite database. */
    const char *other = tu_path(dir, "other.db");
    sqlite3 *db;
    assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1)", 0, 0, 0), SQLITE_OK);
    sqlite3_close(db);
    size_t n;
    void *before = tu_read_file(other, &n);
    assert_int_equal(ckpt_open(&s, other, NULL), CKPT_ENOTSTORE);
    assert_non_null(strstr(ckpt_errmsg(), "another application"));
    same_file(other, before, n);
    free(before);
    assert_false(exists(tu_path(dir, "other.db-chunks")));
    /* A directory. */
    assert_int_equal(ckpt_open(&s, dir, NULL), CKPT_ENOTSTORE);
}

static void test_store__readonly_and_nocreate_do_not_create(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    const char *p = tu_path(dir, "none.db");
    ckpt_store *s;
    ckpt_open_opts ro = {CKPT_OPEN_READONLY, 0, 0}, nc = {CKPT_OPEN_NOCREATE, 0, 0};
    assert_int_equal(ckpt_open(&s, p, &ro), CKPT_ENOTFOUND);
    assert_non_null(strstr(ckpt_errmsg(), "none.db"));
    assert_int_equal(ckpt_open(&s, p, &nc), CKPT_ENOTFOUND);
    assert_false(exists(p));
    assert_false(exists(tu_path(dir, "none.db-chunks")));
    assert_int_equal(ckpt_open(&s, p, NULL), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    ckpt_close(s);
    assert_int_equal(ckpt_open(&s, p, &ro), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "r2", NULL, 0), CKPT_EREADONLY);
    ckpt_close(s);
    ckpt_open_opts bad = {0, -1, 0};
    assert_int_equal(ckpt_open(&s, p, &bad), CKPT_EINVAL);
    ckpt_open_opts bad2 = {0, 0, 7};
    assert_int_equal(ckpt_open(&s, p, &bad2), CKPT_EINVAL);
}

static void test_store__newer_version_refused_older_upgraded(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    const char *p = tu_path(dir, "v.db");
    ckpt_store *s;
    assert_int_equal(ckpt_open(&s, p, NULL), CKPT_OK);
    ckpt_close(s);
    sqlite3 *db;
    /* Pretend an old ckpt wrote it: before migration 2. */
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP VIEW v_runs; PRAGMA user_version = 1", 0, 0, 0), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(ckpt_open(&s, p, NULL), CKPT_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(ckpt_store_db(s), "SELECT count(*) FROM v_runs", -1, &st, NULL), SQLITE_OK);
    sqlite3_finalize(st);
    ckpt_close(s);
    /* A newer ckpt wrote it. */
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", 0, 0, 0), SQLITE_OK);
    sqlite3_close(db);
    size_t n;
    void *before = tu_read_file(p, &n);
    assert_int_equal(ckpt_open(&s, p, NULL), CKPT_EVERSION);
    assert_non_null(strstr(ckpt_errmsg(), "newer"));
    same_file(p, before, n);
    free(before);
}

static void test_store__chunk_file_pairing(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    char a[512], b[512], ac[600];
    snprintf(a, sizeof a, "%s", tu_path(dir, "a.db"));
    snprintf(b, sizeof b, "%s", tu_path(dir, "b.db"));
    snprintf(ac, sizeof ac, "%s-chunks", a);
    ckpt_store *s;
    float x[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ckpt_open(&s, k ? b : a, NULL), CKPT_OK);
        assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
        ckpt_writer *w;
        assert_int_equal(ckpt_writer_begin(&w, s, "r", 0, 0), CKPT_OK);
        assert_int_equal(ckpt_writer_put(w, "x", CKPT_KIND_MODEL, CKPT_F32, 1, shape, x, 16), CKPT_OK);
        assert_int_equal(ckpt_writer_commit(w, NULL), CKPT_OK);
        ckpt_close(s);
    }
    /* b's chunk file next to a's main file: refused. */
    size_t n;
    void *bc = tu_read_file(tu_path(dir, "b.db-chunks"), &n);
    void *orig = tu_read_file(ac, NULL);
    size_t on;
    free(tu_read_file(ac, &on));
    tu_write_file(ac, bc, n);
    assert_int_equal(ckpt_open(&s, a, NULL), CKPT_ECORRUPT);
    assert_non_null(strstr(ckpt_errmsg(), "another store"));
    /* Missing chunk file while tensors exist: refused, not recreated silently. */
    remove(ac);
    assert_int_equal(ckpt_open(&s, a, NULL), CKPT_ECORRUPT);
    assert_non_null(strstr(ckpt_errmsg(), "missing"));
    tu_write_file(ac, orig, on);
    assert_int_equal(ckpt_open(&s, a, NULL), CKPT_OK);
    ckpt_close(s);
    free(bc);
    free(orig);
}

/* Saves start writeback on SQLite's own descriptor of the chunk file
 * (ckpt__chunk_fd): it must be found, be that file, and stay open and
 * unchanged through a save large enough to kick writeback twice. */
static void test_store__chunk_fd_is_sqlites_own(void **state)
{
    (void)state;
    const char *path = tu_path(tu_tmpdir(), "fd.db");
    char cpath[600];
    snprintf(cpath, sizeof cpath, "%s-chunks", path);
    ckpt_store *s;
    assert_int_equal(ckpt_open(&s, path, NULL), CKPT_OK);
    int fd = ckpt__chunk_fd(s);
    assert_true(fd >= 0);
    struct stat a, b;
    assert_int_equal(fstat(fd, &a), 0);
    assert_int_equal(stat(cpath, &b), 0);
    assert_true(a.st_dev == b.st_dev && a.st_ino == b.st_ino);

    size_t n = (size_t)80 << 20; /* random: stored raw, 80 MiB written */
    uint8_t *x = malloc(n), *y = malloc(n);
    assert_non_null(x);
    assert_non_null(y);
    tu_fill_random(x, n, 7);
    int64_t shape[1] = {(int64_t)n};
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    ckpt_writer *w;
    assert_int_equal(ckpt_writer_begin(&w, s, "r", 0, 0), CKPT_OK);
    assert_int_equal(ckpt_writer_put(w, "x", CKPT_KIND_MODEL, CKPT_U8, 1, shape, x, n), CKPT_OK);
    assert_int_equal(ckpt_writer_commit(w, NULL), CKPT_OK);
    assert_true(fcntl(fd, F_GETFD) >= 0);
    assert_int_equal(ckpt__chunk_fd(s), fd);
    ckpt_reader *r;
    assert_int_equal(ckpt_reader_open(&r, s, "r", CKPT_HEAD), CKPT_OK);
    assert_int_equal(ckpt_reader_read(r, 0, 0, y, n), CKPT_OK);
    assert_memory_equal(x, y, n);
    ckpt_reader_close(r);
    ckpt_close(s);
    free(x);
    free(y);
}

/* Processes that create the same new store at the same moment all open
 * it: none may take the half-made files for another application's. */
static void test_store__concurrent_creation(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir();
    int failures = 0;
    for (int round = 0; round < 40; round++) {
        char path[600];
        snprintf(path, sizeof path, "%s", tu_path(dir, "race.db"));
        char rm[1300];
        snprintf(rm, sizeof rm, "rm -f '%s' '%s'-*", path, path);
        assert_int_equal(system(rm), 0);
        int go[2];
        assert_int_equal(pipe(go), 0);
        pid_t kids[4];
        for (int k = 0; k < 4; k++) {
            kids[k] = fork();
            assert_true(kids[k] >= 0);
            if (kids[k] == 0) {
                char c;
                close(go[1]);
                if (read(go[0], &c, 1) != 0)
                    _exit(3);
                ckpt_store *s;
                int rc = ckpt_open(&s, path, NULL);
                if (rc != CKPT_OK)
                    fprintf(stderr, "round %d: %s\n", round, ckpt_errmsg());
                _exit(rc == CKPT_OK && ckpt_close(s) == CKPT_OK ? 0 : 1);
            }
        }
        close(go[0]);
        close(go[1]); /* all start now */
        for (int k = 0; k < 4; k++) {
            int st;
            assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void test_store__params_bounds(void **state)
{
    (void)state;
    ckpt_store *s;
    assert_int_equal(ckpt_open(&s, tu_path(tu_tmpdir(), "p.db"), NULL), CKPT_OK);
    int64_t lo, hi, v;
    assert_int_equal(ckpt_param_bounds(CKPT_PARAM_LEVEL, &lo, &hi), CKPT_OK);
    assert_int_equal(lo, 1);
    assert_int_equal(hi, 19);
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_LEVEL, 20), CKPT_EINVAL);
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_CHUNK_SIZE, (1 << 20) + 1), CKPT_EINVAL);
    assert_int_equal(ckpt_set_param(s, 999, 1), CKPT_EINVAL);
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_LEVEL, 3), CKPT_OK);
    assert_int_equal(ckpt_get_param(s, CKPT_PARAM_LEVEL, &v), CKPT_OK);
    assert_int_equal(v, 3);
    ckpt_close(s);
    assert_int_equal(ckpt_close(NULL), CKPT_OK);
    assert_string_equal(ckpt_strerror(CKPT_ECORRUPT), "corrupt data");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store__refuses_foreign_files_untouched),
        cmocka_unit_test(test_store__readonly_and_nocreate_do_not_create),
        cmocka_unit_test(test_store__newer_version_refused_older_upgraded),
        cmocka_unit_test(test_store__chunk_file_pairing),
        cmocka_unit_test(test_store__chunk_fd_is_sqlites_own),
        cmocka_unit_test(test_store__concurrent_creation),
        cmocka_unit_test(test_store__params_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
