-- "none": the workspace's tasks run in a sandbox without network.
ALTER TABLE workspaces ADD COLUMN network text NOT NULL DEFAULT '';
