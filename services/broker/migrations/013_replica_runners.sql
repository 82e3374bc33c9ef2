-- Each replica's connected runners as it last told (on its heartbeat, and
-- whenever a runner comes, goes or drains): a ListRunnersResponse as JSON,
-- so that every replica lists them all. What they hold is read from
-- workers when asked.
ALTER TABLE brokers ADD COLUMN runners jsonb NOT NULL DEFAULT '{}'::jsonb;
