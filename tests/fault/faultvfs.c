/*
 * faultvfs.c - see faultvfs.h. Every file SQLite opens (databases,
 * journals, WAL) goes through the shim; all calls are forwarded to the
 * real "unix" VFS except the xWrite/xSync that the armed fault hits.
 */
#include "faultvfs.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fv_file {
    sqlite3_file base;
    char path[512];
    sqlite3_file *real; /* points just after this struct */
} fv_file;

static sqlite3_vfs *g_real;
static sqlite3_vfs g_vfs;
static sqlite3_io_methods g_io;
static int g_mode;
static int g_armed;
static int g_full; /* the disk is "full" (a FULL mode fired) */
static int64_t g_at;
static fv_stats g_st;
static const void *g_eio_obj; /* the open file (of one connection) whose sync failed */
static int g_eio_dirty;       /* it was written since its last sync */
static int g_trace = -1; /* FV_TRACE=1 in the environment: log every armed call */

static int tracing(void)
{
    if (g_trace < 0) {
        const char *v = getenv("FV_TRACE");
        g_trace = v && *v == '1';
    }
    return g_trace;
}

#define REAL(f) (((fv_file *)(f))->real)

/* ---------------------------------------------------------------- I/O */

static int fv_close(sqlite3_file *f)
{
    if (g_eio_obj == f)
        g_eio_obj = NULL; /* its memory may serve another file next */
    int rc = REAL(f)->pMethods->xClose(REAL(f));
    return rc;
}

static int fv_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int fv_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    if (g_armed) {
        g_st.writes++;
        if (tracing())
            fprintf(stderr, "fv: write %lld %s off %lld len %d\n", (long long)g_st.writes,
                    ((fv_file *)f)->path, (long long)off, n);
        int hit = g_st.writes == g_at;
        if ((g_mode == FV_FULL_GROW || g_mode == FV_FULL_ALL) && (hit || g_full)) {
            sqlite3_int64 size = 0;
            int grows = REAL(f)->pMethods->xFileSize(REAL(f), &size) != SQLITE_OK ||
                        off + n > size;
            if (hit || g_mode == FV_FULL_ALL || grows) {
                g_full = 1;
                g_st.injected++;
                return SQLITE_FULL;
            }
        } else if (g_mode == FV_EIO_WRITE && hit) {
            g_st.injected++;
            return SQLITE_IOERR_WRITE;
        }
        if (g_eio_obj == f)
            g_eio_dirty = 1;
    }
    return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int fv_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int fv_sync(sqlite3_file *f, int flags)
{
    fv_file *ff = (fv_file *)f;
    if (g_armed) {
        g_st.syncs++;
        if (tracing())
            fprintf(stderr, "fv: sync %lld %s flags %d%s\n", (long long)g_st.syncs, ff->path, flags,
                    g_mode == FV_EIO_SYNC && g_st.syncs == g_at ? " -> EIO" : "");
        if (g_eio_obj == f) {
            if (g_eio_dirty)
                g_st.resyncs_after_rewrite++;
            else
                g_st.bare_resyncs++;
            g_eio_dirty = 0;
        }
        if (g_mode == FV_EIO_SYNC && g_st.syncs == g_at) {
            g_st.injected++;
            snprintf(g_st.eio_file, sizeof g_st.eio_file, "%s", ff->path);
            g_eio_obj = f;
            g_eio_dirty = 0;
            return SQLITE_IOERR_FSYNC;
        }
    }
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int fv_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int fv_lock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int fv_unlock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int fv_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int fv_file_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int fv_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int fv_device_chars(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int fv_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}

static int fv_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}

static void fv_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int fv_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int fv_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}

static int fv_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

/* ---------------------------------------------------------------- VFS */

static int fv_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
                   int *out_flags)
{
    (void)vfs;
    fv_file *ff = (fv_file *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    snprintf(ff->path, sizeof ff->path, "%s", name ? name : "");
    int rc = g_real->xOpen(g_real, name, ff->real, flags, out_flags);
    /* SQLite calls xClose only when pMethods is set. */
    f->pMethods = ff->real->pMethods ? &g_io : NULL;
    if (ff->real->pMethods && ff->real->pMethods->iVersion < g_io.iVersion) {
        /* every file of the unix VFS has version 3 methods */
        ff->real->pMethods->xClose(ff->real);
        f->pMethods = NULL;
        return SQLITE_CANTOPEN;
    }
    return rc;
}

static int fv_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return g_real->xDelete(g_real, name, sync_dir);
}

static int fv_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return g_real->xAccess(g_real, name, flags, out);
}

static int fv_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return g_real->xFullPathname(g_real, name, n, out);
}

static void *fv_dlopen(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return g_real->xDlOpen(g_real, name);
}

static void fv_dlerror(sqlite3_vfs *v, int n, char *msg)
{
    (void)v;
    g_real->xDlError(g_real, n, msg);
}

static void (*fv_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return g_real->xDlSym(g_real, h, sym);
}

static void fv_dlclose(sqlite3_vfs *v, void *h)
{
    (void)v;
    g_real->xDlClose(g_real, h);
}

static int fv_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_real->xRandomness(g_real, n, out);
}

static int fv_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return g_real->xSleep(g_real, us);
}

static int fv_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return g_real->xCurrentTime(g_real, out);
}

static int fv_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_real->xGetLastError(g_real, n, out);
}

static int fv_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return g_real->xCurrentTimeInt64(g_real, out);
}

int fv_install(void)
{
    if (g_real)
        return SQLITE_OK;
    sqlite3_vfs *real = sqlite3_vfs_find("unix");
    if (!real || real->iVersion < 2)
        return SQLITE_ERROR;
    g_io = (sqlite3_io_methods){3,
                                fv_close,
                                fv_read,
                                fv_write,
                                fv_truncate,
                                fv_sync,
                                fv_file_size,
                                fv_lock,
                                fv_unlock,
                                fv_check_reserved,
                                fv_file_control,
                                fv_sector_size,
                                fv_device_chars,
                                fv_shm_map,
                                fv_shm_lock,
                                fv_shm_barrier,
                                fv_shm_unmap,
                                fv_fetch,
                                fv_unfetch};
    g_vfs = (sqlite3_vfs){2,
                          (int)sizeof(fv_file) + real->szOsFile,
                          real->mxPathname,
                          NULL,
                          "faultvfs",
                          NULL,
                          fv_open,
                          fv_delete,
                          fv_access,
                          fv_full_pathname,
                          fv_dlopen,
                          fv_dlerror,
                          fv_dlsym,
                          fv_dlclose,
                          fv_randomness,
                          fv_sleep,
                          fv_current_time,
                          fv_last_error,
                          fv_current_time64,
                          NULL,
                          NULL,
                          NULL};
    g_real = real;
    int rc = sqlite3_vfs_register(&g_vfs, 1);
    if (rc != SQLITE_OK)
        g_real = NULL;
    return rc;
}

void fv_arm(int mode, int64_t n)
{
    memset(&g_st, 0, sizeof g_st);
    g_eio_obj = NULL;
    g_mode = mode;
    g_at = mode == FV_OFF ? 0 : n;
    g_full = 0;
    g_eio_dirty = 0;
    g_armed = 1;
}

void fv_disarm(void)
{
    g_armed = 0;
    g_full = 0;
    g_mode = FV_OFF;
}

void fv_resume(void)
{
    g_mode = FV_OFF;
    g_full = 0;
    g_armed = 1;
}

fv_stats fv_get(void)
{
    return g_st;
}
