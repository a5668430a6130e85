/* test_runs.c - runs, heads, rollback branches, status and references (src/runs.c, metrics.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* One epoch: a metric and a checkpoint whose tensor holds the epoch. */
static int64_t epoch(ckpt_store *s, const char *run, int64_t e, double loss)
{
    assert_int_equal(ckpt_metric_log(s, run, "loss", e, e * 10, loss), CKPT_OK);
    ckpt_writer *w;
    int64_t shape[1] = {1}, id;
    assert_int_equal(ckpt_writer_begin(&w, s, run, e, e * 10), CKPT_OK);
    assert_int_equal(ckpt_writer_put(w, "e", CKPT_KIND_STATE, CKPT_I64, 1, shape, &e, 8), CKPT_OK);
    assert_int_equal(ckpt_writer_commit(w, &id), CKPT_OK);
    return id;
}

static int64_t count(ckpt_store *s, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(ckpt_store_db(s), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static double value(ckpt_store *s, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(ckpt_store_db(s), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    double v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_runs__create_params_and_duplicates(void **state)
{
    (void)state;
    ckpt_store *s = open_store(NULL);
    const char *cfg = "model:\n  hidden: [32, 16]\noptimizer:\n  lr: 0.001\n  name: adam\n";
    assert_int_equal(ckpt_run_create(s, "r1", cfg, strlen(cfg)), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "r1", NULL, 0), CKPT_EEXISTS);
    assert_non_null(strstr(ckpt_errmsg(), "r1"));
    assert_int_equal(ckpt_run_create(s, "a@b", NULL, 0), CKPT_EINVAL);
    assert_int_equal(ckpt_run_create(s, "", NULL, 0), CKPT_EINVAL);
    const char *bad = "a: 1\na: 2\n";
    assert_int_equal(ckpt_run_create(s, "r2", bad, strlen(bad)), CKPT_EINVAL);
    assert_non_null(strstr(ckpt_errmsg(), "r2"));
    assert_int_equal(count(s, "SELECT count(*) FROM runs WHERE name = 'r2'"), 0);
    assert_int_equal(count(s, "SELECT count(*) FROM v_params WHERE run = 'r1'"), 3);
    assert_int_equal(count(s, "SELECT count(*) FROM params WHERE key = 'optimizer.lr' AND value = '0.001' AND type = 'float'"), 1);
    assert_int_equal(count(s, "SELECT count(*) FROM params WHERE key = 'model.hidden' AND value = '[32, 16]'"), 1);
    ckpt_checkpoint_info ci;
    assert_int_equal(ckpt_head(s, "r1", &ci), CKPT_ENOCHECKPOINT);
    assert_int_equal(ckpt_head(s, "zz", &ci), CKPT_ENOTFOUND);
    ckpt_close(s);
}

static void test_runs__rollback_makes_branch_and_metrics_follow_line(void **state)
{
    (void)state;
    ckpt_store *s = open_store(NULL);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    int64_t ids[6];
    for (int e = 0; e <= 4; e++)
        ids[e] = epoch(s, "r", e, 10.0 - e);
    ckpt_checkpoint_info ci;
    assert_int_equal(ckpt_head(s, "r", &ci), CKPT_OK);
    assert_int_equal(ci.epoch, 4);
    assert_int_equal(ci.parent, ids[3]);

    assert_int_equal(ckpt_rollback(s, "r", ids[2]), CKPT_OK);
    assert_int_equal(ckpt_resume(s, "r", &ci), CKPT_OK);
    assert_int_equal(ci.id, ids[2]);
    /* Before any new epoch: epochs 3 and 4 are abandoned, their metrics hidden. */
    assert_int_equal(count(s, "SELECT count(*) FROM v_checkpoints WHERE abandoned"), 2);
    assert_int_equal(count(s, "SELECT count(*) FROM v_metrics WHERE run = 'r'"), 3);
    int64_t n3 = epoch(s, "r", 3, 100.0);
    int64_t n4 = epoch(s, "r", 4, 200.0);
    assert_int_equal(ckpt_head(s, "r", &ci), CKPT_OK);
    assert_int_equal(ci.id, n4);
    assert_int_equal(ci.parent, n3);
    ckpt_checkpoint_info c3;
    assert_int_equal(ckpt_checkpoint_find(s, "r", 3, &c3), CKPT_OK);
    assert_int_equal(c3.id, n3); /* the current line wins */
    assert_int_equal(c3.parent, ids[2]);
    /* Current line shows new values; old ones stay reachable. */
    assert_int_equal(count(s, "SELECT count(*) FROM v_metrics WHERE run = 'r'"), 5);
    assert_true(value(s, "SELECT value FROM v_metrics WHERE run = 'r' AND epoch = 3") == 100.0);
    assert_true(value(s, "SELECT value FROM v_metrics WHERE run = 'r' AND epoch = 1") == 9.0);
    assert_int_equal(count(s, "SELECT count(*) FROM v_metrics_all WHERE run = 'r' AND abandoned"), 2);
    assert_true(value(s, "SELECT value FROM v_metrics_all WHERE epoch = 3 AND abandoned") == 7.0);
    assert_int_equal(count(s, "SELECT count(*) FROM v_checkpoints WHERE abandoned"), 2);
    assert_int_equal(count(s, "SELECT count(*) FROM v_checkpoints WHERE is_head"), 1);

    /* Rolling back to an abandoned checkpoint revives its line. */
    assert_int_equal(ckpt_rollback(s, "r", ids[4]), CKPT_OK);
    assert_true(value(s, "SELECT value FROM v_metrics WHERE run = 'r' AND epoch = 4") == 6.0);
    assert_int_equal(count(s, "SELECT count(*) FROM v_checkpoints WHERE abandoned"), 2);
    /* Rolling back to a checkpoint of another run is refused. */
    assert_int_equal(ckpt_run_create(s, "other", NULL, 0), CKPT_OK);
    assert_int_equal(ckpt_rollback(s, "other", ids[1]), CKPT_EINVAL);
    assert_int_equal(ckpt_rollback(s, "r", 9999), CKPT_ENOTFOUND);
    ckpt_close(s);
}

static int budget_left(void *ctx)
{
    return --*(long *)ctx < 0;
}

/* Rows of a query, or -1 if it had not ended after ~50M VM steps. */
static int64_t rows_bounded(ckpt_store *s, const char *sql)
{
    sqlite3 *db = ckpt_store_db(s);
    sqlite3_stmt *st;
    long budget = 50000;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_progress_handler(db, 1000, budget_left, &budget);
    int64_t n = 0;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
        n++;
    sqlite3_progress_handler(db, 0, NULL, NULL);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? n : -1;
}

/* A store edited to hold parent cycles (branches and checkpoints) is not
 * something ckpt writes, but a hostile or damaged file may: the views must
 * still end (schema migration 3; they recursed forever before). */
static void test_runs__views_end_on_parent_cycles(void **state)
{
    (void)state;
    ckpt_store *s = open_store(NULL);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    int64_t ids[3];
    for (int e = 0; e < 3; e++)
        ids[e] = epoch(s, "r", e, 1.0 + e);
    assert_int_equal(ckpt_rollback(s, "r", ids[1]), CKPT_OK);
    epoch(s, "r", 2, 50.0);
    const char *views[] = {"SELECT * FROM v_metrics", "SELECT * FROM v_metrics_all",
                           "SELECT * FROM v_checkpoints", "SELECT * FROM v_lineage",
                           "SELECT * FROM v_head_ancestry"};
    int64_t before[5];
    for (int i = 0; i < 5; i++)
        assert_true((before[i] = rows_bounded(s, views[i])) > 0);
    assert_int_equal(sqlite3_exec(ckpt_store_db(s),
                                  "UPDATE branches SET parent_id = (SELECT branch_id FROM runs)"
                                  " WHERE parent_id IS NULL;"
                                  "UPDATE checkpoints SET parent_id = (SELECT head_id FROM runs)"
                                  " WHERE parent_id IS NULL",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(count(s, "SELECT count(*) FROM branches WHERE parent_id IS NULL"), 0);
    for (int i = 0; i < 5; i++)
        assert_true(rows_bounded(s, views[i]) >= 0);
    /* The current line is unchanged by the cycle: same metric rows. */
    assert_int_equal(rows_bounded(s, views[0]), before[0]);
    assert_int_equal(rows_bounded(s, views[2]), before[2]);
    ckpt_close(s);
}

static void test_runs__metric_relog_replaces_value(void **state)
{
    (void)state;
    ckpt_store *s = open_store(NULL);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    assert_int_equal(ckpt_metric_log(s, "r", "loss", 0, 5, 1.0), CKPT_OK);
    assert_int_equal(ckpt_metrics_flush(s), CKPT_OK);
    assert_int_equal(ckpt_metric_log(s, "r", "loss", 0, 5, 2.0), CKPT_OK);
    assert_int_equal(ckpt_metric_log(s, "r", "loss", 0, 6, 3.0), CKPT_OK);
    /* Buffered: not visible yet (flush interval 2 s). */
    assert_int_equal(count(s, "SELECT count(*) FROM metrics"), 1);
    assert_int_equal(ckpt_metrics_flush(s), CKPT_OK);
    assert_int_equal(count(s, "SELECT count(*) FROM v_metrics"), 2);
    assert_true(value(s, "SELECT value FROM v_metrics WHERE step = 5") == 2.0);
    /* A big batch (multi-row statements) with repeats: the last value wins. */
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 1000; i++)
            assert_int_equal(ckpt_metric_log(s, "r", i % 2 ? "a" : "b", 1, 100 + i, k * 1000.0 + i), CKPT_OK);
    assert_int_equal(ckpt_metrics_flush(s), CKPT_OK);
    assert_int_equal(count(s, "SELECT count(*) FROM v_metrics WHERE step >= 100"), 1000);
    assert_int_equal(count(s, "SELECT count(*) FROM v_metrics WHERE step >= 100 AND value = 2000 + step - 100"), 1000);
    assert_int_equal(count(s, "SELECT count(*) FROM v_metrics WHERE name = 'a' AND step % 2 = 1"), 500);
    assert_int_equal(ckpt_metric_log(s, "r", "x", 0, INT64_C(1) << 40, 1.0), CKPT_EINVAL);
    assert_int_equal(ckpt_metric_log(s, "nope", "loss", 0, 1, 1.0), CKPT_ENOTFOUND);
    assert_int_equal(ckpt_metric_log(s, "r", "", 0, 1, 1.0), CKPT_EINVAL);
    assert_int_equal(ckpt_metric_log(s, "r", "x", -1, 1, 1.0), CKPT_EINVAL);
    /* Age-based flush. */
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_METRICS_FLUSH_MS, 0), CKPT_OK);
    assert_int_equal(ckpt_metric_log(s, "r", "acc", 0, 1, 0.5), CKPT_OK);
    assert_int_equal(count(s, "SELECT count(*) FROM metrics WHERE name = 'acc'"), 1);
    /* Close flushes. */
    assert_int_equal(ckpt_set_param(s, CKPT_PARAM_METRICS_FLUSH_MS, 100000), CKPT_OK);
    assert_int_equal(ckpt_metric_log(s, "r", "acc", 0, 2, 0.6), CKPT_OK);
    const char *path = s->path;
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    assert_int_equal(ckpt_close(s), CKPT_OK);
    assert_int_equal(ckpt_open(&s, p, NULL), CKPT_OK);
    assert_int_equal(count(s, "SELECT count(*) FROM metrics WHERE name = 'acc'"), 2);
    ckpt_close(s);
}

static void test_runs__status_detects_dead_writer(void **state)
{
    (void)state;
    const char *dir;
    ckpt_store *s = open_store(&dir);
    assert_int_equal(ckpt_run_create(s, "alive", NULL, 0), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "dead", NULL, 0), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "done", NULL, 0), CKPT_OK);
    const char *st;
    assert_int_equal(ckpt_run_status(s, "alive", &st), CKPT_OK);
    assert_string_equal(st, "new");
    ckpt_checkpoint_info ci;
    assert_int_equal(ckpt_resume(s, "alive", &ci), CKPT_ENOCHECKPOINT);
    assert_int_equal(ckpt_run_status(s, "alive", &st), CKPT_OK);
    assert_string_equal(st, "running");
    /* Still running after this process's memory and time changed. */
    void *big = malloc(64 << 20);
    memset(big, 1, 64 << 20);
    usleep(20000);
    assert_int_equal(ckpt_run_status(s, "alive", &st), CKPT_OK);
    assert_string_equal(st, "running");
    free(big);
    assert_int_equal(ckpt_resume(s, "done", &ci), CKPT_ENOCHECKPOINT);
    assert_int_equal(ckpt_run_finish(s, "done"), CKPT_OK);
    assert_int_equal(ckpt_run_status(s, "done", &st), CKPT_OK);
    assert_string_equal(st, "finished");
    char path[512];
    snprintf(path, sizeof path, "%s", s->path);
    pid_t pid = fork();
    if (pid == 0) {
        ckpt_store *c;
        if (ckpt_open(&c, path, NULL) != CKPT_OK)
            _exit(1);
        ckpt_resume(c, "dead", &ci);
        kill(getpid(), SIGKILL); /* dies without finishing */
        _exit(1);
    }
    int ws;
    waitpid(pid, &ws, 0);
    assert_true(WIFSIGNALED(ws));
    assert_int_equal(ckpt_run_status(s, "dead", &st), CKPT_OK);
    assert_string_equal(st, "interrupted");
    assert_int_equal(ckpt_run_status(s, "nope", &st), CKPT_ENOTFOUND);
    ckpt_close(s);
}

static void test_runs__ref_parse(void **state)
{
    (void)state;
    char run[64];
    int64_t e;
    assert_int_equal(ckpt_ref_parse("mnist", run, sizeof run, &e), CKPT_OK);
    assert_string_equal(run, "mnist");
    assert_int_equal(e, CKPT_HEAD);
    assert_int_equal(ckpt_ref_parse("mnist@12", run, sizeof run, &e), CKPT_OK);
    assert_int_equal(e, 12);
    const char *bad[] = {"", "@3", "r@", "r@-1", "r@1x", "r@ 1", "r@99999999999999999999", "a@b@1", "r@+1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ckpt_ref_parse(bad[i], run, sizeof run, &e), CKPT_EINVAL);
        assert_true(strlen(ckpt_errmsg()) > 10);
    }
    char small[4];
    assert_int_equal(ckpt_ref_parse("longname@1", small, sizeof small, &e), CKPT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs__create_params_and_duplicates),
        cmocka_unit_test(test_runs__rollback_makes_branch_and_metrics_follow_line),
        cmocka_unit_test(test_runs__views_end_on_parent_cycles),
        cmocka_unit_test(test_runs__metric_relog_replaces_value),
        cmocka_unit_test(test_runs__status_detects_dead_writer),
        cmocka_unit_test(test_runs__ref_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
