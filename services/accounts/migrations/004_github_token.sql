-- Action accounts: a GitHub token for the repository their githubId names
-- (repository_dispatch, pull requests), sealed with the master key and
-- bound to the account like its provider credentials.
ALTER TABLE accounts ADD COLUMN github_token bytea;
