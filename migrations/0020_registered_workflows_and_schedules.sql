-- Registered workflows and cron schedules (issue 16, items 1 and 2).

-- A workflow stored under its name (`weft workflow apply`), one row per
-- version. The text lives in `workflow_definitions` (content-addressed, as
-- for any run); a version names it, with the sub-workflows it starts.
CREATE TABLE registered_workflows (
    name           text NOT NULL CHECK (name ~ '^[a-z0-9_.-]+$'),
    -- 1, 2, 3 … per name, never reused (not even after `weft workflow rm`).
    -- Two concurrent applies of one name both compute the next number; the
    -- primary key lets one insert it, the other sees it taken and retries.
    version        integer NOT NULL CHECK (version >= 1),
    -- The root workflow's text.
    definition_id  uuid NOT NULL REFERENCES workflow_definitions (id),
    -- SHA-256 (hex) of the root's text and of each sub-workflow's, with
    -- which task starts which: applying content equal to the newest
    -- version's is a no-op.
    digest         text NOT NULL CHECK (length(digest) = 64),
    -- Which definition each `workflow:` task starts, as a run's `links`
    -- (migration 0015); NULL when it starts none. A run of this version
    -- copies them.
    links          jsonb,
    -- The file it was applied from.
    origin         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Set on every version by `weft workflow rm`: no longer listed or
    -- submittable; kept so `name@version` keeps naming one text forever.
    removed_at     timestamptz,
    PRIMARY KEY (name, version)
);

-- A cron schedule (`weft schedule create`).
CREATE TABLE schedules (
    id                uuid PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9_.-]+$'),
    -- The registered workflow each tick runs; at `workflow_version`, or
    -- (NULL) its newest version at the tick.
    workflow_name     text NOT NULL,
    workflow_version  integer CHECK (workflow_version >= 1),
    -- As given: 5 fields, 6 with seconds, `@hourly`…, `@every 10s`.
    cron              text NOT NULL,
    -- IANA name the cron expression is read in.
    timezone          text NOT NULL,
    -- The inputs given at create (typed by the workflow's declarations);
    -- defaults are applied at each tick, from the version it runs.
    input             jsonb NOT NULL,
    overlap           text NOT NULL CHECK (overlap IN ('allow', 'skip', 'cancel_previous')),
    catch_up          text NOT NULL CHECK (catch_up IN ('none', 'latest', 'all')),
    jitter_ms         bigint NOT NULL DEFAULT 0 CHECK (jitter_ms >= 0),
    -- Set while paused: no tick fires, and none is owed on resume.
    paused_at         timestamptz,
    -- The cursor: the next tick (nominal time), and when it starts
    -- (`next_tick` + its jitter). A claim locks the row (`FOR UPDATE SKIP
    -- LOCKED`), starts the due ticks' runs and moves the cursor past the
    -- database's `now()` in one transaction.
    next_tick         timestamptz NOT NULL,
    next_fire_at      timestamptz NOT NULL CHECK (next_fire_at >= next_tick),
    -- The newest tick that started a run, and that run.
    last_tick         timestamptz,
    last_run_id       uuid,
    -- Counters shown by `weft schedule show`.
    runs_started      bigint NOT NULL DEFAULT 0,
    ticks_skipped     bigint NOT NULL DEFAULT 0,
    ticks_missed      bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The executors' claim: due, unpaused schedules, earliest first.
CREATE INDEX schedules_due_idx ON schedules (next_fire_at) WHERE paused_at IS NULL;

-- Ticks that started no run: skipped (`--overlap skip`), missed (after an
-- outage, per `--catch-up`: one row per claim, at the newest missed tick),
-- or failed (the workflow was removed, its inputs no longer resolve). The
-- newest 100 per schedule are kept.
CREATE TABLE schedule_skips (
    schedule_id  uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    tick         timestamptz NOT NULL,
    reason       text NOT NULL CHECK (reason IN ('overlap', 'missed', 'failed')),
    detail       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, tick)
);

ALTER TABLE workflow_executions
    -- The registered version it runs (`weft submit NAME[@VERSION]`, a
    -- schedule's tick); NULL for a run submitted from a file.
    ADD COLUMN workflow_version integer CHECK (workflow_version >= 1),
    -- The schedule that started it (kept after the schedule is deleted:
    -- no foreign key), its name then, and the tick it is for.
    ADD COLUMN schedule_id uuid,
    ADD COLUMN schedule_name text,
    ADD COLUMN scheduled_at timestamptz,
    ADD CONSTRAINT workflow_executions_schedule_check CHECK (
        (schedule_id IS NULL) = (scheduled_at IS NULL)
        AND (schedule_id IS NULL) = (schedule_name IS NULL)
    );

-- One run per (schedule, tick), whatever the number of executors.
CREATE UNIQUE INDEX workflow_executions_schedule_tick_idx
    ON workflow_executions (schedule_id, scheduled_at) WHERE schedule_id IS NOT NULL;
-- `--overlap skip|cancel_previous`: a schedule's runs still going.
CREATE INDEX workflow_executions_schedule_live_idx
    ON workflow_executions (schedule_id)
    WHERE schedule_id IS NOT NULL AND status IN ('pending', 'running', 'canceling');
