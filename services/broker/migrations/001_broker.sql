CREATE TABLE workspaces (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  repo_url text NOT NULL DEFAULT '',
  default_branch text NOT NULL DEFAULT 'main',
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasks (
  id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL REFERENCES workspaces (id),
  runner_preference text NOT NULL DEFAULT 'any'
    CHECK (runner_preference IN ('any', 'user', 'service', 'action')),
  required_labels jsonb NOT NULL DEFAULT '[]',
  provider text NOT NULL,
  priority int NOT NULL DEFAULT 0,
  state text NOT NULL DEFAULT 'pending',
  attempts int NOT NULL DEFAULT 0,
  max_attempts int NOT NULL DEFAULT 3,
  epoch bigint NOT NULL DEFAULT 0,
  worker_id uuid,
  exit_code int NOT NULL DEFAULT 0,
  error text NOT NULL DEFAULT '',
  -- The task as the client described it (Task in the protobuf JSON mapping).
  spec jsonb NOT NULL,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_pending ON tasks (priority DESC, created_at) WHERE state = 'pending';
CREATE INDEX tasks_workspace ON tasks (workspace_id, created_at);

CREATE TABLE workers (
  id uuid PRIMARY KEY,
  task_id uuid NOT NULL REFERENCES tasks (id),
  workspace_id uuid NOT NULL,
  account_id uuid,
  runner_id text NOT NULL,
  runner_name text NOT NULL DEFAULT '',
  state text NOT NULL DEFAULT 'idle',
  epoch bigint NOT NULL,
  last_seq bigint NOT NULL DEFAULT 0,
  exit_code int NOT NULL DEFAULT 0,
  error text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_task ON workers (task_id);

-- Event ids come from this one row, taken by the writer of each batch inside
-- its transaction: ids are gap-free and increase in commit order (a sequence
-- would leave gaps on rollback and let a late commit slip under a reader's
-- "id > last").
CREATE TABLE event_counter (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_id bigint NOT NULL
);
INSERT INTO event_counter VALUES (true, 0);

CREATE TABLE events (
  id bigint PRIMARY KEY,
  task_id uuid,
  worker_id uuid,
  workspace_id uuid,
  type text NOT NULL,
  -- The event in the protobuf JSON mapping.
  body jsonb NOT NULL
);
CREATE INDEX events_task ON events (task_id, id);
CREATE INDEX events_worker ON events (worker_id, id);
CREATE INDEX events_workspace ON events (workspace_id, id);
