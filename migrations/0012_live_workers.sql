-- Live workers and unknown actions: what workers advertise in their
-- heartbeats (so `weft workers`, `weft explain`, `validate` and the
-- executor know who can run what), and which workers declined an
-- execution because they do not know its action.

-- The worker's process id (0: a worker older than the advertisement).
ALTER TABLE workers ADD COLUMN pid integer NOT NULL DEFAULT 0;
-- The actions it can run, sorted (empty: not advertised).
ALTER TABLE workers ADD COLUMN actions text[] NOT NULL DEFAULT '{}';
-- Actions it runs at once at most (0: not advertised).
ALTER TABLE workers ADD COLUMN concurrency integer NOT NULL DEFAULT 0;
-- Its build's version ('': not advertised).
ALTER TABLE workers ADD COLUMN version text NOT NULL DEFAULT '';

-- The workers that received this execution's dispatch and declined it
-- because they do not know its action (the attempt stays `queued`; the
-- executor hands the dispatch to a live worker of the pool that knows
-- the action and is not listed here). NULL until one declines: the hot
-- path writes nothing here.
ALTER TABLE executions ADD COLUMN declined_by text[];
