/*
 * sys.c - operating-system helpers of ckpt-bench: clocks, /proc/self/io,
 * recursive removal, child processes, file system type, error exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int64_t bench_proc_write_bytes(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return -1;
    char line[256];
    int64_t v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "write_bytes:", 12) == 0) {
            char *end;
            errno = 0;
            long long n = strtoll(line + 12, &end, 10);
            if (errno == 0 && end != line + 12 && n >= 0)
                v = n;
            break;
        }
    }
    fclose(f);
    return v;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    if (r != 0 && errno != ENOENT)
        fprintf(stderr, "ckpt-bench: cannot remove %s: %s\n", path, strerror(errno));
    return 0; /* remove as much as possible */
}

int bench_rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : -1;
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return -1;
    return lstat(path, &sb) == 0 ? -1 : 0;
}

void bench_store_remove(const char *path)
{
    static const char *const suffixes[] = {
        "", "-wal", "-shm", "-journal", "-chunks", "-chunks-journal", "-chunks-wal", "-chunks-shm"};
    char buf[PATH_MAX];
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        int n = snprintf(buf, sizeof buf, "%s%s", path, suffixes[i]);
        if (n > 0 && (size_t)n < sizeof buf)
            unlink(buf);
    }
}

void *bench_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        bench_die("out of memory (%zu bytes)", n);
    return p;
}

char *bench_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = bench_xmalloc(a + b + 2);
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

char *bench_read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (n == cap) {
            if (cap >= max)
                break;
            cap = cap * 2 > max ? max : cap * 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    int bad = ferror(f) || (buf && n == cap && fgetc(f) != EOF);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int bench_spawn(char *const argv[], const char *out_path, const char *err_path, double *secs)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out_path)
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out_path, O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
    if (err_path)
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err_path, O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    double t0 = bench_now();
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "ckpt-bench: cannot run %s: %s\n", argv[0], strerror(rc));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "ckpt-bench: waiting for %s: %s\n", argv[0], strerror(errno));
            return -1;
        }
    }
    if (secs)
        *secs = bench_now() - t0;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

const char *bench_fs_type(const char *path, char *buf, size_t cap)
{
    struct statfs sf;
    if (statfs(path, &sf) != 0) {
        snprintf(buf, cap, "unknown");
        return buf;
    }
    static const struct {
        unsigned long magic;
        const char *name;
    } known[] = {{0xEF53, "ext4"},      {0x01021994, "tmpfs"},     {0x58465342, "xfs"},
                 {0x9123683E, "btrfs"}, {0x794c7630, "overlayfs"}, {0x2FC12FC1, "zfs"},
                 {0x6969, "nfs"},       {0x65735546, "fuse"},      {0xF2F52010, "f2fs"}};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
        if ((unsigned long)sf.f_type == known[i].magic) {
            snprintf(buf, cap, "%s", known[i].name);
            return buf;
        }
    }
    snprintf(buf, cap, "0x%lx", (unsigned long)sf.f_type);
    return buf;
}

int bench_exe_dir(char *buf, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n <= 0 || (size_t)n >= cap - 1)
        return -1;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return 0;
}

int bench_file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "ckpt-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void bench_die_ckpt(int rc, const char *what)
{
    bench_die("%s: %s (%s)", what, ckpt_errmsg(), ckpt_strerror(rc));
}
