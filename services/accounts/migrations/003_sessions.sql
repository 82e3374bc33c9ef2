-- Dashboard sessions: a random token stands for the key it was made with,
-- so a browser never holds the key. Ended by revocation, by expiry and by
-- the revocation of that key.
CREATE TABLE sessions (
  id uuid PRIMARY KEY,
  key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
  -- HMAC-SHA256(pepper, token) in hex; the token itself is never stored.
  token_hash text NOT NULL UNIQUE,
  user_agent text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX sessions_key ON sessions (key_id);
