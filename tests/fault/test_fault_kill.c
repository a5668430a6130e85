/*
 * test_fault_kill.c - SIGKILL at random instants during rollbacks, imports
 * and metrics flushes (saves are killed by tests/stress/crash_kill.sh).
 * A child process repeats one operation and reports on a pipe what it
 * starts and what returned CKPT_OK; the parent kills it after a random
 * delay, then opens the store with no repair step (read-only and
 * read-write opens alternate) and checks: ckpt_verify passes, every
 * checkpoint is whole and byte-identical, every reported commit is there,
 * and the operation in flight is either entirely there or not at all.
 * CKPT_FAULT_KILLS sets the total number of kills (default 210);
 * CKPT_FAULT_SEED repeats a run's random delays.
 */
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "ckpt.h"
#include "faultutil.h"

#define SIZE FU_SMALL
#define KILLS_PER_STORE 10 /* then a fresh copy of the template */
#define BATCH 100          /* metrics per flush */

enum { OP_ROLLBACK = 0, OP_IMPORT = 1, OP_METRICS = 2 };
static const char *const OP_NAMES[] = {"rollback", "import", "metrics flush"};

static char g_dir[512], g_template[600], g_store[600];
static int64_t g_base[3]; /* ids of r@0, r@1, r@2; the head is r@2 */
static uint64_t g_rng = 0x2545f4914f6cdd1dULL;
static struct {
    int64_t kills, ops_done, in_flight, in_flight_committed, ro_opens;
    double op_us;
} g_tally[3];

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int group_setup(void **state)
{
    (void)state;
    const char *seed = getenv("CKPT_FAULT_SEED");
    if (seed && *seed)
        g_rng = strtoull(seed, NULL, 10);
    else
        g_rng ^= (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
    if (!g_rng)
        g_rng = 1;
    printf("[ fault-kill ] CKPT_FAULT_SEED=%llu\n", (unsigned long long)g_rng);
    snprintf(g_dir, sizeof g_dir, "%s", fu_tmpdir());
    snprintf(g_template, sizeof g_template, "%s/template.db", g_dir);
    ckpt_store *s;
    if (fu_open(&s, g_template, CKPT_DURABLE_FULL, 1) || ckpt_run_create(s, "r", NULL, 0) ||
        fu_save(s, "r", 0, SIZE, &g_base[0]) || fu_save(s, "r", 1, SIZE, &g_base[1]) ||
        fu_save(s, "r", 2, SIZE, &g_base[2]) || ckpt_run_create(s, "imp", NULL, 0) ||
        ckpt_close(s)) {
        fprintf(stderr, "template: %s\n", ckpt_errmsg());
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int64_t total = 0;
    for (int i = 0; i < 3; i++) {
        printf("[ fault-kill ] %s (%.1f ms each): %" PRId64 " kills survived (%" PRId64
               " with the operation in flight, %" PRId64 " of those found committed), %" PRId64
               " operations reported done, %" PRId64 " checks through read-only opens\n",
               OP_NAMES[i], g_tally[i].op_us / 1000, g_tally[i].kills, g_tally[i].in_flight,
               g_tally[i].in_flight_committed, g_tally[i].ops_done, g_tally[i].ro_opens);
        total += g_tally[i].kills;
    }
    printf("[ fault-kill ] %" PRId64 " kills in all\n", total);
    fu_rmtree(g_dir);
    return 0;
}

/* ---------------------------------------------------------------- child */

__attribute__((format(printf, 2, 3))) static void say(int fd, const char *fmt, ...)
{
    char buf[1200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof buf)
        n = (int)strlen(buf);
    if (write(fd, buf, (size_t)n) != n)
        _exit(4);
}

/* The base checkpoint after the head, cyclically: never the head itself
 * (a rollback to the head does nothing). */
static int64_t rollback_target(ckpt_store *s)
{
    ckpt_checkpoint_info head;
    if (ckpt_head(s, "r", &head) != CKPT_OK)
        return -1;
    for (int k = 0; k < 3; k++)
        if (g_base[k] == head.id)
            return g_base[(k + 1) % 3];
    return -1;
}

static void import_run(int64_t i, char *run, size_t cap)
{
    /* every third import creates its run */
    if (i % 3 == 2)
        snprintf(run, cap, "new%" PRId64, i);
    else
        snprintf(run, cap, "imp");
}

/* Repeats the operation from number start on until killed. Lines: "R"
 * ready, "S i" operation i starts, "D i" it returned CKPT_OK; a failure
 * ends the child after "E code message". */
static void child(int op, int fd, int64_t start)
{
    ckpt_store *s;
    if (fu_open(&s, g_store, CKPT_DURABLE_FULL, 1)) {
        say(fd, "E open: %s\n", ckpt_errmsg());
        _exit(3);
    }
    say(fd, "R\n");
    char file[700];
    snprintf(file, sizeof file, "%s.%d.safetensors", g_store, (int)getpid());
    for (int64_t i = start;; i++) {
        int rc = CKPT_OK;
        if (op == OP_ROLLBACK) {
            /* two metrics logged first: the rollback flushes them before
             * it moves the head */
            for (int k = 0; k < 2 && rc == CKPT_OK; k++)
                rc = ckpt_metric_log(s, "r", "rb", 0, 2 * i + k, (double)(2 * i + k));
            int64_t target = rollback_target(s);
            say(fd, "S %" PRId64 " %" PRId64 "\n", i, target);
            if (rc == CKPT_OK)
                rc = ckpt_rollback(s, "r", target);
        } else if (op == OP_IMPORT) {
            char run[32];
            import_run(i, run, sizeof run);
            if (fu_write_safetensors(file, 10 + i, SIZE)) {
                say(fd, "E 0 cannot write %s\n", file);
                _exit(3);
            }
            say(fd, "S %" PRId64 "\n", i);
            rc = ckpt_import_safetensors(s, file, run, 10 + i, (10 + i) * 10, NULL);
        } else {
            for (int k = 0; k < BATCH && rc == CKPT_OK; k++) {
                int64_t step = i * BATCH + k;
                rc = ckpt_metric_log(s, "r", "m", 0, step, (double)step * 0.25);
            }
            say(fd, "S %" PRId64 "\n", i);
            if (rc == CKPT_OK)
                rc = ckpt_metrics_flush(s);
        }
        if (rc != CKPT_OK) {
            say(fd, "E %d %s\n", rc, ckpt_errmsg());
            _exit(3);
        }
        say(fd, "D %" PRId64 "\n", i);
    }
}

/* ---------------------------------------------------------------- parent */

typedef struct report {
    int64_t last_done;  /* -1: none */
    int64_t in_flight;  /* started, not reported done; -1: none */
    int64_t ndone;
    int64_t done_arg;   /* rollback target of last_done */
    int64_t flight_arg; /* rollback target of in_flight */
} report;

/* Runs a child from operation start on and kills it run_us after it said
 * it is ready. */
static void run_child(int op, int64_t start, int64_t run_us, report *rep)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child(op, fds[1], start);
        _exit(5);
    }
    close(fds[1]);
    static char buf[1 << 16];
    size_t len = 0;
    rep->last_done = rep->in_flight = rep->done_arg = rep->flight_arg = -1;
    rep->ndone = 0;
    double deadline = 0, give_up = now_s() + 20;
    int killed = 0;
    char err[256] = "";
    for (;;) {
        double now = now_s();
        if (!killed && deadline > 0 && now >= deadline) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        if (!killed && now > give_up) {
            kill(pid, SIGKILL);
            fail_msg("%s child was not ready after 20 s", OP_NAMES[op]);
        }
        int ms = killed ? 1000 : deadline > 0 ? (int)((deadline - now) * 1000) : 100;
        struct pollfd pf = {fds[0], POLLIN, 0};
        if (poll(&pf, 1, ms < 0 ? 0 : ms) <= 0)
            continue;
        ssize_t n = read(fds[0], buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break; /* the child is gone */
        len += (size_t)n;
        buf[len] = 0;
        /* consume whole lines */
        char *p = buf, *nl;
        while ((nl = strchr(p, '\n')) != NULL) {
            *nl = 0;
            if (p[0] == 'R' && deadline == 0)
                deadline = now_s() + (double)run_us / 1e6;
            else if (p[0] == 'S') {
                char *end;
                rep->in_flight = strtoll(p + 2, &end, 10);
                rep->flight_arg = *end == ' ' ? strtoll(end + 1, NULL, 10) : -1;
            } else if (p[0] == 'D') {
                rep->last_done = strtoll(p + 2, NULL, 10);
                rep->done_arg = rep->flight_arg;
                rep->in_flight = -1;
                rep->ndone++;
            } else if (p[0] == 'E')
                snprintf(err, sizeof err, "%.200s", p);
            p = nl + 1;
        }
        len -= (size_t)(p - buf);
        memmove(buf, p, len + 1);
    }
    close(fds[0]);
    if (!killed)
        kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (err[0])
        fail_msg("%s failed in the child: %s", OP_NAMES[op], err);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("%s child ended with status 0x%x before the kill", OP_NAMES[op], status);
}

static int64_t sql_int(ckpt_store *s, const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    int64_t n = fu_sql_int(s, sql);
    if (n < 0)
        fail_msg("query failed: %s", sql);
    return n;
}

/* Every checkpoint of the store is whole and byte-identical: those of "r"
 * are the base ones, the others fu_model(epoch) imported. */
static void check_all_checkpoints(ckpt_store *s, const char *when)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(ckpt_store_db(s),
                                        "SELECT r.name, c.epoch FROM checkpoints c"
                                        " JOIN runs r ON r.id = c.run_id ORDER BY c.id",
                                        -1, &st, NULL),
                     SQLITE_OK);
    size_t n = 0, cap = 64;
    struct {
        char run[40];
        int64_t epoch;
    } *all = malloc(cap * sizeof *all);
    assert_non_null(all);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap *= 2;
            all = realloc(all, cap * sizeof *all);
            assert_non_null(all);
        }
        snprintf(all[n].run, sizeof all[n].run, "%s", (const char *)sqlite3_column_text(st, 0));
        all[n].epoch = sqlite3_column_int64(st, 1);
        n++;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++)
        if (fu_check(s, all[i].run, all[i].epoch, SIZE) != 0)
            fail_msg("%s: checkpoint %s@%" PRId64 " is not whole (details above)", when, all[i].run,
                     all[i].epoch);
    free(all);
}

/* What the store holds before a child runs: operations committed since
 * the store was copied from the template, and the head of "r". */
typedef struct history {
    int64_t committed;
    int64_t head;
} history;

/* After a kill: open with no repair step, check everything, and update h.
 * Returns whether the operation in flight turned out committed. */
static int check_after_kill(int op, const report *rep, int64_t start, history *h, int readonly,
                            long kill_no)
{
    char when[128];
    snprintf(when, sizeof when, "%s kill %ld", OP_NAMES[op], kill_no);
    ckpt_store *s;
    ckpt_open_opts o = {readonly ? CKPT_OPEN_READONLY : 0, 0, CKPT_DURABLE_FULL};
    if (ckpt_open(&s, g_store, &o) != CKPT_OK)
        fail_msg("%s: the store does not open without repair: %s", when, ckpt_errmsg());
    if (fu_verify(s) != 0)
        fail_msg("%s: ckpt_verify failed (details above)", when);
    check_all_checkpoints(s, when);
    for (int e = 0; e < 3; e++)
        if (fu_check(s, "r", e, SIZE) != 0)
            fail_msg("%s: base checkpoint r@%d is gone or damaged", when, e);
    int committed = 0;
    int64_t done = rep->last_done, fly = rep->in_flight;
    int64_t ndone = done >= 0 ? done - start + 1 : 0;

    if (op == OP_ROLLBACK) {
        /* the head is the target of the last rollback reported done (or
         * the one before this child), or of the one in flight; each
         * committed rollback made one branch, forked at its target */
        ckpt_checkpoint_info head;
        assert_int_equal(ckpt_head(s, "r", &head), CKPT_OK);
        int64_t want = done >= 0 ? rep->done_arg : h->head;
        committed = head.id != want && fly >= 0 && head.id == rep->flight_arg;
        int64_t nbranch = sql_int(s, "SELECT count(*) FROM branches b JOIN runs r ON r.id = b.run_id"
                                     " WHERE r.name = 'r'");
        int64_t forked = sql_int(s, "SELECT count(*) FROM runs r JOIN branches b ON b.id = r.branch_id"
                                    " WHERE r.name = 'r' AND b.fork_checkpoint = r.head_id"
                                    " AND r.branched_from = r.head_id");
        int64_t expect = 1 + h->committed + ndone + committed;
        if ((head.id != want && !committed) || nbranch != expect || (nbranch > 1 && forked != 1))
            fail_msg("%s: head %" PRId64 " (expected %" PRId64 ", in flight %" PRId64 "), %" PRId64
                     " branches (expected %" PRId64 "), %" PRId64 " fork rows",
                     when, head.id, want, fly, nbranch, expect, forked);
        /* the metrics of every rollback reported done were flushed first */
        int64_t nm = sql_int(s, "SELECT count(*) FROM metrics WHERE name = 'rb' AND step >= %" PRId64
                                " AND step < %" PRId64 " AND value = step",
                             2 * start, 2 * (start + ndone));
        if (nm != 2 * ndone)
            fail_msg("%s: %" PRId64 " of the %" PRId64 " metrics flushed by finished rollbacks",
                     when, nm, 2 * ndone);
        h->head = head.id;
    } else if (op == OP_IMPORT) {
        /* every import reported done is there; the one in flight is there
         * whole or not at all (check_all_checkpoints) */
        for (int64_t i = start; i <= done; i++) {
            char run[32];
            import_run(i, run, sizeof run);
            if (fu_check(s, run, 10 + i, SIZE) != 0)
                fail_msg("%s: import %" PRId64 " reported done is missing", when, i);
        }
        if (fly >= 0) {
            char run[32];
            import_run(fly, run, sizeof run);
            committed = fu_check(s, run, 10 + fly, SIZE) == 0;
        }
        int64_t n = sql_int(s, "SELECT count(*) FROM checkpoints WHERE epoch >= 10");
        if (n != h->committed + ndone + committed)
            fail_msg("%s: %" PRId64 " imported checkpoints, expected %" PRId64, when, n,
                     h->committed + ndone + committed);
    } else {
        /* whole batches only: those reported done, maybe the one in flight */
        int64_t n = sql_int(s, "SELECT count(*) FROM metrics WHERE name = 'm'");
        int64_t good = sql_int(s, "SELECT count(*) FROM metrics WHERE name = 'm'"
                                  " AND value = step * 0.25 AND step / %d * %d = step - step %% %d",
                               BATCH, BATCH, BATCH);
        int64_t mine = sql_int(s, "SELECT count(*) FROM metrics WHERE name = 'm' AND step >= %" PRId64
                                  " AND step < %" PRId64,
                               start * BATCH, (start + ndone) * BATCH);
        committed = fly >= 0 && n == (h->committed + ndone + 1) * BATCH;
        if (good != n || mine != ndone * BATCH || n != (h->committed + ndone + committed) * BATCH)
            fail_msg("%s: %" PRId64 " metric values (%" PRId64 " right, %" PRId64
                     " of this child's %" PRId64 " flushed batches), expected %" PRId64,
                     when, n, good, mine, ndone, (h->committed + ndone + committed) * BATCH);
    }
    h->committed += ndone + committed;
    assert_int_equal(ckpt_close(s), CKPT_OK);
    return committed;
}

/* How long one operation takes: a child runs for 300 ms. */
static double measure_op_us(int op)
{
    assert_int_equal(fu_copy_store(g_template, g_store), 0);
    report rep;
    run_child(op, 0, 300000, &rep);
    return rep.ndone > 0 ? 300000.0 / (double)rep.ndone : 300000.0;
}

static void kill_loop(int op)
{
    static const char *const files[] = {"rb.db", "imp.db", "met.db"};
    snprintf(g_store, sizeof g_store, "%s/%s", g_dir, files[op]);
    long kills = (fu_env_long("CKPT_FAULT_KILLS", 210) + 2) / 3;
    double op_us = measure_op_us(op);
    g_tally[op].op_us = op_us;
    /* delays up to three operations long, after the child opened the
     * store: a kill lands anywhere in an operation or between two */
    int64_t window = (int64_t)(3 * op_us) + 100;
    history h = {0, 0};
    int64_t next = 0; /* number of the next child's first operation */
    for (long k = 0; k < kills; k++) {
        if (k % KILLS_PER_STORE == 0) {
            /* a fresh store now and then keeps ckpt_verify cheap */
            assert_int_equal(fu_copy_store(g_template, g_store), 0);
            h = (history){0, g_base[2]};
            next = 0;
        }
        report rep;
        run_child(op, next, (int64_t)(rnd() % (uint64_t)window), &rep);
        int ro = (k & 1) != 0;
        int committed = check_after_kill(op, &rep, next, &h, ro, k);
        g_tally[op].kills++;
        g_tally[op].ro_opens += ro;
        g_tally[op].ops_done += rep.ndone;
        g_tally[op].in_flight += rep.in_flight >= 0;
        g_tally[op].in_flight_committed += committed;
        /* numbers are never reused: a half-done operation's leftovers
         * (metrics logged before a killed rollback) stay apart */
        if (rep.in_flight >= 0)
            next = rep.in_flight + 1;
        else if (rep.last_done >= 0)
            next = rep.last_done + 1;
    }
    printf("[ fault-kill ] %s: %ld kills, each 0..%" PRId64 " us after the child opened the "
           "store (one operation takes %.0f us)\n",
           OP_NAMES[op], kills, window, op_us);
}

static void test_fault__sigkill_during_rollbacks_leaves_head_and_branches_consistent(void **state)
{
    (void)state;
    kill_loop(OP_ROLLBACK);
}

static void test_fault__sigkill_during_imports_leaves_only_whole_checkpoints(void **state)
{
    (void)state;
    kill_loop(OP_IMPORT);
}

static void test_fault__sigkill_during_metrics_flushes_leaves_only_whole_batches(void **state)
{
    (void)state;
    kill_loop(OP_METRICS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault__sigkill_during_rollbacks_leaves_head_and_branches_consistent),
        cmocka_unit_test(test_fault__sigkill_during_imports_leaves_only_whole_checkpoints),
        cmocka_unit_test(test_fault__sigkill_during_metrics_flushes_leaves_only_whole_batches),
    };
    if (getenv("FAULT_FILTER"))
        cmocka_set_test_filter(getenv("FAULT_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
