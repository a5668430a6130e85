-- Migration 2: a per-run summary view for the sqlite3 shell.
CREATE VIEW v_runs AS
SELECT r.name AS run, r.status,
       strftime('%Y-%m-%d %H:%M:%S', r.created_at / 1000000.0, 'unixepoch') AS created_at,
       (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.id) AS checkpoints,
       (SELECT max(epoch) FROM checkpoints c WHERE c.run_id = r.id) AS last_epoch,
       h.epoch AS head_epoch, h.step AS head_step,
       (SELECT coalesce(sum(stored_bytes), 0) FROM checkpoints c WHERE c.run_id = r.id) AS stored_bytes,
       r.config
FROM runs r LEFT JOIN checkpoints h ON h.id = r.head_id;
