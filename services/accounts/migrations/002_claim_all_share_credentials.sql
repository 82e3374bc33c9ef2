-- A runner account that may claim from every workspace without being admin.
ALTER TABLE accounts ADD COLUMN claim_all boolean NOT NULL DEFAULT false;
-- Whether the account's provider credentials reach the agent tasks of the
-- workspace that other accounts created.
ALTER TABLE account_workspaces ADD COLUMN share_credentials boolean NOT NULL DEFAULT false;
