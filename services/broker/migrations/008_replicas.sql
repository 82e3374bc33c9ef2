-- Broker replicas on one database. Each registers itself and refreshes
-- seen_at while it runs; a worker names the replica that holds its runner's
-- stream, and only that replica lets its lease expire. A replica whose
-- seen_at is old is gone: another one adopts its workers.
CREATE TABLE brokers (
  id uuid PRIMARY KEY,
  started_at timestamptz NOT NULL DEFAULT now(),
  seen_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE workers ADD COLUMN broker_id uuid;
CREATE INDEX workers_live_by_broker ON workers (broker_id)
  WHERE state IN ('idle', 'starting', 'running', 'waiting_input', 'paused');
