/*
 * ckpt.h - the one public header of libckpt.
 *
 * libckpt stores a neural-network training history in one SQLite store:
 * runs with their YAML configs, per-epoch checkpoints (named tensors) and
 * metrics. Every function that can fail returns an int: CKPT_OK (0) or a
 * negative code from the enum below; ckpt_errmsg() then gives a message for
 * people that names the run, checkpoint, tensor or file involved.
 *
 * Threads: a ckpt_store and everything opened from it (writers, readers) must
 * be used by one thread at a time. Different stores may be used by different
 * threads at once. The library starts its own worker threads for hashing,
 * encoding and decoding; during a restore each reads the chunk file through
 * a read-only SQLite connection of its own (so SQLite must be built
 * thread-safe, as Debian's is; a single-thread SQLite makes restores read on
 * the calling thread).
 *
 * Ownership: strings handed in are copied when kept. Pointers handed out are
 * borrowed unless the comment says "free with ckpt_free()"; the comment says
 * until when they stay valid.
 */
#ifndef CKPT_H
#define CKPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CKPT_BUILDING) && defined(__GNUC__)
#define CKPT_API __attribute__((visibility("default")))
#else
#define CKPT_API
#endif

#define CKPT_VERSION_MAJOR 0
#define CKPT_VERSION_MINOR 1
#define CKPT_VERSION_PATCH 0
#define CKPT_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------- errors */

/* Result codes. This enum is only ever appended to; values never change. */
enum {
    CKPT_OK = 0,
    CKPT_ERROR = -1,        /* internal error (a bug, or an unexpected SQLite state) */
    CKPT_ENOTFOUND = -2,    /* run, checkpoint, tensor or file does not exist */
    CKPT_EINVAL = -3,       /* bad input: argument, config, file format */
    CKPT_ECORRUPT = -4,     /* stored data failed its check; no bytes returned */
    CKPT_EIO = -5,          /* the operating system reported an I/O error */
    CKPT_EFULL = -6,        /* disk (or quota) full; nothing partial is visible */
    CKPT_EBUSY = -7,        /* another process held the store past the busy timeout */
    CKPT_ENOMEM = -8,       /* out of memory */
    CKPT_EEXISTS = -9,      /* run (or checkpoint) already exists */
    CKPT_EVERSION = -10,    /* store written by a newer version of ckpt */
    CKPT_ENOTSTORE = -11,   /* the file is not a ckpt store; it was left untouched */
    CKPT_ENOCHECKPOINT = -12, /* the run exists but has no checkpoint yet */
    CKPT_EREADONLY = -13,   /* write attempted on a store opened read-only */
    CKPT_ERANGE = -14       /* offset/length outside the tensor, or buffer too small */
};

/* The message for the last failure on this thread. Never NULL. Valid until
 * the next ckpt_* call on this thread. */
CKPT_API const char *ckpt_errmsg(void);

/* A short constant English name for a result code ("not found", ...). */
CKPT_API const char *ckpt_strerror(int code);

/* Frees memory that libckpt handed out with "free with ckpt_free()". NULL ok. */
CKPT_API void ckpt_free(void *p);

/* Optional allocator hook. Must be called before any other ckpt_* call (or
 * while no store is open). NULL restores the C library's malloc family.
 * SQLite's own allocations are routed through it as well. */
typedef struct ckpt_allocator {
    void *(*malloc_fn)(void *ctx, size_t n);
    void *(*realloc_fn)(void *ctx, void *p, size_t n);
    void (*free_fn)(void *ctx, void *p);
    void *ctx;
} ckpt_allocator;
CKPT_API int ckpt_set_allocator(const ckpt_allocator *a);

/* ---------------------------------------------------------------- types */

typedef enum ckpt_dtype {
    CKPT_F64 = 1, CKPT_F32 = 2, CKPT_F16 = 3, CKPT_BF16 = 4,
    CKPT_I64 = 5, CKPT_I32 = 6, CKPT_I16 = 7, CKPT_I8 = 8,
    CKPT_U8 = 9, CKPT_BOOL = 10
} ckpt_dtype;

typedef enum ckpt_kind {
    CKPT_KIND_MODEL = 1,     /* weights, biases, buffers of the network */
    CKPT_KIND_OPTIMIZER = 2, /* optimizer moments, step counts */
    CKPT_KIND_RNG = 3,       /* random number generator state */
    CKPT_KIND_STATE = 4,     /* data order and position, epoch, step, scheduler */
    CKPT_KIND_EXTRA = 5      /* anything else */
} ckpt_kind;

#define CKPT_MAX_DIMS 8
#define CKPT_HASH_SIZE 16 /* bytes of a content hash (XXH3-128, see README) */
#define CKPT_HEAD (-1)    /* "the run's head" where an epoch is expected */

/* Name ("f32", "model", ...) of a dtype or kind; NULL if unknown. */
CKPT_API const char *ckpt_dtype_name(int dtype);
CKPT_API const char *ckpt_kind_name(int kind);
/* Parse a name back; returns the value or CKPT_EINVAL. */
CKPT_API int ckpt_dtype_parse(const char *name);
CKPT_API int ckpt_kind_parse(const char *name);
/* Bytes per element of a dtype (bool is one byte); 0 if unknown. */
CKPT_API size_t ckpt_dtype_size(int dtype);

/* ---------------------------------------------------------------- store */

typedef struct ckpt_store ckpt_store;

enum {
    CKPT_OPEN_READONLY = 1, /* never write; fails with CKPT_ENOTFOUND if absent */
    CKPT_OPEN_NOCREATE = 2  /* read-write, but fail with CKPT_ENOTFOUND if absent */
};

enum {
    CKPT_DURABLE_FULL = 0,   /* fsync at every commit: a power loss loses nothing committed */
    CKPT_DURABLE_NORMAL = 1, /* a process crash loses nothing; a power loss may lose
                                the last commits but never corrupts the store */
    CKPT_DURABLE_OFF = 2     /* no fsync: for throwaway stores and tests only */
};

typedef struct ckpt_open_opts {
    int flags;           /* CKPT_OPEN_* */
    int busy_timeout_ms; /* how long to wait for another process; 0 = default (60000) */
    int durability;      /* CKPT_DURABLE_* */
} ckpt_open_opts;

/* Opens (and if needed creates, or upgrades) the store at path. A store is
 * two files: path (runs, manifests, metrics; WAL mode) and path + "-chunks"
 * (tensor bytes). opts may be NULL for defaults.
 * Errors: CKPT_ENOTFOUND (absent with READONLY/NOCREATE), CKPT_ENOTSTORE
 * (the file is something else; untouched), CKPT_EVERSION, CKPT_ECORRUPT,
 * CKPT_EIO, CKPT_EBUSY, CKPT_ENOMEM, CKPT_EINVAL.
 * On success *out must be closed with ckpt_close(). */
CKPT_API int ckpt_open(ckpt_store **out, const char *path, const ckpt_open_opts *opts);

/* Flushes buffered metrics and closes. Returns the flush result (the store is
 * closed either way). NULL is a no-op returning CKPT_OK. */
CKPT_API int ckpt_close(ckpt_store *s);

/* Store parameters, zstd-style: one setter with queryable bounds. */
enum {
    CKPT_PARAM_CODEC = 1,      /* CKPT_CODEC_*; default CKPT_CODEC_AUTO */
    CKPT_PARAM_LEVEL = 2,      /* zstd level 1..19; default 1 */
    CKPT_PARAM_THREADS = 3,    /* worker threads for hashing/encoding; 0 = one per core */
    CKPT_PARAM_CHUNK_SIZE = 4, /* bytes per chunk, a multiple of 1 MiB up to 64 MiB; default 4 MiB */
    CKPT_PARAM_METRICS_FLUSH_MS = 5, /* max age of a buffered metric; default 2000 */
    CKPT_PARAM_MMAP = 6 /* bytes of the chunk file read through mmap (SQLite caps it, 2 GiB
                           on Debian); default 0 = pread only. Mapped reads copy once instead
                           of twice (faster restores), but the mapped pages count in the
                           process's RSS and a media error while reading them ends the
                           process with SIGBUS instead of returning CKPT_EIO */
};
enum {
    CKPT_CODEC_AUTO = 0,  /* delta when it pays, else byte planes + zstd when it pays, else raw;
                             at level 1 (default) a full chunk is planes-coded only if that
                             saves a quarter of it (decoding costs restore speed) */
    CKPT_CODEC_RAW = 1,   /* no transformation */
    CKPT_CODEC_PLANES = 2,/* byte-plane split by dtype width, zstd on planes where it pays */
    CKPT_CODEC_DELTA = 3  /* (stored only) XOR against a base chunk, then planes */
};
/* Sets a parameter for this handle. Codec, level and chunk size start from
 * the store's saved defaults (see ckpt_save_params); a run whose YAML config
 * has `ckpt: {codec: raw|planes|auto, level: N}` overrides codec and level
 * for its own checkpoints. Errors: CKPT_EINVAL (unknown param or value out
 * of bounds; the chunk size must be a multiple of 1 MiB; CKPT_PARAM_THREADS
 * or a new CKPT_PARAM_MMAP while a writer is open on the handle). */
CKPT_API int ckpt_set_param(ckpt_store *s, int param, int64_t value);
CKPT_API int ckpt_get_param(ckpt_store *s, int param, int64_t *out);
CKPT_API int ckpt_param_bounds(int param, int64_t *out_min, int64_t *out_max);
/* Saves this handle's codec, level and chunk size as the store's defaults
 * for every later open. Errors: CKPT_EREADONLY, write errors. */
CKPT_API int ckpt_save_params(ckpt_store *s);
/* Parses a codec name ("auto", "raw", "planes") into CKPT_CODEC_*, or
 * CKPT_EINVAL. */
CKPT_API int ckpt_codec_parse(const char *name);

/* The SQLite connection to the main database, for read-only queries on the
 * documented views. Borrowed; valid until ckpt_close(). Do not change its
 * settings or write through it. */
struct sqlite3;
CKPT_API struct sqlite3 *ckpt_store_db(ckpt_store *s);

/* ---------------------------------------------------------------- runs */

typedef struct ckpt_checkpoint_info {
    int64_t id;         /* checkpoint id, unique within the store */
    int64_t epoch;
    int64_t step;
    int64_t parent;     /* parent checkpoint id, 0 for the first */
    int64_t created_us; /* wall time, microseconds since the Unix epoch */
    uint64_t logical_bytes;
    uint64_t stored_bytes; /* bytes of new chunks this checkpoint wrote */
    int64_t ntensors;
} ckpt_checkpoint_info;

/* Creates a run. config_yaml (may be NULL for none) is parsed with strict
 * limits (see README) and stored verbatim; its scalars are flattened into
 * the params table. Errors: CKPT_EEXISTS, CKPT_EINVAL (bad name or config;
 * the message says where), CKPT_EREADONLY, CKPT_EIO, CKPT_EFULL, CKPT_EBUSY,
 * CKPT_ENOMEM. */
CKPT_API int ckpt_run_create(ckpt_store *s, const char *run, const char *config_yaml,
                             size_t config_len);
/* Same, reading the config from a file (at most 1 MiB). */
CKPT_API int ckpt_run_create_file(ckpt_store *s, const char *run, const char *config_path);

/* The run's YAML config, NUL-terminated; free with ckpt_free(). *out is NULL
 * (and CKPT_OK returned) if the run has none. Errors: CKPT_ENOTFOUND. */
CKPT_API int ckpt_run_config(ckpt_store *s, const char *run, char **out);

/* Parses a YAML config with the same strict checks as ckpt_run_create()
 * and calls fn once per flattened parameter, in document order: key is the
 * dotted path ("optimizer.lr"; sequence items of mappings get their index,
 * "layers.0.width"), value the scalar text (a sequence of scalars is one
 * parameter whose value is a flow list, "[1024, 1024]"), type one of
 * CKPT_PARAM_T_*. Strings are valid during the call only. fn may be NULL
 * (validation only); a non-zero return from fn stops and is returned.
 * Errors: CKPT_EINVAL (the message gives line and column), CKPT_ENOMEM. */
enum {
    CKPT_PARAM_T_STRING = 1,
    CKPT_PARAM_T_INT = 2,
    CKPT_PARAM_T_FLOAT = 3,
    CKPT_PARAM_T_BOOL = 4,
    CKPT_PARAM_T_NULL = 5,
    CKPT_PARAM_T_LIST = 6
};
typedef int (*ckpt_param_fn)(void *ctx, const char *key, const char *value, int type);
CKPT_API int ckpt_config_flatten(const char *yaml, size_t len, ckpt_param_fn fn, void *ctx);

/* The head checkpoint of a run: the one a resume continues from.
 * Errors: CKPT_ENOTFOUND (no such run), CKPT_ENOCHECKPOINT (none yet). */
CKPT_API int ckpt_head(ckpt_store *s, const char *run, ckpt_checkpoint_info *out);

/* For trainers: marks the run as running by this process (its status shows
 * "interrupted" if the process dies without ckpt_run_finish) and returns its
 * head in *out. Returns CKPT_ENOCHECKPOINT for a run without checkpoint (start
 * from scratch), CKPT_ENOTFOUND if the run does not exist. */
CKPT_API int ckpt_resume(ckpt_store *s, const char *run, ckpt_checkpoint_info *out);
/* Marks the run finished. Errors: CKPT_ENOTFOUND, write errors. */
CKPT_API int ckpt_run_finish(ckpt_store *s, const char *run);

/* Run status as shown by `ckpt runs`: "new", "running", "finished",
 * "interrupted" (its process died). Static string. Errors: CKPT_ENOTFOUND. */
CKPT_API int ckpt_run_status(ckpt_store *s, const char *run, const char **out);

/* Finds a checkpoint: epoch >= 0 gives the latest step of that epoch (on the
 * head's lineage if there is one there, else the newest); CKPT_HEAD gives the
 * head. Errors: CKPT_ENOTFOUND (run or epoch), CKPT_ENOCHECKPOINT. */
CKPT_API int ckpt_checkpoint_find(ckpt_store *s, const char *run, int64_t epoch,
                                  ckpt_checkpoint_info *out);

/* Moves the head of run back (or forward) to the checkpoint with this id.
 * Nothing is deleted: the checkpoints that are no longer on the head's
 * lineage show as an abandoned branch; metrics logged from now on go to a new
 * branch. Errors: CKPT_ENOTFOUND, CKPT_EINVAL (checkpoint of another run),
 * write errors. */
CKPT_API int ckpt_rollback(ckpt_store *s, const char *run, int64_t checkpoint_id);

/* Deletes a checkpoint that is not its run's head: its manifest goes, its
 * children take its parent as theirs, metrics stay. The bytes it alone
 * used are freed by ckpt_gc(). Errors: CKPT_ENOTFOUND, CKPT_EINVAL (the
 * head), write errors. */
CKPT_API int ckpt_checkpoint_delete(ckpt_store *s, int64_t checkpoint_id);

/* Removes chunks no checkpoint refers to, directly or as the base of a
 * delta that stays, and chunks left by saves that crashed. Fails with
 * CKPT_EBUSY (changing nothing) while any process saves or reads this
 * store. Freed space is reused by later saves. Errors: CKPT_EBUSY, write
 * errors. */
CKPT_API int ckpt_gc(ckpt_store *s, uint64_t *out_chunks, uint64_t *out_bytes);

/* Parses a checkpoint reference "RUN" or "RUN@EPOCH" into run (a buffer of
 * run_cap bytes) and *epoch (CKPT_HEAD for "RUN"). Errors: CKPT_EINVAL. */
CKPT_API int ckpt_ref_parse(const char *ref, char *run, size_t run_cap, int64_t *epoch);

/* ---------------------------------------------------------------- writer */

typedef struct ckpt_writer ckpt_writer;

/* Begins a checkpoint of run at (epoch, step). Nothing is visible until
 * ckpt_writer_commit() returns CKPT_OK. Errors: CKPT_ENOTFOUND (run),
 * CKPT_EINVAL (negative epoch/step), CKPT_EREADONLY, CKPT_ENOMEM. */
CKPT_API int ckpt_writer_begin(ckpt_writer **out, ckpt_store *s, const char *run,
                               int64_t epoch, int64_t step);

/* Adds one tensor. data (nbytes bytes, C order) is only read during the
 * call. nbytes must equal the product of shape times the dtype size; a
 * tensor of ndim 0 is a scalar. Names are unique within a checkpoint.
 * Errors: CKPT_EINVAL (name, kind, dtype, shape, size), CKPT_EEXISTS (name
 * repeated), CKPT_EIO, CKPT_EFULL, CKPT_EBUSY, CKPT_ENOMEM. After an error
 * the writer can only be aborted. */
CKPT_API int ckpt_writer_put(ckpt_writer *w, const char *name, int kind, int dtype, int ndim,
                             const int64_t *shape, const void *data, size_t nbytes);

/* Makes the checkpoint visible, atomically, and makes it the run's head.
 * Flushes buffered metrics. Frees w whatever the result. *out_id (may be
 * NULL) receives the new checkpoint id. Errors: CKPT_EIO, CKPT_EFULL,
 * CKPT_EBUSY, CKPT_ENOMEM, CKPT_EINVAL (an earlier put failed). */
CKPT_API int ckpt_writer_commit(ckpt_writer *w, int64_t *out_id);

/* Drops an uncommitted checkpoint and frees w. NULL is a no-op. */
CKPT_API void ckpt_writer_abort(ckpt_writer *w);

/* ---------------------------------------------------------------- reader */

typedef struct ckpt_reader ckpt_reader;

typedef struct ckpt_tensor_info {
    const char *name; /* borrowed, valid until ckpt_reader_close() */
    int kind;
    int dtype;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    uint64_t nbytes;
    uint8_t hash[CKPT_HASH_SIZE];
} ckpt_tensor_info;

/* Opens a checkpoint for reading: epoch as in ckpt_checkpoint_find(). The
 * manifest is read once; tensor bytes are read on demand, chunk by chunk.
 * Errors: CKPT_ENOTFOUND, CKPT_ENOCHECKPOINT, CKPT_ENOMEM, CKPT_EIO. */
CKPT_API int ckpt_reader_open(ckpt_reader **out, ckpt_store *s, const char *run, int64_t epoch);
CKPT_API int ckpt_reader_open_id(ckpt_reader **out, ckpt_store *s, int64_t checkpoint_id);

/* The checkpoint being read. Borrowed, valid until ckpt_reader_close(). */
CKPT_API const ckpt_checkpoint_info *ckpt_reader_checkpoint(const ckpt_reader *r);
CKPT_API const char *ckpt_reader_run(const ckpt_reader *r);

/* Number of tensors, and the i-th one (in the order they were put). */
CKPT_API size_t ckpt_reader_count(const ckpt_reader *r);
CKPT_API int ckpt_reader_tensor(const ckpt_reader *r, size_t i, ckpt_tensor_info *out);
/* Index of the tensor with this name. Errors: CKPT_ENOTFOUND. */
CKPT_API int ckpt_reader_find(const ckpt_reader *r, const char *name, size_t *out_index);

/* Reads len bytes of tensor i starting at byte offset into buf. Every chunk
 * touched is checked against its hash before any byte of it is copied out.
 * Errors: CKPT_ERANGE, CKPT_ECORRUPT (names run, epoch and tensor), CKPT_EIO,
 * CKPT_EBUSY, CKPT_ENOMEM. On error buf's content is unspecified. */
CKPT_API int ckpt_reader_read(ckpt_reader *r, size_t i, uint64_t offset, void *buf, size_t len);

/* NULL is a no-op. */
CKPT_API void ckpt_reader_close(ckpt_reader *r);

/* ---------------------------------------------------------------- metrics */

/* Buffers one metric value. Logging the same (run, name, step) again on the
 * same branch replaces the value. The buffer is written at every checkpoint
 * commit, at ckpt_metrics_flush(), at ckpt_close(), when it holds 8192 values,
 * and at the first log call after CKPT_PARAM_METRICS_FLUSH_MS.
 * Errors: CKPT_ENOTFOUND (run), CKPT_EINVAL (name, negative epoch/step),
 * and write errors from a flush (the values stay buffered). */
CKPT_API int ckpt_metric_log(ckpt_store *s, const char *run, const char *name, int64_t epoch,
                             int64_t step, double value);
/* Writes buffered metrics in one transaction. Write errors keep them buffered. */
CKPT_API int ckpt_metrics_flush(ckpt_store *s);

/* ---------------------------------------------------------------- verify */

/* Called once per problem found. run/tensor may be NULL for store-level
 * problems; strings are valid during the call only. */
typedef void (*ckpt_verify_fn)(void *ctx, const char *run, int64_t epoch, int64_t step,
                               const char *tensor, const char *problem);

/* Runs SQLite's integrity check on both files and checks every chunk of the
 * selected checkpoints against its hash (run NULL: every checkpoint; epoch
 * CKPT_HEAD with a run: that run's checkpoints, all of them). *out_damaged
 * (may be NULL) receives the number of problems. Returns CKPT_OK when
 * nothing is damaged, CKPT_ECORRUPT when something is, other codes when the
 * check itself could not run. */
CKPT_API int ckpt_verify(ckpt_store *s, const char *run, int64_t epoch, ckpt_verify_fn fn,
                         void *ctx, uint64_t *out_damaged);

/* Checks every chunk of one checkpoint (no SQLite integrity check): CKPT_OK,
 * or CKPT_ECORRUPT with each damaged tensor reported through fn. */
CKPT_API int ckpt_checkpoint_verify(ckpt_store *s, int64_t checkpoint_id, ckpt_verify_fn fn,
                                    void *ctx, uint64_t *out_damaged);

/* The newest checkpoint on the run's line (the head, then its ancestors)
 * whose data is intact: what to fall back to when the head is damaged.
 * Errors: CKPT_ENOTFOUND, CKPT_ENOCHECKPOINT (none intact, or none at all). */
CKPT_API int ckpt_last_intact(ckpt_store *s, const char *run, ckpt_checkpoint_info *out);

/* ---------------------------------------------------------------- safetensors */

/* Writes a checkpoint as a safetensors file with run, epoch, step and config
 * in __metadata__. Written to a temporary file, fsynced and renamed, so path
 * is either the old file or the complete new one. Errors: CKPT_ENOTFOUND,
 * CKPT_ECORRUPT, CKPT_EIO, CKPT_EFULL, CKPT_ENOMEM. */
CKPT_API int ckpt_export_safetensors(ckpt_store *s, const char *run, int64_t epoch,
                                     const char *path);

/* The same for the checkpoint with this id (ckpt_checkpoint_info.id): the
 * way to export exactly the head, or a checkpoint whose epoch another one
 * shares. Errors: as ckpt_export_safetensors. */
CKPT_API int ckpt_export_safetensors_id(ckpt_store *s, int64_t checkpoint_id, const char *path);

/* Validates a safetensors file completely, then stores it as a checkpoint of
 * run (created if missing) at (epoch, step), after the run's head. Tensor
 * kinds are "model" unless __metadata__ has "ckpt.kind.<name>", which must
 * name a tensor of the file and a kind. *out_id (may be NULL) receives the
 * new checkpoint's id. Errors: CKPT_EINVAL (the message says what is wrong
 * and where; nothing stored), CKPT_EEXISTS (the run's current line already
 * has a checkpoint at this epoch and step), CKPT_ENOTFOUND, write errors. */
CKPT_API int ckpt_import_safetensors(ckpt_store *s, const char *path, const char *run,
                                     int64_t epoch, int64_t step, int64_t *out_id);

#ifdef __cplusplus
}
#endif
#endif /* CKPT_H */
