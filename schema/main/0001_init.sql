-- ckpt main database, migration 1: runs, params, checkpoints, tensors,
-- metrics and the public views. WAL mode: readers never block the writer.
-- Chunk bytes live in the "-chunks" database beside this file; chunk ids
-- here refer to rows there.

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE runs (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  status      TEXT NOT NULL DEFAULT 'new'
              CHECK (status IN ('new', 'running', 'finished')),
  created_at  INTEGER NOT NULL,            -- microseconds since the Unix epoch
  config      TEXT,                        -- the YAML config, verbatim
  head_id     INTEGER REFERENCES checkpoints(id),
  branch_id   INTEGER,                     -- current branch (see branches)
  branched_from INTEGER REFERENCES checkpoints(id), -- last rollback target
  owner_pid   INTEGER,                     -- process that marked it running
  owner_host  TEXT,
  owner_start INTEGER                      -- that process's start time (clock ticks)
);

-- A branch is a line of history. Every rollback starts a new branch whose
-- parent is the branch of the checkpoint rolled back to, forked at its step:
-- metrics of the parent branch up to fork_step belong to the new line too.
CREATE TABLE branches (
  id         INTEGER PRIMARY KEY,
  run_id     INTEGER NOT NULL REFERENCES runs(id),
  parent_id  INTEGER REFERENCES branches(id),
  fork_step  INTEGER,
  fork_checkpoint INTEGER REFERENCES checkpoints(id),
  created_at INTEGER NOT NULL
);
CREATE INDEX branches_run ON branches(run_id);

CREATE TABLE params (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  key    TEXT NOT NULL,
  value  TEXT,
  type   TEXT NOT NULL,                    -- string, int, float, bool, null, list
  PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
  id            INTEGER PRIMARY KEY,
  run_id        INTEGER NOT NULL REFERENCES runs(id),
  branch_id     INTEGER NOT NULL REFERENCES branches(id),
  epoch         INTEGER NOT NULL CHECK (epoch >= 0),
  step          INTEGER NOT NULL CHECK (step >= 0),
  created_at    INTEGER NOT NULL,
  parent_id     INTEGER REFERENCES checkpoints(id),
  ntensors      INTEGER NOT NULL,
  logical_bytes INTEGER NOT NULL,
  stored_bytes  INTEGER NOT NULL
);
CREATE INDEX checkpoints_run ON checkpoints(run_id, epoch, step);

CREATE TABLE tensors (
  id            INTEGER PRIMARY KEY,
  checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id),
  idx           INTEGER NOT NULL,          -- order of ckpt_writer_put
  name          TEXT NOT NULL,
  kind          TEXT NOT NULL CHECK (kind IN ('model', 'optimizer', 'rng', 'state', 'extra')),
  dtype         TEXT NOT NULL,
  shape         TEXT NOT NULL,             -- JSON list, e.g. [784, 32]
  nbytes        INTEGER NOT NULL,
  hash          BLOB NOT NULL,             -- XXH3-128 over the chunk hashes
  chunk_size    INTEGER NOT NULL,          -- bytes per chunk (the last may be shorter)
  chunks        BLOB NOT NULL,             -- chunk ids, 8-byte little-endian each
  UNIQUE (checkpoint_id, name),
  UNIQUE (checkpoint_id, idx)
);

-- A series is one metric of one run on one branch. A value's key packs
-- its series and its step (series_id * 2^40 + step; steps below 2^40), so
-- values live in a plain rowid table: logging is an integer-keyed insert,
-- several times faster than a composite key, and one series is one key
-- range. The view `metrics` below gives readable rows.
CREATE TABLE metric_series (
  id        INTEGER PRIMARY KEY,
  run_id    INTEGER NOT NULL REFERENCES runs(id),
  branch_id INTEGER NOT NULL REFERENCES branches(id),
  name      TEXT NOT NULL,
  UNIQUE (run_id, branch_id, name)
);

CREATE TABLE metric_values (
  key   INTEGER PRIMARY KEY,             -- series_id * 1099511627776 + step
  epoch INTEGER NOT NULL,
  value REAL,                            -- NULL for NaN
  time  REAL NOT NULL                    -- seconds since the Unix epoch
);

CREATE VIEW metrics AS
SELECT s.run_id, s.branch_id, s.name, v.key - s.id * 1099511627776 AS step, v.epoch, v.value,
       v.time
FROM metric_series s
JOIN metric_values v ON v.key BETWEEN s.id * 1099511627776 AND s.id * 1099511627776 + 1099511627775;

-- ---------------------------------------------------------------- views

-- The branches on the current line of each run, with the highest step of
-- each that belongs to it.
CREATE VIEW v_lineage AS
WITH RECURSIVE line(run_id, branch_id, max_step) AS (
  SELECT id, branch_id, 9223372036854775807 FROM runs WHERE branch_id IS NOT NULL
  UNION ALL
  SELECT line.run_id, b.parent_id, MIN(line.max_step, b.fork_step)
  FROM line JOIN branches b ON b.id = line.branch_id
  WHERE b.parent_id IS NOT NULL
)
SELECT run_id, branch_id, max_step FROM line;

-- Every checkpoint on the head's ancestry ("current"); the rest are on
-- abandoned branches.
CREATE VIEW v_head_ancestry AS
WITH RECURSIVE anc(id) AS (
  SELECT head_id FROM runs WHERE head_id IS NOT NULL
  UNION ALL
  SELECT c.parent_id FROM anc JOIN checkpoints c ON c.id = anc.id WHERE c.parent_id IS NOT NULL
)
SELECT id FROM anc;

CREATE VIEW v_checkpoints AS
SELECT r.name AS run, c.epoch, c.step,
       strftime('%Y-%m-%d %H:%M:%S', c.created_at / 1000000.0, 'unixepoch') AS created_at,
       c.ntensors AS tensors, c.logical_bytes, c.stored_bytes,
       coalesce(r.head_id = c.id, 0) AS is_head,
       (c.id NOT IN (SELECT id FROM v_head_ancestry)) AS abandoned,
       c.id AS checkpoint_id, c.parent_id
FROM checkpoints c JOIN runs r ON r.id = c.run_id;

-- Metrics of each run's current line (values replaced by a rollback are
-- in v_metrics_all, marked abandoned).
CREATE VIEW v_metrics AS
SELECT r.name AS run, m.name, m.epoch, m.step, m.value, m.time
FROM metrics m
JOIN runs r ON r.id = m.run_id
JOIN v_lineage l ON l.run_id = m.run_id AND l.branch_id = m.branch_id AND m.step <= l.max_step;

CREATE VIEW v_metrics_all AS
SELECT r.name AS run, m.name, m.epoch, m.step, m.value, m.time, m.branch_id AS branch,
       NOT EXISTS (SELECT 1 FROM v_lineage l WHERE l.run_id = m.run_id
                   AND l.branch_id = m.branch_id AND m.step <= l.max_step) AS abandoned
FROM metrics m JOIN runs r ON r.id = m.run_id;

CREATE VIEW v_params AS
SELECT r.name AS run, p.key, p.value, p.type FROM params p JOIN runs r ON r.id = p.run_id;

CREATE VIEW v_tensors AS
SELECT r.name AS run, c.epoch, c.step, t.name, t.kind, t.dtype, t.shape, t.nbytes,
       lower(hex(t.hash)) AS hash
FROM tensors t JOIN checkpoints c ON c.id = t.checkpoint_id JOIN runs r ON r.id = c.run_id;
