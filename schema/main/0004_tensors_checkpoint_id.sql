-- Migration 4: v_tensors names the checkpoint a tensor belongs to. After a
-- rollback and resume, two checkpoints of a run (one abandoned) can share
-- an epoch and step, so a join on those alone matched both (found by a
-- walkthrough of the README's queries). Join on checkpoint_id instead, e.g.
-- with v_checkpoints WHERE is_head.
DROP VIEW v_tensors;
CREATE VIEW v_tensors AS
SELECT r.name AS run, c.epoch, c.step, t.name, t.kind, t.dtype, t.shape, t.nbytes,
       lower(hex(t.hash)) AS hash, c.id AS checkpoint_id
FROM tensors t JOIN checkpoints c ON c.id = t.checkpoint_id JOIN runs r ON r.id = c.run_id;
