/*
 * test_fault_io.c - disk full (ENOSPC) at every write, EIO at every fsync
 * and at every write, injected through a SQLite VFS shim into a save, a
 * metrics flush, a rollback and an import; then: a clear error, the same
 * handle succeeds once space is freed (ENOSPC) or refuses every write and
 * never syncs the failed file again (EIO), and a new handle finds a store
 * that verifies, every earlier checkpoint byte-identical, nothing partial.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "ckpt.h"
#include "faultutil.h"
#include "faultvfs.h"

/* The templates every iteration starts from (a copy of one): run "r" with
 * epochs 0 and 1, run "imp" with epoch 0, in FU_FULL size (2-chunk tensors:
 * the save, where the worker pipeline must drain after a failure) and in
 * FU_SMALL size (the other operations: a tenth of the bytes to check);
 * a safetensors file for epoch 5. */
static char g_dir[512], g_templates[FU_SMALL + 1][600], g_work[600], g_st_file[600];
static int64_t g_id0, g_id1;
static const char *g_template; /* of the operation under test */
static int g_size;              /* FU_FULL or FU_SMALL */

/* What the tests saw, for the summary printed at the end. */
static struct {
    int64_t iterations, injected, efull, eio, retried_ok, ambiguous_committed;
    int64_t rollback_resyncs;
} g_tally;

static int group_setup(void **state)
{
    (void)state;
    if (fv_install() != 0) {
        fprintf(stderr, "cannot register the fault VFS\n");
        return -1;
    }
    snprintf(g_dir, sizeof g_dir, "%s", fu_tmpdir());
    snprintf(g_st_file, sizeof g_st_file, "%s/in.safetensors", g_dir);
    for (int size = FU_FULL; size <= FU_SMALL; size += FU_SMALL - FU_FULL) {
        snprintf(g_templates[size], sizeof g_templates[size], "%s/template%d.db", g_dir, size);
        ckpt_store *s;
        int64_t id0 = 0, id1 = 0;
        int step = 0, rc = fu_open(&s, g_templates[size], CKPT_DURABLE_FULL, 2);
        if (rc == CKPT_OK &&
            ((step = 1, rc = ckpt_run_create(s, "r", NULL, 0)) ||
             (step = 2, rc = fu_save(s, "r", 0, size, &id0)) ||
             (step = 3, rc = fu_save(s, "r", 1, size, &id1)) ||
             (step = 4, rc = ckpt_metric_log(s, "r", "loss", 0, 1, 0.5)) ||
             (step = 5, rc = ckpt_run_create(s, "imp", NULL, 0)) ||
             (step = 6, rc = fu_save(s, "imp", 0, size, NULL))))
            ckpt_close(s);
        else if (rc == CKPT_OK)
            rc = (step = 7, ckpt_close(s));
        if (rc != CKPT_OK) {
            fprintf(stderr, "template %d, step %d: %d %s\n", size, step, rc, ckpt_errmsg());
            return -1;
        }
        if (size > FU_FULL && (id0 != g_id0 || id1 != g_id1))
            return -1; /* both templates have the same checkpoint ids */
        g_id0 = id0;
        g_id1 = id1;
    }
    return fu_write_safetensors(g_st_file, 5, FU_SMALL);
}

static int group_teardown(void **state)
{
    (void)state;
    printf("[ fault-io ] %" PRId64 " iterations, %" PRId64 " faults injected: %" PRId64
           " CKPT_EFULL, %" PRId64 " CKPT_EIO; %" PRId64
           " same-handle retries succeeded; %" PRId64
           " EIO-failed operations found committed (whole) after reopen; %" PRId64
           " syncs of a file whose fsync failed, all after SQLite rewrote it from its journal\n",
           g_tally.iterations, g_tally.injected, g_tally.efull, g_tally.eio,
           g_tally.retried_ok, g_tally.ambiguous_committed, g_tally.rollback_resyncs);
    fu_rmtree(g_dir);
    return 0;
}

/* ---------------------------------------------------------------- operations */

typedef struct op {
    const char *name;
    int size; /* template: FU_FULL or FU_SMALL */
    /* before the fault is armed (on the handle that will fail) */
    void (*prepare)(ckpt_store *s);
    /* the operation under test; also its retry on the same handle */
    int (*run)(ckpt_store *s);
    /* a write that must be refused once the handle is poisoned */
    int (*poisoned_write)(ckpt_store *s);
    /* state check on any handle: done = 1 if the operation must be visible,
     * 0 if it must not be, -1 if either (an EIO'd commit may have reached
     * the disk). Returns 1 if the effect is visible, 0 if not, -1 on a bad
     * state (partial, or wrong bytes). */
    int (*check)(ckpt_store *s, int done);
} op;

static int check_earlier(ckpt_store *s)
{
    return fu_check(s, "r", 0, g_size) || fu_check(s, "r", 1, g_size) ||
                   fu_check(s, "imp", 0, g_size)
               ? -1
               : 0;
}

static int64_t head_of(ckpt_store *s, const char *run)
{
    ckpt_checkpoint_info ci;
    return ckpt_head(s, run, &ci) == CKPT_OK ? ci.id : 0;
}

/* save: r@2, with 5 buffered metrics that the commit writes */
static void save_prepare(ckpt_store *s)
{
    for (int i = 0; i < 5; i++)
        assert_int_equal(ckpt_metric_log(s, "r", "loss", 2, 20 + i, 1.0 / (i + 1)), CKPT_OK);
}

static int save_run(ckpt_store *s)
{
    return fu_save(s, "r", 2, g_size, NULL);
}

static int save_poisoned(ckpt_store *s)
{
    ckpt_writer *w = NULL;
    int rc = ckpt_writer_begin(&w, s, "r", 3, 30);
    ckpt_writer_abort(w);
    return rc;
}

static int save_check(ckpt_store *s, int done)
{
    int c = fu_check(s, "r", 2, g_size);
    if (c < 0)
        return -1;
    int visible = c == 0;
    int64_t nm = fu_sql_int(s, "SELECT count(*) FROM metrics m JOIN runs r ON r.id = m.run_id"
                               " WHERE r.name = 'r' AND m.step BETWEEN 20 AND 24");
    int64_t head = head_of(s, "r");
    /* the manifest, the head and the metrics are one transaction */
    if (nm != (visible ? 5 : 0) || (visible ? head == g_id1 : head != g_id1)) {
        fprintf(stderr, "save: checkpoint %s but %" PRId64 " metrics, head %" PRId64 "\n",
                visible ? "visible" : "absent", nm, head);
        return -1;
    }
    if (done >= 0 && visible != done) {
        fprintf(stderr, "save: checkpoint r@2 is %s\n", visible ? "visible" : "absent");
        return -1;
    }
    return visible;
}

/* metrics flush: 40 values */
static void metrics_prepare(ckpt_store *s)
{
    /* a commit of this handle that is in the WAL, not yet in the database
     * file: closing the handle would checkpoint it */
    assert_int_equal(ckpt_metric_log(s, "r", "pre", 1, 1, 1.0), CKPT_OK);
    assert_int_equal(ckpt_metrics_flush(s), CKPT_OK);
    for (int i = 0; i < 40; i++)
        assert_int_equal(ckpt_metric_log(s, "r", "acc", 1, 100 + i, (100 + i) * 0.5), CKPT_OK);
}

static int metrics_run(ckpt_store *s)
{
    return ckpt_metrics_flush(s);
}

static int metrics_poisoned(ckpt_store *s)
{
    return ckpt_metric_log(s, "r", "acc", 1, 1000, 1.0);
}

static int metrics_check(ckpt_store *s, int done)
{
    int64_t n = fu_sql_int(s, "SELECT count(*) FROM metrics WHERE name = 'acc'");
    int64_t good = fu_sql_int(s, "SELECT count(*) FROM metrics WHERE name = 'acc'"
                                 " AND value = step * 0.5 AND step BETWEEN 100 AND 139");
    if ((n != 0 && n != 40) || good != n) {
        fprintf(stderr, "metrics: %" PRId64 " of 40 values visible, %" PRId64 " right\n", n, good);
        return -1;
    }
    if (done >= 0 && (n == 40) != done) {
        fprintf(stderr, "metrics: %" PRId64 " values visible\n", n);
        return -1;
    }
    return n == 40;
}

/* rollback of r to epoch 0, with 3 buffered metrics flushed first */
static void rollback_prepare(ckpt_store *s)
{
    for (int i = 0; i < 3; i++)
        assert_int_equal(ckpt_metric_log(s, "r", "lr", 1, 50 + i, 0.1), CKPT_OK);
}

static int rollback_run(ckpt_store *s)
{
    return ckpt_rollback(s, "r", g_id0);
}

static int rollback_poisoned(ckpt_store *s)
{
    return ckpt_rollback(s, "r", g_id1);
}

static int rollback_check(ckpt_store *s, int done)
{
    int64_t head = head_of(s, "r");
    int64_t nbranch = fu_sql_int(s, "SELECT count(*) FROM branches b JOIN runs r ON r.id = b.run_id"
                                    " WHERE r.name = 'r'");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM runs r JOIN branches b ON b.id = r.branch_id"
             " WHERE r.name = 'r' AND b.fork_checkpoint = %" PRId64 " AND r.branched_from = %" PRId64,
             g_id0, g_id0);
    int64_t forked = fu_sql_int(s, sql);
    int moved = head == g_id0;
    if (!(moved || head == g_id1) || nbranch != (moved ? 2 : 1) || forked != moved) {
        fprintf(stderr, "rollback: head %" PRId64 " (ids %" PRId64 ", %" PRId64 "), %" PRId64
                        " branches, fork row %" PRId64 "\n",
                head, g_id0, g_id1, nbranch, forked);
        return -1;
    }
    if (done >= 0 && moved != done) {
        fprintf(stderr, "rollback: head %s\n", moved ? "moved" : "not moved");
        return -1;
    }
    return moved;
}

/* import of a safetensors file into a new run */
static int import_run(ckpt_store *s)
{
    int64_t id = 0;
    int rc = ckpt_import_safetensors(s, g_st_file, "imported", 5, 50, &id);
    if (rc == CKPT_OK && id <= 0)
        return -100;
    return rc;
}

static int import_check(ckpt_store *s, int done)
{
    int c = fu_check(s, "imported", 5, FU_SMALL);
    if (c < 0)
        return -1;
    int visible = c == 0;
    /* A failed import may leave the run it created, without checkpoints:
     * creating the run and saving are two transactions (see report). */
    int64_t n = fu_sql_int(s, "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id"
                              " WHERE r.name = 'imported'");
    if (n != visible) {
        fprintf(stderr, "import: %" PRId64 " checkpoints in run 'imported'\n", n);
        return -1;
    }
    if (done >= 0 && visible != done) {
        fprintf(stderr, "import: checkpoint %s\n", visible ? "visible" : "absent");
        return -1;
    }
    return visible;
}

static int import_poisoned(ckpt_store *s)
{
    return ckpt_import_safetensors(s, g_st_file, "imp", 6, 60, NULL);
}

static const op OP_SAVE = {"save", FU_FULL, save_prepare, save_run, save_poisoned, save_check};
static const op OP_METRICS = {"metrics flush", FU_SMALL, metrics_prepare, metrics_run, metrics_poisoned,
                              metrics_check};
static const op OP_ROLLBACK = {"rollback", FU_SMALL, rollback_prepare, rollback_run, rollback_poisoned,
                               rollback_check};
static const op OP_IMPORT = {"import", FU_SMALL, NULL, import_run, import_poisoned, import_check};

/* ---------------------------------------------------------------- one iteration */

static const char *mode_name(int mode)
{
    switch (mode) {
    case FV_OFF: return "no fault";
    case FV_FULL_GROW: return "ENOSPC (growing writes)";
    case FV_FULL_ALL: return "ENOSPC (all writes)";
    case FV_EIO_SYNC: return "EIO on fsync";
    case FV_EIO_WRITE: return "EIO on write";
    default: return "?";
    }
}

/* Opens a second handle on the work store and checks everything. */
static void check_store(const op *o, int done, const char *when, int64_t n, int mode, int *seen)
{
    ckpt_store *v;
    int rc = fu_open(&v, g_work, CKPT_DURABLE_FULL, 1);
    if (rc)
        fail_msg("%s, %s at call %" PRId64 ", %s: reopen failed: %s", o->name, mode_name(mode), n,
                 when, ckpt_errmsg());
    int vr = fu_verify(v), er = check_earlier(v), cr = o->check(v, done);
    ckpt_close(v);
    if (vr || er || cr < 0)
        fail_msg("%s, %s at call %" PRId64 ", %s: verify %d, earlier checkpoints %d, state %d "
                 "(details above)",
                 o->name, mode_name(mode), n, when, vr, er, cr);
    if (seen)
        *seen = cr;
}

/* One iteration: a fresh copy of the template, the operation with the
 * fault at call n, then the checks. Returns the operation's stats. */
static fv_stats iterate(const op *o, int mode, int64_t n)
{
    assert_int_equal(fu_copy_store(g_template, g_work), 0);
    ckpt_store *s;
    assert_int_equal(fu_open(&s, g_work, CKPT_DURABLE_FULL, 2), CKPT_OK);
    if (o->prepare)
        o->prepare(s);
    fv_arm(mode, n);
    int rc = o->run(s);
    fv_stats st = fv_get();
    fv_disarm();
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ckpt_errmsg());
    g_tally.iterations++;
    g_tally.injected += st.injected;

    if (mode == FV_OFF) {
        if (rc != CKPT_OK)
            fail_msg("%s without fault: %d %s", o->name, rc, msg);
        assert_int_equal(ckpt_close(s), CKPT_OK);
        check_store(o, 1, "dry run", 0, mode, NULL);
        return st;
    }
    if (st.injected == 0)
        fail_msg("%s, %s at call %" PRId64 ": the fault was never reached", o->name,
                 mode_name(mode), n);
    if (rc == CKPT_OK)
        fail_msg("%s, %s at call %" PRId64 ": returned CKPT_OK", o->name, mode_name(mode), n);

    if (mode == FV_FULL_GROW || mode == FV_FULL_ALL) {
        /* SQLite reports every failed write of a full disk as SQLITE_FULL. */
        if (rc != CKPT_EFULL)
            fail_msg("%s, %s at write %" PRId64 ": code %d (%s), want CKPT_EFULL: %s", o->name,
                     mode_name(mode), n, rc, ckpt_strerror(rc), msg);
        g_tally.efull++;
        if (!strstr(msg, "disk full"))
            fail_msg("%s: message does not say the disk is full: %s", o->name, msg);
        /* Nothing visible to another handle; then space is "freed" and
         * the same handle must succeed. */
        check_store(o, 0, "after the failure", n, mode, NULL);
        int rr = o->run(s);
        if (rr != CKPT_OK)
            fail_msg("%s, %s at write %" PRId64 ": retry on the same handle after freeing space: "
                     "%d %s",
                     o->name, mode_name(mode), n, rr, ckpt_errmsg());
        g_tally.retried_ok++;
        assert_int_equal(ckpt_close(s), CKPT_OK);
        check_store(o, 1, "after the retry", n, mode, NULL);
        return st;
    }

    /* EIO: reported as such, never retried, and the handle refuses writes. */
    if (rc != CKPT_EIO)
        fail_msg("%s, %s at call %" PRId64 ": code %d (%s), want CKPT_EIO: %s", o->name,
                 mode_name(mode), n, rc, ckpt_strerror(rc), msg);
    g_tally.eio++;
    /* Never an fsync retried over the pages the failed one may have
     * dropped: a later sync of that file is only allowed after the file
     * was written again (SQLite's rollback rewriting the original pages
     * from the journal, which was synced before). */
    if (mode == FV_EIO_SYNC && st.bare_resyncs != 0)
        fail_msg("%s: after fsync of %s failed at sync %" PRId64 ", it was synced again %" PRId64
                 " time(s) with no write in between (a retried fsync)",
                 o->name, st.eio_file, n, st.bare_resyncs);
    g_tally.rollback_resyncs += st.resyncs_after_rewrite;
    int pr = o->poisoned_write(s);
    if (pr != CKPT_EIO || !strstr(ckpt_errmsg(), "open the store again"))
        fail_msg("%s, %s at call %" PRId64 ": a write on the handle after EIO returned %d: %s",
                 o->name, mode_name(mode), n, pr, ckpt_errmsg());
    /* Whether the operation is visible is not known after an EIO: the
     * commit's WAL frames may have reached the file though the fsync
     * failed. While the poisoned handle is open, other handles go by the
     * WAL index, which never got them; after it closed (ckpt_close keeps
     * the WAL), the next open recovers the WAL and may find them: whole,
     * never partial.
     * Nor may the poisoned handle sync that file again later: not while
     * others use the store, not when it is closed (the close-time WAL
     * checkpoint syncs the WAL first). */
    fv_resume();
    if (n % 2) /* else the close comes first: it then has WAL frames to checkpoint */
        check_store(o, -1, "after EIO, poisoned handle still open", n, mode, NULL);
    ckpt_close(s); /* may report the refused flush of buffered metrics */
    fv_stats after = fv_get();
    fv_disarm();
    if (mode == FV_EIO_SYNC && after.bare_resyncs != 0)
        fail_msg("%s: after fsync of %s failed at sync %" PRId64 ", the poisoned handle synced it "
                 "again with no write in between (ckpt_close?)",
                 o->name, after.eio_file, n);
    int seen = 0;
    check_store(o, -1, "after EIO and close", n, mode, &seen);
    if (seen)
        g_tally.ambiguous_committed++;
    return st;
}

/* Dry run to count writes/syncs, then a fault at every one of them. */
static void every_call(const op *o, const int *modes, int nmodes)
{
    /* A store path per test: a test that failed half-way leaves its
     * handle open on its own files only. */
    static int ntest;
    snprintf(g_work, sizeof g_work, "%s/work%d.db", g_dir, ntest++);
    g_size = o->size;
    g_template = g_templates[o->size];
    fv_stats dry = iterate(o, FV_OFF, 0);
    assert_true(dry.writes > 0);
    for (int m = 0; m < nmodes; m++) {
        int64_t total = modes[m] == FV_EIO_SYNC ? dry.syncs : dry.writes;
        if (total == 0)
            fail_msg("%s: no %s calls to fail", o->name, mode_name(modes[m]));
        for (int64_t n = 1; n <= total; n++)
            iterate(o, modes[m], n);
        printf("[ fault-io ] %s: %s at each of %" PRId64 " calls\n", o->name, mode_name(modes[m]),
               total);
    }
}

static const int FULL_MODES[] = {FV_FULL_GROW, FV_FULL_ALL};
static const int EIO_MODES[] = {FV_EIO_SYNC, FV_EIO_WRITE};

/* ---------------------------------------------------------------- tests */

static void test_fault__enospc_on_every_write_of_a_save_leaves_store_intact(void **state)
{
    (void)state;
    every_call(&OP_SAVE, FULL_MODES, 2);
}

static void test_fault__enospc_on_every_write_of_a_metrics_flush_keeps_values_buffered(void **state)
{
    (void)state;
    every_call(&OP_METRICS, FULL_MODES, 2);
}

static void test_fault__enospc_on_every_write_of_a_rollback_leaves_head_unchanged(void **state)
{
    (void)state;
    every_call(&OP_ROLLBACK, FULL_MODES, 2);
}

static void test_fault__enospc_on_every_write_of_an_import_leaves_store_intact(void **state)
{
    (void)state;
    every_call(&OP_IMPORT, FULL_MODES, 2);
}

static void test_fault__eio_on_every_fsync_and_write_of_a_save_poisons_handle_without_retry(void **state)
{
    (void)state;
    every_call(&OP_SAVE, EIO_MODES, 2);
}

static void test_fault__eio_on_every_fsync_and_write_of_a_metrics_flush_poisons_handle_without_retry(void **state)
{
    (void)state;
    every_call(&OP_METRICS, EIO_MODES, 2);
}

static void test_fault__eio_on_every_fsync_and_write_of_a_rollback_poisons_handle_without_retry(void **state)
{
    (void)state;
    every_call(&OP_ROLLBACK, EIO_MODES, 2);
}

static void test_fault__eio_on_every_fsync_and_write_of_an_import_poisons_handle_without_retry(void **state)
{
    (void)state;
    every_call(&OP_IMPORT, EIO_MODES, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault__enospc_on_every_write_of_a_save_leaves_store_intact),
        cmocka_unit_test(test_fault__enospc_on_every_write_of_a_metrics_flush_keeps_values_buffered),
        cmocka_unit_test(test_fault__enospc_on_every_write_of_a_rollback_leaves_head_unchanged),
        cmocka_unit_test(test_fault__enospc_on_every_write_of_an_import_leaves_store_intact),
        cmocka_unit_test(test_fault__eio_on_every_fsync_and_write_of_a_save_poisons_handle_without_retry),
        cmocka_unit_test(test_fault__eio_on_every_fsync_and_write_of_a_metrics_flush_poisons_handle_without_retry),
        cmocka_unit_test(test_fault__eio_on_every_fsync_and_write_of_a_rollback_poisons_handle_without_retry),
        cmocka_unit_test(test_fault__eio_on_every_fsync_and_write_of_an_import_poisons_handle_without_retry),
    };
    if (getenv("FAULT_FILTER"))
        cmocka_set_test_filter(getenv("FAULT_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
