-- A plan-first task's checkpoint: its session as the plan was approved, with
-- the prompt its coding continues with and the plan, so that a later
-- attempt codes on instead of planning again. The session a task ends with
-- replaces it (both columns empty).
ALTER TABLE session_snapshots
  ADD COLUMN continue_prompt text NOT NULL DEFAULT '',
  ADD COLUMN plan text NOT NULL DEFAULT '';
