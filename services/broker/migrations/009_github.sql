-- A task's own credentials (Task.credentials), sealed under the broker's
-- key and bound to the task (base64 of the sealed bytes); never in `spec`.
ALTER TABLE tasks ADD COLUMN credentials text;

-- They serve the task's attempts only: gone once the task has ended, however
-- it ended.
CREATE FUNCTION tasks_forget_credentials() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.credentials := NULL;
  RETURN NEW;
END;
$$;
CREATE TRIGGER tasks_forget_credentials BEFORE UPDATE OF state ON tasks
  FOR EACH ROW WHEN (NEW.state IN ('completed', 'failed', 'canceled') AND NEW.credentials IS NOT NULL)
  EXECUTE FUNCTION tasks_forget_credentials();

-- GitHub's webhook deliveries taken (X-GitHub-Delivery), so that a
-- redelivery, to any replica, makes no second task.
CREATE TABLE github_deliveries (
  id text PRIMARY KEY,
  received_at timestamptz NOT NULL DEFAULT now()
);
