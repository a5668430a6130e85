-- ckpt chunk database, migration 1: content-addressed tensor bytes.
-- Rollback-journal mode with large pages: appended pages are written once,
-- not twice as WAL would. Chunks are immutable once committed.

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE chunks (
  id      INTEGER PRIMARY KEY,
  hash    BLOB NOT NULL UNIQUE,  -- XXH3-128 of the decoded bytes
  codec   INTEGER NOT NULL,      -- 1 raw, 2 byte planes + zstd, 3 XOR delta + planes
  base_id INTEGER,               -- for deltas: the full chunk it is relative to
  raw_len INTEGER NOT NULL,      -- decoded length
  data    BLOB NOT NULL          -- encoded bytes; kept last so scans skip it
);
