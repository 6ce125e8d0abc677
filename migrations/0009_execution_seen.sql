-- When a running execution was last vouched for by its worker: its start
-- report's arrival, then every heartbeat that lists it among the worker's
-- running executions (the database's clock, as they arrive). A worker that
-- keeps sending heartbeats without listing it no longer runs it — its
-- completion was lost on the way (a purged queue, a dead-lettered
-- message) — and the reaper ends it after the heartbeat grace, as it does
-- an execution whose worker went silent.
ALTER TABLE executions ADD COLUMN seen_at timestamptz;
