-- From here on a body does not repeat its event's id: the id column is the
-- event's id (bodies written earlier still hold it, as the same value).
COMMENT ON COLUMN events.body IS 'The event in the protobuf JSON mapping; its id is the id column';
