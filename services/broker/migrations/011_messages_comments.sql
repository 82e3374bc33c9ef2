-- What people send to a worker (the agent's side is its assistant_message
-- events), with attachments, and comments on what a task left.
CREATE TABLE worker_messages (
  id uuid PRIMARY KEY,
  worker_id uuid NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
  account_id uuid,
  body text NOT NULL,
  delivered boolean NOT NULL DEFAULT false,
  created_at text NOT NULL
);
CREATE INDEX worker_messages_by_worker ON worker_messages (worker_id, created_at);

CREATE TABLE message_attachments (
  message_id uuid NOT NULL REFERENCES worker_messages (id) ON DELETE CASCADE,
  n int NOT NULL,
  name text NOT NULL,
  content_type text NOT NULL,
  data bytea NOT NULL,
  PRIMARY KEY (message_id, n)
);

CREATE TABLE artifact_comments (
  id uuid PRIMARY KEY,
  task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  account_id uuid,
  artifact text NOT NULL
    CHECK (artifact IN ('patch', 'commit', 'branch', 'diffStat', 'prUrl', 'plan')),
  path text NOT NULL DEFAULT '',
  line int NOT NULL DEFAULT 0,
  body text NOT NULL,
  created_at text NOT NULL
);
CREATE INDEX artifact_comments_by_task ON artifact_comments (task_id, created_at);
