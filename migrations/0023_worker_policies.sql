-- Worker policies: the actions a worker has but refuses to run
-- (`weft worker --actions`; `shell` unless listed), from its heartbeats,
-- so that an attempt no worker of its pool will run fails saying the
-- action is refused by policy, and `validate` warns the same way.
ALTER TABLE workers ADD COLUMN refused text[] NOT NULL DEFAULT '{}';
