-- One unfinished task at a time per concurrency key and workspace: the
-- task's concurrencyKey, else its work branch (TaskRecord::concurrency_key
-- is the same rule).
ALTER TABLE tasks ADD COLUMN concurrency_key text
  GENERATED ALWAYS AS (COALESCE(NULLIF(spec->>'concurrencyKey', ''), spec->>'workBranch', '')) STORED;
CREATE INDEX tasks_unfinished_key ON tasks (workspace_id, concurrency_key)
  WHERE state IN ('pending', 'assigned', 'running', 'waiting_input');
