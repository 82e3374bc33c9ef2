-- Session transcripts are sealed (SecretBox under the broker's session key,
-- bound to the task id) from now on; rows stored before stay readable.
ALTER TABLE session_snapshots ADD COLUMN sealed boolean NOT NULL DEFAULT false;
