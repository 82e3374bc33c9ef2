-- What a task's last attempt left behind (Artifacts in the protobuf JSON
-- mapping), and the provider session it ended with, so that a later task
-- with resume_from can continue the conversation on any runner.
ALTER TABLE tasks ADD COLUMN artifacts jsonb;

CREATE TABLE session_snapshots (
  task_id uuid PRIMARY KEY REFERENCES tasks (id),
  provider text NOT NULL,
  session_id text NOT NULL,
  data bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
