CREATE TABLE accounts (
  id uuid PRIMARY KEY,
  type text NOT NULL CHECK (type IN ('user', 'service', 'action')),
  name text NOT NULL,
  auth_type text NOT NULL CHECK (auth_type IN ('oauth', 'api')),
  max_concurrent_workers int NOT NULL DEFAULT 3,
  max_concurrent_sessions int NOT NULL DEFAULT 1,
  max_cost_per_day double precision NOT NULL DEFAULT 0,
  github_id text NOT NULL DEFAULT '',
  is_admin boolean NOT NULL DEFAULT false,
  -- Provider credentials sealed with the master key (nonce || ciphertext).
  credentials bytea,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id uuid PRIMARY KEY,
  account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  -- HMAC-SHA256(pepper, key) in hex; the key itself is never stored.
  key_hash text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE account_workspaces (
  account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  workspace_id uuid NOT NULL,
  can_claim boolean NOT NULL DEFAULT false,
  can_create boolean NOT NULL DEFAULT false,
  PRIMARY KEY (account_id, workspace_id)
);
