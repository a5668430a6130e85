/*
 * test_fault_diskfull.c - a real full disk: a small tmpfs (mounted in a
 * private mount namespace, so nothing outlives the test) is filled with a
 * ballast file, leaving 0, 16 KiB, 32 KiB ... free, and a save, a metrics
 * flush and a safetensors export run into the wall at every point. Then:
 * CKPT_EFULL, nothing partial visible, earlier checkpoints intact, and
 * after the ballast is removed the same handle succeeds. Without the
 * privilege to mount, those cases are skipped with a note; the export is
 * then still run against RLIMIT_FSIZE (EFBIG, with SIGXFSZ ignored).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "ckpt.h"
#include "faultutil.h"

#define TMPFS_SIZE "3m"
#define SLACK_STEP (16 << 10)
#define SLACK_MAX (640 << 10)

static char g_dir[512];   /* ordinary directory */
static char g_mnt[600];   /* the small tmpfs, or "" */
static char g_skip[1024]; /* why the tmpfs cases are skipped */
static int g_unshared;
static struct {
    int64_t attempts, efull, fit, retried_ok;
} g_tally[3];
static const char *const KIND[] = {"save", "metrics flush", "export"};

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "%s", fu_tmpdir());
    snprintf(g_mnt, sizeof g_mnt, "%s/mnt", g_dir);
    if (mkdir(g_mnt, 0755) != 0) {
        snprintf(g_skip, sizeof g_skip, "mkdir %s: %s", g_mnt, strerror(errno));
        g_mnt[0] = 0;
        return 0;
    }
    /* A private mount namespace: the tmpfs disappears with the process
     * even if the test dies. */
    if (unshare(CLONE_NEWNS) == 0 && mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == 0)
        g_unshared = 1;
    if (mount("tmpfs", g_mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=" TMPFS_SIZE) != 0) {
        snprintf(g_skip, sizeof g_skip, "cannot mount a %s tmpfs on %s (%s; needs root or "
                                        "CAP_SYS_ADMIN)",
                 TMPFS_SIZE, g_mnt, strerror(errno));
        rmdir(g_mnt);
        g_mnt[0] = 0;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        if (g_tally[i].attempts)
            printf("[ fault-diskfull ] %s: %" PRId64 " attempts on a full disk: %" PRId64
                   " CKPT_EFULL (then %" PRId64 " same-handle retries succeeded), %" PRId64
                   " fitted\n",
                   KIND[i], g_tally[i].attempts, g_tally[i].efull, g_tally[i].retried_ok,
                   g_tally[i].fit);
    if (g_mnt[0] && umount(g_mnt) != 0)
        fprintf(stderr, "umount %s: %s\n", g_mnt, strerror(errno));
    fu_rmtree(g_dir);
    return 0;
}

static int skip_without_tmpfs(void)
{
    if (g_mnt[0])
        return 0;
    printf("[ fault-diskfull ] skipped: %s\n", g_skip);
    skip();
    return 1;
}

/* ---------------------------------------------------------------- ballast */

/* Fills the tmpfs with path, then frees slack bytes of it. */
static void fill(const char *path, size_t slack)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    static char block[64 << 10];
    off_t size = 0;
    for (size_t b = sizeof block; b >= 4096; b /= 4)
        for (;;) {
            ssize_t w = write(fd, block, b);
            if (w <= 0) {
                assert_true(w == 0 || errno == ENOSPC);
                break;
            }
            size += w;
        }
    if (slack)
        assert_int_equal(ftruncate(fd, size > (off_t)slack ? size - (off_t)slack : 0), 0);
    close(fd);
}

static void free_space(const char *path)
{
    assert_int_equal(unlink(path), 0);
}

/* Removes every file of the store at db (a WAL the close could not
 * checkpoint into a full disk included). */
static void remove_store(const char *db)
{
    static const char *const suffixes[] = {"",     "-chunks", "-wal",           "-shm",
                                           "-lock", "-journal", "-chunks-journal"};
    char p[800];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(p, sizeof p, "%s%s", db, suffixes[i]);
        unlink(p);
    }
}

/* ---------------------------------------------------------------- save */

static void check_store(const char *path, int64_t saved, int64_t absent, const char *when)
{
    ckpt_store *v;
    if (fu_open(&v, path, CKPT_DURABLE_FULL, 1) != CKPT_OK)
        fail_msg("%s: reopen: %s", when, ckpt_errmsg());
    if (fu_verify(v))
        fail_msg("%s: ckpt_verify failed (details above)", when);
    for (int64_t e = 0; e < saved; e++)
        if (fu_check(v, "r", e, FU_SMALL) != 0)
            fail_msg("%s: checkpoint r@%" PRId64 " is not intact", when, e);
    if (absent >= 0 && fu_check(v, "r", absent, FU_SMALL) != 1)
        fail_msg("%s: the failed checkpoint r@%" PRId64 " is visible", when, absent);
    ckpt_close(v);
}

static void test_fault__real_full_disk_fails_saves_with_efull_then_the_same_handle_saves(void **state)
{
    (void)state;
    if (skip_without_tmpfs())
        return;
    char db[700], ballast[700];
    snprintf(db, sizeof db, "%s/store.db", g_mnt);
    snprintf(ballast, sizeof ballast, "%s/ballast", g_mnt);
    ckpt_store *s;
    assert_int_equal(fu_open(&s, db, CKPT_DURABLE_FULL, 1), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    assert_int_equal(fu_save(s, "r", 0, FU_SMALL, NULL), CKPT_OK);
    int64_t next = 1;
    for (size_t slack = 0; slack <= SLACK_MAX; slack += SLACK_STEP) {
        fill(ballast, slack);
        int rc = fu_save(s, "r", next, FU_SMALL, NULL);
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ckpt_errmsg());
        g_tally[0].attempts++;
        char when[128];
        snprintf(when, sizeof when, "save with %zu KiB free", slack >> 10);
        if (rc == CKPT_OK) {
            g_tally[0].fit++;
            free_space(ballast);
            check_store(db, next + 1, -1, when);
            next++;
            continue;
        }
        if (rc != CKPT_EFULL)
            fail_msg("%s: code %d (%s), want CKPT_EFULL: %s", when, rc, ckpt_strerror(rc), msg);
        if (!strstr(msg, "disk full"))
            fail_msg("%s: the message does not say the disk is full: %s", when, msg);
        g_tally[0].efull++;
        check_store(db, next, next, when);
        free_space(ballast);
        int rr = fu_save(s, "r", next, FU_SMALL, NULL);
        if (rr != CKPT_OK)
            fail_msg("%s: after freeing space, the same handle: %d %s", when, rr, ckpt_errmsg());
        g_tally[0].retried_ok++;
        next++;
        check_store(db, next, -1, when);
    }
    assert_int_equal(ckpt_close(s), CKPT_OK);
    assert_true(g_tally[0].efull > 0);
    remove_store(db);
}

/* ---------------------------------------------------------------- metrics */

static void test_fault__real_full_disk_fails_a_metrics_flush_with_efull_keeping_values_buffered(void **state)
{
    (void)state;
    if (skip_without_tmpfs())
        return;
    char db[700], ballast[700];
    snprintf(db, sizeof db, "%s/metrics.db", g_mnt);
    snprintf(ballast, sizeof ballast, "%s/ballast", g_mnt);
    ckpt_store *s;
    assert_int_equal(fu_open(&s, db, CKPT_DURABLE_FULL, 1), CKPT_OK);
    assert_int_equal(ckpt_run_create(s, "r", NULL, 0), CKPT_OK);
    int64_t step = 0, flushed = 0;
    for (size_t slack = 0; slack <= SLACK_MAX / 4; slack += SLACK_STEP / 4) {
        fill(ballast, slack);
        /* 2000 values: about 60 KB of WAL */
        for (int k = 0; k < 2000; k++, step++)
            assert_int_equal(ckpt_metric_log(s, "r", "loss", 0, step, (double)step), CKPT_OK);
        int rc = ckpt_metrics_flush(s);
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ckpt_errmsg());
        g_tally[1].attempts++;
        if (rc != CKPT_OK) {
            if (rc != CKPT_EFULL)
                fail_msg("flush with %zu bytes free: code %d: %s", slack, rc, msg);
            g_tally[1].efull++;
            /* nothing of the batch visible to another handle */
            ckpt_store *v;
            assert_int_equal(fu_open(&v, db, CKPT_DURABLE_FULL, 1), CKPT_OK);
            assert_int_equal(fu_sql_int(v, "SELECT count(*) FROM metrics"), flushed);
            assert_int_equal(fu_verify(v), 0);
            ckpt_close(v);
            free_space(ballast);
            rc = ckpt_metrics_flush(s);
            if (rc != CKPT_OK)
                fail_msg("flush after freeing space, same handle: %s", ckpt_errmsg());
            g_tally[1].retried_ok++;
        } else {
            g_tally[1].fit++;
            free_space(ballast);
        }
        flushed = step;
        char sql[128];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM metrics WHERE name = 'loss' AND value = step AND step < %" PRId64,
                 step);
        assert_int_equal(fu_sql_int(s, sql), flushed);
    }
    assert_int_equal(ckpt_close(s), CKPT_OK);
    assert_true(g_tally[1].efull > 0);
    remove_store(db);
}

/* ---------------------------------------------------------------- export */

/* No "*.tmp.*" file left beside the export target. */
static void assert_no_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp."))
            fail_msg("export left %s/%s behind", dir, e->d_name);
    closedir(d);
}

/* The exported file imports back to the same tensors. */
static void check_export(const char *file, int64_t e)
{
    char db[700];
    snprintf(db, sizeof db, "%s/check%" PRId64 ".db", g_dir, e);
    ckpt_store *v;
    static int n; /* a new run per check: one (epoch, step) per line */
    char run[32];
    snprintf(run, sizeof run, "back%d", ++n);
    assert_int_equal(fu_open(&v, db, CKPT_DURABLE_OFF, 1), CKPT_OK);
    if (ckpt_import_safetensors(v, file, run, e, e * 10, NULL) != CKPT_OK)
        fail_msg("the exported %s does not import: %s", file, ckpt_errmsg());
    assert_int_equal(fu_check(v, run, e, FU_MEDIUM), 0);
    ckpt_close(v);
}

/* A store with r@0 and r@1 in the ordinary directory. */
static ckpt_store *export_source(void)
{
    char db[700];
    snprintf(db, sizeof db, "%s/source.db", g_dir);
    ckpt_store *s;
    assert_int_equal(fu_open(&s, db, CKPT_DURABLE_OFF, 1), CKPT_OK);
    if (ckpt_run_create(s, "r", NULL, 0) == CKPT_OK) {
        assert_int_equal(fu_save(s, "r", 0, FU_MEDIUM, NULL), CKPT_OK);
        assert_int_equal(fu_save(s, "r", 1, FU_MEDIUM, NULL), CKPT_OK);
    }
    return s;
}

static void test_fault__real_full_disk_fails_an_export_and_keeps_the_old_file(void **state)
{
    (void)state;
    if (skip_without_tmpfs())
        return;
    ckpt_store *s = export_source();
    char out[700], ballast[700];
    snprintf(out, sizeof out, "%s/out.safetensors", g_mnt);
    snprintf(ballast, sizeof ballast, "%s/ballast", g_mnt);
    assert_int_equal(ckpt_export_safetensors(s, "r", 0, out), CKPT_OK);
    size_t old_len = 0;
    unsigned char *old = tu_read_file(out, &old_len);
    assert_non_null(old);
    for (size_t slack = 0; slack <= 320 << 10; slack += SLACK_STEP) {
        fill(ballast, slack);
        int rc = ckpt_export_safetensors(s, "r", 1, out);
        g_tally[2].attempts++;
        if (rc == CKPT_OK) {
            g_tally[2].fit++; /* the whole file fitted: it is the new one */
            free_space(ballast);
            check_export(out, 1);
            break;
        }
        if (rc != CKPT_EFULL)
            fail_msg("export with %zu KiB free: code %d (%s): %s", slack >> 10, rc,
                     ckpt_strerror(rc), ckpt_errmsg());
        g_tally[2].efull++;
        /* the old file untouched, no temporary file left */
        size_t len = 0;
        unsigned char *now = tu_read_file(out, &len);
        assert_non_null(now);
        if (len != old_len || memcmp(now, old, len) != 0)
            fail_msg("export with %zu KiB free failed but changed %s", slack >> 10, out);
        free(now);
        assert_no_temp_files(g_mnt);
        free_space(ballast);
        if (ckpt_export_safetensors(s, "r", 1, out) != CKPT_OK)
            fail_msg("export after freeing space: %s", ckpt_errmsg());
        g_tally[2].retried_ok++;
        check_export(out, 1);
        /* back to the old content for the next round */
        assert_int_equal(tu_write_file(out, old, old_len), 0);
    }
    free(old);
    unlink(out);
    assert_true(g_tally[2].efull > 0);
    ckpt_close(s);
}

/* RLIMIT_FSIZE: the file may not grow past 64 KiB; write() fails with
 * EFBIG once SIGXFSZ is ignored. Runs even where tmpfs cannot be mounted. */
static void test_fault__file_size_limit_fails_an_export_cleanly(void **state)
{
    (void)state;
    ckpt_store *s = export_source();
    char out[700];
    snprintf(out, sizeof out, "%s/limited.safetensors", g_dir);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 64 << 10;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = ckpt_export_safetensors(s, "r", 1, out);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ckpt_errmsg());
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    /* transfer.c maps ENOSPC, EDQUOT and EFBIG (a file size limit is a
     * full disk for this file) to CKPT_EFULL, with the system's message. */
    if (rc != CKPT_EFULL)
        fail_msg("export over RLIMIT_FSIZE: code %d (%s): %s", rc, ckpt_strerror(rc), msg);
    if (!strstr(msg, "too large") && !strstr(msg, "disk full") && !strstr(msg, "space"))
        fail_msg("export over RLIMIT_FSIZE: the message does not say why: %s", msg);
    assert_int_equal(access(out, F_OK), -1);
    assert_no_temp_files(g_dir);
    printf("[ fault-diskfull ] export over RLIMIT_FSIZE: %s (%s)\n", ckpt_strerror(rc), msg);
    assert_int_equal(ckpt_export_safetensors(s, "r", 1, out), CKPT_OK);
    check_export(out, 1);
    ckpt_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault__real_full_disk_fails_saves_with_efull_then_the_same_handle_saves),
        cmocka_unit_test(test_fault__real_full_disk_fails_a_metrics_flush_with_efull_keeping_values_buffered),
        cmocka_unit_test(test_fault__real_full_disk_fails_an_export_and_keeps_the_old_file),
        cmocka_unit_test(test_fault__file_size_limit_fails_an_export_cleanly),
    };
    if (getenv("FAULT_FILTER"))
        cmocka_set_test_filter(getenv("FAULT_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
