-- Messages waiting to be published, and the workers seen on the bus.

-- Written in the same transaction as the state change that causes the
-- message; published by a relay with publisher confirms, then deleted.
-- Relays share rows with FOR UPDATE SKIP LOCKED. Rows are deleted, never
-- flagged, so the claim query stays fast.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    -- The serialized envelope.
    payload      jsonb NOT NULL,
    -- Not published before this instant (a retry's backoff).
    not_before   timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_due_idx ON outbox (not_before, id);

-- Workers, as last seen through their heartbeats.
CREATE TABLE workers (
    id              text PRIMARY KEY,
    hostname        text NOT NULL,
    queues          text[] NOT NULL,
    -- How many executions it reported running.
    running         integer NOT NULL,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz NOT NULL
);
