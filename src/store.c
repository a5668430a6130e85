/*
 * store.c - opening, creating, upgrading and closing a store; the SQL
 * helpers every module uses. A store is two SQLite files: PATH (WAL mode;
 * runs, manifests, metrics: readers never block) and PATH-chunks (rollback
 * journal, 64 KiB pages: tensor bytes written once). See README "Design".
 */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chunks.h"
#include "error.h"
#include "pool.h"

extern const char *const ckpt__schema_main[];
extern const char *const ckpt__schema_chunks[];

#define DEFAULT_BUSY_MS 60000

/* ---------------------------------------------------------------- helpers */

int ckpt__sqlerr(sqlite3 *db, int rc, const char *what)
{
    int code;
    switch (rc & 0xff) {
    case SQLITE_FULL: code = CKPT_EFULL; break;
    case SQLITE_IOERR:
        code = (rc == SQLITE_IOERR_NOMEM) ? CKPT_ENOMEM : CKPT_EIO;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = CKPT_EBUSY; break;
    case SQLITE_NOMEM: code = CKPT_ENOMEM; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: code = CKPT_ECORRUPT; break;
    case SQLITE_READONLY: code = CKPT_EREADONLY; break;
    case SQLITE_CANTOPEN: code = CKPT_EIO; break;
    case SQLITE_TOOBIG:
    case SQLITE_CONSTRAINT:
    case SQLITE_RANGE: code = CKPT_EINVAL; break;
    default: code = CKPT_ERROR; break;
    }
    const char *m = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if (code == CKPT_EFULL)
        return ckpt__err(code, "%s: disk full (%s)", what, m);
    if (code == CKPT_EBUSY)
        return ckpt__err(code, "%s: the store is locked by another process (%s)", what, m);
    return ckpt__err(code, "%s: %s", what, m);
}

int ckpt__exec(sqlite3 *db, const char *sql, const char *what)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? CKPT_OK : ckpt__sqlerr(db, rc, what);
}

int ckpt__prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v3(db, sql, -1, 0, out, NULL);
    return rc == SQLITE_OK ? CKPT_OK : ckpt__sqlerr(db, rc, "preparing a query");
}

int ckpt__begin(sqlite3 *db, const char *what)
{
    /* A ROLLBACK that itself ran out of memory leaves the connection in
     * the failed operation's transaction (holding its lock): end it here,
     * or the handle would fail every write with "cannot start a
     * transaction within a transaction" (found by tests/fault). */
    ckpt__rollback(db);
    if (!sqlite3_get_autocommit(db))
        return ckpt__sqlerr(db, sqlite3_extended_errcode(db), what);
    return ckpt__exec(db, "BEGIN IMMEDIATE", what);
}

int ckpt__commit(sqlite3 *db, const char *what)
{
    int rc = ckpt__exec(db, "COMMIT", what);
    if (rc != CKPT_OK && !sqlite3_get_autocommit(db))
        ckpt__rollback(db);
    return rc;
}

void ckpt__rollback(sqlite3 *db)
{
    if (sqlite3_get_autocommit(db) ||
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK || sqlite3_get_autocommit(db))
        return;
    /* Parsing "ROLLBACK" needs memory, running the statement prepared at
     * open (keep_rollback) does not: without it, running out of memory
     * left the failed operation's transaction open, its rows visible to
     * this handle and its lock held (found by tests/fault). */
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st))
        if (!sqlite3_stmt_busy(st) && strcmp(sqlite3_sql(st), "ROLLBACK") == 0) {
            sqlite3_step(st);
            sqlite3_reset(st);
            return;
        }
}

/* Prepares the ROLLBACK that ckpt__rollback falls back on; finalized by
 * close_db. */
static int keep_rollback(sqlite3 *db, const char *path)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v3(db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    return rc == SQLITE_OK ? CKPT_OK : ckpt__sqlerr(db, rc, path);
}

static void close_db(sqlite3 *db)
{
    sqlite3_stmt *st;
    while ((st = sqlite3_next_stmt(db, NULL)) != NULL)
        sqlite3_finalize(st);
    sqlite3_close_v2(db);
}

int ckpt__writable(ckpt_store *s, const char *what)
{
    if (s->flags & CKPT_OPEN_READONLY)
        return ckpt__err(CKPT_EREADONLY, "%s: store %s was opened read-only", what, s->path);
    if (s->poisoned)
        return ckpt__err(CKPT_EIO,
                         "%s: store handle %s is no longer trusted after an I/O error (%s); "
                         "close it and open the store again",
                         what, s->path, s->poison_msg);
    return CKPT_OK;
}

int ckpt__poison(ckpt_store *s, int rc)
{
    /* After EIO (typically a failed fsync) the kernel may have dropped the
     * dirty pages and cleared the error: retrying could appear to succeed
     * over lost data. The handle is never trusted for writes again; a new
     * open rolls back through the journal. */
    if (rc == CKPT_EIO && !s->poisoned) {
        s->poisoned = 1;
        snprintf(s->poison_msg, sizeof s->poison_msg, "%s", ckpt_errmsg());
    }
    return rc;
}

int64_t ckpt__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double ckpt__now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int ckpt__check_name(const char *name, const char *what)
{
    if (!name || !*name)
        return ckpt__err(CKPT_EINVAL, "%s name is empty", what);
    size_t n = strlen(name);
    if (n > 256)
        return ckpt__err(CKPT_EINVAL, "%s name is %zu bytes long (at most 256)", what, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f)
            return ckpt__err(CKPT_EINVAL, "%s name '%.64s' has a control character at byte %zu",
                             what, name, i);
        if (c == '@' && strcmp(what, "run") == 0)
            return ckpt__err(CKPT_EINVAL,
                             "run name '%.64s' contains '@' (reserved for RUN@EPOCH references)",
                             name);
    }
    return CKPT_OK;
}

/* ---------------------------------------------------------------- opening */

static int file_state(const char *path, off_t *size)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return ckpt__err(CKPT_EIO, "cannot access %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return ckpt__err(CKPT_ENOTSTORE, "%s is not a regular file", path);
    *size = st.st_size;
    return 1;
}

/* A non-empty file must start with SQLite's magic before SQLite may touch
 * it: SQLite would happily treat some files as databases to be created. */
static int check_magic(const char *path)
{
    char head[16];
    FILE *f = fopen(path, "rb");
    if (!f)
        return ckpt__err(CKPT_EIO, "cannot open %s: %s", path, strerror(errno));
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n != sizeof head || memcmp(head, "SQLite format 3", 16) != 0)
        return ckpt__err(CKPT_ENOTSTORE, "%s is not a ckpt store (not an SQLite database); left untouched",
                         path);
    return CKPT_OK;
}

static int pragma_int(sqlite3 *db, const char *sql, int64_t *out, const char *path)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_NOTADB)
            return ckpt__err(CKPT_ENOTSTORE, "%s is not a ckpt store (%s); left untouched", path,
                             sqlite3_errmsg(db));
        return ckpt__sqlerr(db, rc, path);
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return CKPT_OK;
    }
    sqlite3_finalize(st);
    if ((rc & 0xff) == SQLITE_NOTADB)
        return ckpt__err(CKPT_ENOTSTORE, "%s is not a ckpt store (%s); left untouched", path,
                         sqlite3_errmsg(db));
    return ckpt__sqlerr(db, rc, path);
}

static int count_migrations(const char *const *m)
{
    int n = 0;
    while (m[n])
        n++;
    return n;
}

/* Refuses files that belong to someone else, or to a newer ckpt. *fresh is
 * set for an empty database (no tables, no application id). */
static int check_identity(sqlite3 *db, const char *path, int64_t app_id, const char *const *mig,
                          int *fresh)
{
    int64_t id, ver, ntables;
    int rc;
    /* One read transaction: another process creating the store commits its
     * tables and application id together, and three separate reads could
     * see the id before that commit and the tables after it, taking a new
     * store for another application's database (found by tests/stress,
     * two writers creating one store at once). */
    if ((rc = ckpt__exec(db, "BEGIN", path)) != CKPT_OK)
        return rc;
    if ((rc = pragma_int(db, "PRAGMA application_id", &id, path)) != CKPT_OK ||
        (rc = pragma_int(db, "PRAGMA user_version", &ver, path)) != CKPT_OK ||
        (rc = pragma_int(db, "SELECT count(*) FROM sqlite_schema", &ntables, path)) != CKPT_OK) {
        ckpt__rollback(db);
        return rc;
    }
    if ((rc = ckpt__exec(db, "COMMIT", path)) != CKPT_OK) {
        ckpt__rollback(db);
        return rc;
    }
    *fresh = 0;
    if (id == 0 && ver == 0 && ntables == 0) {
        *fresh = 1;
        return CKPT_OK;
    }
    if (id != app_id)
        return ckpt__err(CKPT_ENOTSTORE,
                         "%s is an SQLite database of another application (application_id "
                         "0x%08llx), not a ckpt store; left untouched",
                         path, (unsigned long long)id);
    /* user_version is a signed 32-bit field: a negative one would index
     * the migrations before their start (found by tests/fuzz). */
    if (ver < 0)
        return ckpt__err(CKPT_ECORRUPT, "%s has schema version %lld, which no ckpt writes", path,
                         (long long)ver);
    if (ver > count_migrations(mig))
        return ckpt__err(CKPT_EVERSION,
                         "%s has schema version %lld, written by a newer ckpt (this one knows "
                         "up to %d); upgrade ckpt to open it",
                         path, (long long)ver, count_migrations(mig));
    return CKPT_OK;
}

static int meta_set(sqlite3 *db, const char *key, const char *value);

/* Applies the missing migrations in one transaction; a new database also
 * gets its store id in that transaction, so no crash leaves a store
 * without one. */
static int migrate(sqlite3 *db, const char *path, int64_t app_id, const char *const *mig,
                   int readonly, const char *store_id)
{
    int64_t ver;
    int rc = pragma_int(db, "PRAGMA user_version", &ver, path);
    if (rc != CKPT_OK)
        return rc;
    int want = count_migrations(mig);
    if (ver == want)
        return CKPT_OK;
    if (readonly)
        return ckpt__err(CKPT_EREADONLY,
                         "%s has schema version %lld and needs an upgrade to %d; open it once "
                         "read-write (e.g. `ckpt init`)",
                         path, (long long)ver, want);
    if ((rc = ckpt__begin(db, path)) != CKPT_OK)
        return rc;
    /* Re-read inside the write lock: another process may have upgraded
     * (or, for a file someone else made, changed it to anything). */
    if ((rc = pragma_int(db, "PRAGMA user_version", &ver, path)) != CKPT_OK)
        goto fail;
    if (ver < 0 || ver > want) {
        rc = ckpt__err(ver < 0 ? CKPT_ECORRUPT : CKPT_EVERSION,
                       "%s: schema version changed to %lld while opening", path, (long long)ver);
        goto fail;
    }
    for (int64_t v = ver; v < want; v++) {
        char *emsg = NULL;
        int src = sqlite3_exec(db, mig[v], NULL, NULL, &emsg);
        if (src != SQLITE_OK) {
            rc = ckpt__err(ckpt__sqlerr(db, src, path), "%s: applying schema migration %lld: %s",
                           path, (long long)v + 1, emsg ? emsg : sqlite3_errstr(src));
            sqlite3_free(emsg);
            goto fail;
        }
    }
    if (ver == 0 && (rc = meta_set(db, "store_id", store_id)) != CKPT_OK)
        goto fail;
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA application_id=%lld; PRAGMA user_version=%d",
             (long long)app_id, want);
    if ((rc = ckpt__exec(db, sql, path)) != CKPT_OK)
        goto fail;
    return ckpt__commit(db, path);
fail:
    ckpt__rollback(db);
    return rc;
}

static int open_db_vfs(const char *path, int flags, int busy_ms, const char *vfs, sqlite3 **out);

static int open_db(const char *path, int flags, int busy_ms, sqlite3 **out)
{
    return open_db_vfs(path, flags, busy_ms, NULL, out);
}

static int open_db_vfs(const char *path, int flags, int busy_ms, const char *vfs, sqlite3 **out)
{
    /* A read-only store handle still opens the files read-write when it
     * may: after a crash SQLite must roll back a hot journal (chunk file)
     * or recover the WAL index before anyone can read, and a read-only
     * connection cannot. query_only then forbids every write statement. */
    int ro = (flags & CKPT_OPEN_READONLY) != 0;
    int oflags = !ro ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
                     : (access(path, W_OK) == 0 ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY);
    oflags |= SQLITE_OPEN_NOMUTEX;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, oflags, vfs);
    if (rc != SQLITE_OK) {
        int code = ckpt__sqlerr(db, rc, path);
        sqlite3_close(db);
        return code;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, busy_ms);
    /* Someone else's file may define views or triggers: do not run
     * functions with side effects from its schema. */
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL);
    /* Closing the last connection would checkpoint the WAL under an
     * exclusive lock, during which a plain sqlite3 shell without a busy
     * timeout gets "database is locked" (found by tests/stress). ckpt_close
     * runs a passive checkpoint instead, which never blocks readers. */
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 256 << 20);
    sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, 1 << 20);
    if (ro)
        sqlite3_exec(db, "PRAGMA query_only=1", NULL, NULL, NULL);
    *out = db;
    return CKPT_OK;
}

/* The leading members of SQLite's unixFile (os_unix.c), unchanged since
 * 2010. Only read after SQLITE_FCNTL_FILE_POINTER, and only trusted when
 * the descriptor is verified below to be the chunk file itself. */
struct unix_file_head {
    const sqlite3_io_methods *methods;
    sqlite3_vfs *vfs;
    void *inode;
    int h;
};

/* Why SQLite's descriptor and not one of our own: closing any descriptor
 * of a file drops every POSIX lock this process holds on it, SQLite's
 * included (found by tests/fault when a second descriptor was used). */
int ckpt__chunk_fd(ckpt_store *s)
{
    sqlite3_file *f = NULL;
    sqlite3_vfs *vfs = NULL;
    if (sqlite3_file_control(s->cdb, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) != SQLITE_OK ||
        !vfs || strncmp(vfs->zName, "unix", 4) != 0 ||
        sqlite3_file_control(s->cdb, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f ||
        !f->pMethods)
        return -1;
    int fd = ((const struct unix_file_head *)f)->h;
    struct stat a, b;
    if (fd < 0 || fstat(fd, &a) != 0 || stat(s->cpath, &b) != 0 || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino)
        return -1;
    return fd;
}

static const char *sync_pragma(int durability)
{
    switch (durability) {
    case CKPT_DURABLE_OFF: return "OFF";
    case CKPT_DURABLE_NORMAL: return "NORMAL";
    default: return "FULL";
    }
}

static int meta_get(sqlite3 *db, const char *key, char *buf, size_t cap)
{
    sqlite3_stmt *st;
    int rc = ckpt__prepare(db, "SELECT value FROM meta WHERE key = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    buf[0] = 0;
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    else if (r != SQLITE_DONE)
        rc = ckpt__sqlerr(db, r, "reading store metadata");
    sqlite3_finalize(st);
    return rc;
}

static int meta_set(sqlite3 *db, const char *key, const char *value)
{
    sqlite3_stmt *st;
    int rc = ckpt__prepare(db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? CKPT_OK : ckpt__sqlerr(db, r, "writing store metadata");
}

static int random_id(char out[33])
{
    unsigned char r[16];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(r, 1, 16, f) != 16) {
        if (f)
            fclose(f);
        return ckpt__err(CKPT_EIO, "cannot read /dev/urandom for a store id");
    }
    fclose(f);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return CKPT_OK;
}

/* Opens one file and checks it is ours (or empty), creating nothing
 * beside a file that is not a store. */
static int connect_one(ckpt_store *s, const char *path, int64_t app_id, const char *const *mig,
                       sqlite3 **out, int *fresh)
{
    off_t size = 0;
    int rc = file_state(path, &size);
    if (rc < 0)
        return rc;
    int exists = rc == 1;
    if (!exists && (s->flags & (CKPT_OPEN_READONLY | CKPT_OPEN_NOCREATE)))
        return ckpt__err(CKPT_ENOTFOUND, "no ckpt store at %s (create one with `ckpt init`)",
                         s->path);
    if (exists && size > 0 && (rc = check_magic(path)) != CKPT_OK)
        return rc;
    if ((rc = open_db(path, s->flags, s->busy_ms, out)) != CKPT_OK)
        return rc;
    if ((rc = check_identity(*out, path, app_id, mig, fresh)) != CKPT_OK)
        return rc;
    if (*fresh && (s->flags & (CKPT_OPEN_READONLY | CKPT_OPEN_NOCREATE)))
        return ckpt__err(CKPT_ENOTFOUND, "no ckpt store at %s (%s is an empty database)", s->path,
                         path);
    return CKPT_OK;
}

/* Switching a new file to WAL needs an exclusive lock, and SQLite answers
 * SQLITE_BUSY at once, without the busy handler, while another process
 * holds the file (several processes creating one store at the same moment:
 * found by tests/unit/test_store.c under load). Retry within the busy
 * timeout; once any of them has switched, the mode is in the file. */
static int set_wal(sqlite3 *db, const char *path, int busy_ms)
{
    int64_t deadline = ckpt__now_us() + (int64_t)busy_ms * 1000;
    for (useconds_t pause = 1000;; pause = pause < 50000 ? pause * 2 : pause) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(st, 0);
            int wal = mode && sqlite3_stricmp(mode, "wal") == 0;
            sqlite3_finalize(st);
            if (wal)
                return CKPT_OK;
            if (!mode)
                return ckpt__err(CKPT_ENOMEM, "%s: out of memory setting WAL mode", path);
            return ckpt__err(CKPT_EIO, "%s: cannot switch to WAL mode (the file system may "
                                       "not support shared memory)", path);
        }
        sqlite3_finalize(st);
        if ((rc & 0xff) != SQLITE_BUSY || ckpt__now_us() >= deadline)
            return ckpt__sqlerr(db, rc, path);
        usleep(pause);
    }
}

static int setup_one(ckpt_store *s, sqlite3 *db, const char *path, int64_t app_id,
                     const char *const *mig, int is_main, const char *store_id)
{
    int rc, ro = (s->flags & CKPT_OPEN_READONLY) != 0;
    if (!ro && (rc = is_main ? set_wal(db, path, s->busy_ms)
                             /* page_size must precede the first write. */
                             : ckpt__exec(db, "PRAGMA page_size=65536", path)))
        return rc;
    /* The chunk file stays fully synced unless durability is OFF: its
     * commit must be on disk before the manifest that refers to it. */
    int dur = s->durability;
    if (!is_main && dur == CKPT_DURABLE_NORMAL)
        dur = CKPT_DURABLE_FULL;
    char sql[256];
    snprintf(sql, sizeof sql,
             "PRAGMA synchronous=%s; PRAGMA secure_delete=OFF; PRAGMA foreign_keys=OFF;"
             "PRAGMA cache_size=-%d; PRAGMA mmap_size=%lld",
             sync_pragma(dur), is_main ? 8192 : 16384, is_main ? 0LL : (long long)s->mmap);
    if ((rc = ckpt__exec(db, sql, path)))
        return rc;
    return migrate(db, path, app_id, mig, ro, store_id);
}

/* Opens both files. Creation order and the store id written with each
 * schema make every crash during creation harmless: the chunk file is
 * created first; a main file without its chunk file is only accepted
 * while it holds no tensors. */
static int open_files(ckpt_store *s)
{
    int main_fresh = 0, chunks_fresh = 0, rc;
    char mid[64] = "", cid[64] = "";
    if ((rc = connect_one(s, s->path, CKPT__APP_ID_MAIN, ckpt__schema_main, &s->db, &main_fresh)))
        return rc;
    if (!main_fresh && (rc = meta_get(s->db, "store_id", mid, sizeof mid)))
        return rc;
    if ((rc = connect_one(s, s->cpath, CKPT__APP_ID_CHUNKS, ckpt__schema_chunks, &s->cdb,
                          &chunks_fresh)))
        return rc;
    if (chunks_fresh && !main_fresh) {
        int64_t n;
        if ((rc = pragma_int(s->db, "SELECT count(*) FROM tensors", &n, s->path)))
            return rc;
        if (n > 0)
            return ckpt__err(CKPT_ECORRUPT,
                             "chunk file %s is missing or empty but %s has %lld tensors; "
                             "restore it from a backup",
                             s->cpath, s->path, (long long)n);
    }
    if (!chunks_fresh && (rc = meta_get(s->cdb, "store_id", cid, sizeof cid)))
        return rc;
    if (!mid[0] && !cid[0] && (rc = random_id(mid)))
        return rc;
    if ((rc = setup_one(s, s->cdb, s->cpath, CKPT__APP_ID_CHUNKS, ckpt__schema_chunks, 0,
                        mid[0] ? mid : cid)))
        return rc;
    if ((rc = meta_get(s->cdb, "store_id", cid, sizeof cid)))
        return rc;
    if (main_fresh) {
        int64_t n;
        if ((rc = pragma_int(s->cdb, "SELECT count(*) FROM chunks", &n, s->cpath)))
            return rc;
        if (n > 0)
            return ckpt__err(CKPT_ECORRUPT,
                             "%s holds %lld chunks but its main database %s is missing or empty",
                             s->cpath, (long long)n, s->path);
    }
    if ((rc = setup_one(s, s->db, s->path, CKPT__APP_ID_MAIN, ckpt__schema_main, 1, cid)))
        return rc;
    if ((rc = meta_get(s->db, "store_id", mid, sizeof mid)))
        return rc;
    if (strcmp(mid, cid) != 0)
        return ckpt__err(CKPT_ECORRUPT, "%s belongs to another store than %s (store ids %s and %s)",
                         s->cpath, s->path, cid[0] ? cid : "none", mid[0] ? mid : "none");
    return CKPT_OK;
}

int ckpt_codec_parse(const char *name)
{
    static const char *const names[] = {"auto", "raw", "planes"};
    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, names[i]) == 0)
            return i; /* CKPT_CODEC_AUTO, _RAW, _PLANES */
    return ckpt__err(CKPT_EINVAL, "unknown codec '%s' (expected auto, raw or planes)",
                     name ? name : "(null)");
}

/* Store-wide defaults saved by ckpt_save_params(). */
static int load_params(ckpt_store *s)
{
    static const struct {
        const char *key;
        int param;
    } keys[] = {{"codec", CKPT_PARAM_CODEC}, {"level", CKPT_PARAM_LEVEL},
                {"chunk_size", CKPT_PARAM_CHUNK_SIZE}};
    for (size_t i = 0; i < 3; i++) {
        char v[64];
        int rc = meta_get(s->db, keys[i].key, v, sizeof v);
        if (rc)
            return rc;
        if (!v[0])
            continue;
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || *end || ckpt_set_param(s, keys[i].param, x) != CKPT_OK)
            return ckpt__err(CKPT_ECORRUPT, "%s: stored default %s = '%s' is invalid", s->path,
                             keys[i].key, v);
    }
    return CKPT_OK;
}

int ckpt_save_params(ckpt_store *s)
{
    int rc = ckpt__writable(s, "saving store defaults");
    if (rc || (rc = ckpt__begin(s->db, "saving store defaults")))
        return rc;
    char v[3][32];
    snprintf(v[0], 32, "%lld", (long long)s->codec);
    snprintf(v[1], 32, "%lld", (long long)s->level);
    snprintf(v[2], 32, "%lld", (long long)s->chunk_size);
    if ((rc = meta_set(s->db, "codec", v[0])) || (rc = meta_set(s->db, "level", v[1])) ||
        (rc = meta_set(s->db, "chunk_size", v[2]))) {
        ckpt__rollback(s->db);
        return rc;
    }
    return ckpt__poison(s, ckpt__commit(s->db, "saving store defaults"));
}

int ckpt_open(ckpt_store **out, const char *path, const ckpt_open_opts *opts)
{
    *out = NULL;
    if (!path || !*path)
        return ckpt__err(CKPT_EINVAL, "store path is empty");
    ckpt_open_opts o = {0, 0, CKPT_DURABLE_FULL};
    if (opts)
        o = *opts;
    if (o.durability < CKPT_DURABLE_FULL || o.durability > CKPT_DURABLE_OFF)
        return ckpt__err(CKPT_EINVAL, "unknown durability level %d", o.durability);
    if (o.busy_timeout_ms < 0)
        return ckpt__err(CKPT_EINVAL, "negative busy timeout %d", o.busy_timeout_ms);

    ckpt_store *s = ckpt__calloc(1, sizeof *s);
    if (!s)
        return ckpt__err(CKPT_ENOMEM, "out of memory opening %s", path);
    s->flags = o.flags;
    s->durability = o.durability;
    s->busy_ms = o.busy_timeout_ms ? o.busy_timeout_ms : DEFAULT_BUSY_MS;
    s->codec = CKPT_CODEC_AUTO;
    s->level = 1;
    s->threads = 0;
    s->chunk_size = 4 << 20;
    s->flush_ms = 2000;
    s->mmap = CKPT__DEFAULT_MMAP;
    size_t n = strlen(path);
    s->path = ckpt__strdup(path);
    s->cpath = ckpt__malloc(n + sizeof "-chunks");
    if (!s->path || !s->cpath) {
        ckpt_close(s);
        return ckpt__err(CKPT_ENOMEM, "out of memory opening %s", path);
    }
    memcpy(s->cpath, path, n);
    memcpy(s->cpath + n, "-chunks", sizeof "-chunks");

    int rc = open_files(s);
    if (rc == CKPT_OK)
        rc = load_params(s);
    if (rc == CKPT_OK && (rc = keep_rollback(s->db, s->path)) == CKPT_OK)
        rc = keep_rollback(s->cdb, s->cpath);
    if (rc != CKPT_OK) {
        int keep = rc;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ckpt_errmsg());
        ckpt_close(s);
        return ckpt__err(keep, "%s", msg);
    }
    *out = s;
    return CKPT_OK;
}

void ckpt__metrics_free(ckpt_store *s);
int ckpt__metrics_flush_all(ckpt_store *s);

int ckpt_close(ckpt_store *s)
{
    if (!s)
        return CKPT_OK;
    int rc = CKPT_OK;
    if (s->db && s->mlen)
        rc = ckpt_metrics_flush(s);
    ckpt__metrics_free(s);
    ckpt__pool_free(s->pool);
    /* Not on a poisoned handle: the checkpoint would fsync the WAL whose
     * fsync failed, and write (found by tests/fault). The next open
     * checkpoints instead. */
    if (s->db && !(s->flags & CKPT_OPEN_READONLY) && !s->poisoned)
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (s->db)
        close_db(s->db);
    if (s->cdb)
        close_db(s->cdb);
    ckpt__free(s->path);
    ckpt__free(s->cpath);
    ckpt__free(s);
    return rc;
}

static void pool_ctx_free(void *ctx)
{
    ckpt__wctx *w = ctx;
    if (w->cdb)
        close_db(w->cdb);
    ckpt__codec_ctx_free(w->codec);
    ckpt__free(w);
}

static int pool_ctx_new(void **ctx)
{
    ckpt__wctx *w = ckpt__calloc(1, sizeof *w);
    if (!w)
        return ckpt__err(CKPT_ENOMEM, "out of memory starting worker threads");
    int rc = ckpt__codec_ctx_new(&w->codec);
    if (rc) {
        pool_ctx_free(w);
        return rc;
    }
    *ctx = w;
    return CKPT_OK;
}

/* Opens a worker's connection to the file and through the VFS of s->cdb:
 * the absolute name SQLite resolved at open (a relative path would follow a
 * later chdir) and the same VFS (another one would not share SQLite's
 * per-file locks with s->cdb). Read-only like a read-only store handle
 * (query_only); a small page cache, blob pages only pass through it; the
 * ROLLBACK prepared as on every connection of ours. */
static int open_worker_db(ckpt_store *s, sqlite3 **out)
{
    const char *name = sqlite3_db_filename(s->cdb, "main");
    sqlite3_vfs *vfs = NULL;
    if (!name || !*name || sqlite3_file_control(s->cdb, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) !=
                               SQLITE_OK || !vfs)
        return ckpt__err(CKPT_ERROR, "%s: cannot tell the chunk file's name and VFS", s->cpath);
    sqlite3 *db;
    int rc = open_db_vfs(name, s->flags | CKPT_OPEN_READONLY, s->busy_ms, vfs->zName, &db);
    if (rc)
        return rc;
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA cache_size=-1024; PRAGMA mmap_size=%lld", (long long)s->mmap);
    if ((rc = ckpt__exec(db, sql, s->cpath)) || (rc = keep_rollback(db, s->cpath))) {
        close_db(db);
        return rc;
    }
    *out = db;
    return CKPT_OK;
}

int ckpt__wctx_cdb(ckpt_store *s, ckpt__wctx *w, sqlite3 **out)
{
    /* A transaction left open by a failed job (its ROLLBACK failed too)
     * would hold the chunk file's SHARED lock, shutting out every commit:
     * such a connection is closed and made anew. */
    if (w->cdb && !sqlite3_get_autocommit(w->cdb)) {
        ckpt__rollback(w->cdb);
        if (!sqlite3_get_autocommit(w->cdb)) {
            close_db(w->cdb);
            w->cdb = NULL;
        }
    }
    if (!w->cdb) {
        int rc = open_worker_db(s, &w->cdb);
        if (rc)
            return rc;
    }
    *out = w->cdb;
    return CKPT_OK;
}

int ckpt__store_pool(ckpt_store *s)
{
    if (s->pool)
        return CKPT_OK;
    int n = s->threads > 0 ? (int)s->threads : ckpt__ncpu();
    return ckpt__pool_new(&s->pool, n, pool_ctx_new, pool_ctx_free);
}

sqlite3 *ckpt_store_db(ckpt_store *s)
{
    return s ? s->db : NULL;
}

/* ---------------------------------------------------------------- params */

static const struct {
    int param;
    int64_t min, max;
} bounds[] = {
    {CKPT_PARAM_CODEC, CKPT_CODEC_AUTO, CKPT_CODEC_PLANES},
    {CKPT_PARAM_LEVEL, 1, 19},
    {CKPT_PARAM_THREADS, 0, 64},
    {CKPT_PARAM_CHUNK_SIZE, 1 << 20, 64 << 20},
    {CKPT_PARAM_METRICS_FLUSH_MS, 0, 3600000},
    {CKPT_PARAM_MMAP, 0, INT64_C(1) << 40},
};

/* SQLite's allocator wants the size of a block back: keep it in a
 * 16-byte header (16 keeps SQLite's 8-byte alignment). */
#define SQL_HDR 16

static void *sql_malloc(int n)
{
    if (n <= 0)
        return NULL;
    unsigned char *p = ckpt__malloc((size_t)n + SQL_HDR);
    if (!p)
        return NULL;
    memcpy(p, &(size_t){(size_t)n}, sizeof(size_t));
    return p + SQL_HDR;
}

static void sql_free(void *p)
{
    if (p)
        ckpt__free((unsigned char *)p - SQL_HDR);
}

static int sql_size(void *p)
{
    size_t n = 0;
    if (p)
        memcpy(&n, (unsigned char *)p - SQL_HDR, sizeof n);
    return (int)n;
}

static void *sql_realloc(void *p, int n)
{
    if (!p)
        return sql_malloc(n);
    if (n <= 0)
        return NULL;
    unsigned char *q = ckpt__realloc((unsigned char *)p - SQL_HDR, (size_t)n + SQL_HDR);
    if (!q)
        return NULL;
    memcpy(q, &(size_t){(size_t)n}, sizeof(size_t));
    return q + SQL_HDR;
}

static int sql_roundup(int n)
{
    return (n + 7) & ~7;
}

static int sql_init(void *ctx)
{
    (void)ctx;
    return SQLITE_OK;
}

static void sql_shutdown(void *ctx)
{
    (void)ctx;
}

int ckpt_set_allocator(const ckpt_allocator *a)
{
    static sqlite3_mem_methods saved;
    static int have_saved;
    static const sqlite3_mem_methods ours = {sql_malloc, sql_free,   sql_realloc, sql_size,
                                             sql_roundup, sql_init, sql_shutdown, NULL};
    int rc = ckpt__set_allocator_only(a);
    if (rc)
        return rc;
    /* SQLite takes a new allocator only while it is shut down: this is why
     * no store may be open. */
    if (sqlite3_shutdown() != SQLITE_OK)
        return ckpt__err(CKPT_ERROR, "ckpt_set_allocator: SQLite could not shut down");
    if (!have_saved) {
        sqlite3_config(SQLITE_CONFIG_GETMALLOC, &saved);
        have_saved = 1;
    }
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, a ? &ours : &saved) != SQLITE_OK)
        return ckpt__err(CKPT_ERROR, "ckpt_set_allocator: SQLite refused the allocator");
    return CKPT_OK;
}

int ckpt_param_bounds(int param, int64_t *out_min, int64_t *out_max)
{
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++)
        if (bounds[i].param == param) {
            if (out_min)
                *out_min = bounds[i].min;
            if (out_max)
                *out_max = bounds[i].max;
            return CKPT_OK;
        }
    return ckpt__err(CKPT_EINVAL, "unknown parameter %d", param);
}

int ckpt_set_param(ckpt_store *s, int param, int64_t value)
{
    int64_t lo, hi;
    int rc = ckpt_param_bounds(param, &lo, &hi);
    if (rc)
        return rc;
    if (value < lo || value > hi)
        return ckpt__err(CKPT_EINVAL, "parameter %d: value %lld outside [%lld, %lld]", param,
                         (long long)value, (long long)lo, (long long)hi);
    switch (param) {
    case CKPT_PARAM_CODEC: s->codec = value; break;
    case CKPT_PARAM_LEVEL: s->level = value; break;
    case CKPT_PARAM_THREADS:
        if (s->writer_active)
            return ckpt__err(CKPT_EINVAL, "cannot change the thread count while a writer is open");
        s->threads = value;
        ckpt__pool_free(s->pool); /* restarted with the new count on next use */
        s->pool = NULL;
        break;
    case CKPT_PARAM_CHUNK_SIZE:
        if (value % (1 << 20))
            return ckpt__err(CKPT_EINVAL, "chunk size %lld is not a multiple of 1 MiB",
                             (long long)value);
        s->chunk_size = value;
        break;
    case CKPT_PARAM_METRICS_FLUSH_MS: s->flush_ms = value; break;
    case CKPT_PARAM_MMAP: {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA mmap_size=%lld", (long long)value);
        if (value == s->mmap)
            break;
        if (s->writer_active)
            return ckpt__err(CKPT_EINVAL, "cannot change the mmap size while a writer is open");
        int prc = ckpt__exec(s->cdb, sql, s->cpath);
        if (prc)
            return prc;
        s->mmap = value;
        ckpt__pool_free(s->pool); /* the workers' connections reopen with it */
        s->pool = NULL;
        break;
    }
    }
    return CKPT_OK;
}

int ckpt_get_param(ckpt_store *s, int param, int64_t *out)
{
    int rc = ckpt_param_bounds(param, NULL, NULL);
    if (rc)
        return rc;
    switch (param) {
    case CKPT_PARAM_CODEC: *out = s->codec; break;
    case CKPT_PARAM_LEVEL: *out = s->level; break;
    case CKPT_PARAM_THREADS: *out = s->threads; break;
    case CKPT_PARAM_CHUNK_SIZE: *out = s->chunk_size; break;
    case CKPT_PARAM_METRICS_FLUSH_MS: *out = s->flush_ms; break;
    case CKPT_PARAM_MMAP: *out = s->mmap; break;
    }
    return CKPT_OK;
}
