-- Migration 3: the lineage views end on any store. With UNION ALL their
-- recursion never ended on a store whose branches or checkpoints form a
-- parent cycle (impossible for ckpt to write, easy to edit in; found by
-- tests/fuzz): every query on v_metrics, v_metrics_all and v_checkpoints,
-- and so `ckpt runs`, `list` and `metrics`, hung. UNION drops rows already
-- produced, so the recursion stops once a cycle repeats. Views are bound by
-- name when queried: the views built on these need no change.
DROP VIEW v_lineage;
CREATE VIEW v_lineage AS
WITH RECURSIVE line(run_id, branch_id, max_step) AS (
  SELECT id, branch_id, 9223372036854775807 FROM runs WHERE branch_id IS NOT NULL
  UNION
  SELECT line.run_id, b.parent_id, MIN(line.max_step, b.fork_step)
  FROM line JOIN branches b ON b.id = line.branch_id
  WHERE b.parent_id IS NOT NULL
)
SELECT run_id, branch_id, max(max_step) AS max_step FROM line GROUP BY run_id, branch_id;

DROP VIEW v_head_ancestry;
CREATE VIEW v_head_ancestry AS
WITH RECURSIVE anc(id) AS (
  SELECT head_id FROM runs WHERE head_id IS NOT NULL
  UNION
  SELECT c.parent_id FROM anc JOIN checkpoints c ON c.id = anc.id WHERE c.parent_id IS NOT NULL
)
SELECT id FROM anc;
