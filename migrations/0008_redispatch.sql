-- A lost dispatch never hangs a run: executions re-sent when their dispatch
-- seems lost, and outbox rows no relay could decode, kept where
-- `weft audit` shows them.

-- When the redispatcher last wrote this execution's dispatch to the outbox
-- again (NULL: never); with `queued_at` and `due_at`, the instant from
-- which a queued execution counts as not yet taken.
ALTER TABLE executions ADD COLUMN redispatched_at timestamptz;
-- How many times its dispatch was re-sent (each with the same execution id
-- and attempt: the guards keep its outcome single).
ALTER TABLE executions ADD COLUMN redispatches integer NOT NULL DEFAULT 0
    CHECK (redispatches >= 0);

-- The redispatcher and the audit find queued executions by how long they
-- have waited, without scanning history: only queued rows are indexed.
CREATE INDEX executions_queued_since_idx
    ON executions ((GREATEST(queued_at, due_at, redispatched_at)))
    WHERE status = 'queued';

-- Outbox rows whose payload the relay could not decode (corrupt, or a
-- message format this build does not read). They are moved here in the
-- relay's transaction instead of being deleted, so nothing is lost
-- silently and the outbox itself keeps only publishable rows (its claim
-- stays fast). To send one again once a build that reads it runs:
--   INSERT INTO outbox (exchange, routing_key, payload)
--       SELECT exchange, routing_key, payload FROM outbox_parked WHERE id = …;
--   DELETE FROM outbox_parked WHERE id = …;
CREATE TABLE outbox_parked (
    -- The outbox row's id.
    id           bigint PRIMARY KEY,
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    -- The payload, exactly as it was written.
    payload      jsonb NOT NULL,
    -- When it was written to the outbox.
    created_at   timestamptz NOT NULL,
    -- Why the relay could not publish it.
    reason       text NOT NULL,
    parked_at    timestamptz NOT NULL DEFAULT now()
);
