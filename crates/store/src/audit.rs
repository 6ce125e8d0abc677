//! `weft audit`: the exactly-once invariants, checked on a live database.
//!
//! Each check is one query returning the rows that violate it; a clean
//! database returns none. The checks hold at any instant, also while runs
//! are in flight, because every one of them compares rows that the same
//! transaction wrote together, or timestamps taken in commit order
//! (`clock_timestamp()` after the row lock that orders them).

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::WorkflowExecutionId;

use crate::error::{Context, StoreError};

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Violation {
    /// Which check found it.
    pub check: String,
    /// The run it concerns.
    pub workflow_execution_id: Uuid,
    /// What is wrong, naming tasks and counts.
    pub detail: String,
}

/// A named check and its query. `$1` is the run to audit, or NULL for all;
/// `$2` the outbox age threshold in seconds; `$3` how long in seconds a
/// queued execution may wait to be taken (see [`Thresholds`]).
///
/// A canceled task's counters stop when its run is canceled (from
/// `canceling` on), while its running actions may still finish (and be
/// recorded with their own status): its counters are not compared with
/// its executions.
const CHECKS: &[(&str, &str)] = &[
    (
        "one_task_execution_per_task",
        "SELECT t.workflow_execution_id, format('task `%s` has %s task executions', t.task_name, count(*)) AS detail \
         FROM task_executions t WHERE ($1::uuid IS NULL OR t.workflow_execution_id = $1) \
         GROUP BY t.workflow_execution_id, t.task_name HAVING count(*) > 1 \
         UNION ALL \
         SELECT r.id, format('run has %s task executions for %s tasks', count(t.id), r.tasks_total) \
         FROM workflow_executions r JOIN task_executions t ON t.workflow_execution_id = r.id \
         WHERE ($1::uuid IS NULL OR r.id = $1) GROUP BY r.id HAVING count(t.id) <> r.tasks_total",
    ),
    (
        "one_execution_per_unit",
        "SELECT e.workflow_execution_id, \
                format('item %s attempt %s of a task has %s executions', e.item_index, e.attempt, count(*)) \
         FROM executions e WHERE ($1::uuid IS NULL OR e.workflow_execution_id = $1) \
         GROUP BY e.workflow_execution_id, e.task_execution_id, e.item_index, e.attempt HAVING count(*) > 1 \
         UNION ALL \
         SELECT e.workflow_execution_id, \
                format('item %s of task `%s` succeeded %s times in round %s', \
                       e.item_index, t.task_name, count(*), e.round) \
         FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE e.status = 'succeeded' AND ($1::uuid IS NULL OR e.workflow_execution_id = $1) \
         GROUP BY e.workflow_execution_id, t.task_name, e.task_execution_id, e.item_index, e.round \
         HAVING count(*) > 1",
    ),
    (
        "item_counters_match_executions",
        "SELECT t.workflow_execution_id, \
                format('task `%s`: counters say %s dispatched / %s succeeded, executions say %s / %s', \
                       t.task_name, t.items_dispatched, t.items_succeeded, coalesce(e.dispatched, 0), coalesce(e.succeeded, 0)) \
         FROM task_executions t \
         LEFT JOIN LATERAL ( \
             SELECT count(DISTINCT coalesce(item_index, 0)) \
                        FILTER (WHERE queued_at IS NOT NULL OR kept_from IS NOT NULL) AS dispatched, \
                    count(*) FILTER (WHERE status = 'succeeded') AS succeeded \
             FROM executions WHERE task_execution_id = t.id AND attempt > t.attempt_base \
         ) e ON true \
         JOIN workflow_executions r ON r.id = t.workflow_execution_id \
         WHERE t.status NOT IN ('waiting', 'canceled') AND r.status <> 'canceling' \
           AND ($1::uuid IS NULL OR t.workflow_execution_id = $1) \
           AND (t.items_dispatched <> coalesce(e.dispatched, 0) OR t.items_succeeded <> coalesce(e.succeeded, 0))",
    ),
    (
        "dispatched_after_needs_terminal",
        "SELECT t.workflow_execution_id, \
                format('task `%s` was dispatched at %s but its need `%s` was %s then', \
                       t.task_name, e.queued_at, n.task_name, \
                       CASE WHEN n.finished_at IS NULL THEN 'unfinished' ELSE 'finished only at ' || n.finished_at::text END) \
         FROM task_executions t \
         JOIN executions e ON e.task_execution_id = t.id AND e.queued_at IS NOT NULL \
         JOIN task_executions n ON n.workflow_execution_id = t.workflow_execution_id AND n.task_name = ANY(t.needs) \
         WHERE ($1::uuid IS NULL OR t.workflow_execution_id = $1) \
           AND e.attempt = t.attempt_base + 1 \
           AND (n.finished_at IS NULL OR n.finished_at > e.queued_at)",
    ),
    (
        "skipped_tasks_never_dispatched",
        "SELECT t.workflow_execution_id, format('task `%s` is skipped but has %s executions this round', t.task_name, count(e.id)) \
         FROM task_executions t JOIN executions e ON e.task_execution_id = t.id AND e.attempt > t.attempt_base \
         WHERE t.status = 'skipped' AND ($1::uuid IS NULL OR t.workflow_execution_id = $1) \
         GROUP BY t.workflow_execution_id, t.task_name",
    ),
    (
        "terminal_runs_have_terminal_children",
        "SELECT r.id, format('run is %s but task `%s` is %s', r.status, t.task_name, t.status) \
         FROM workflow_executions r JOIN task_executions t ON t.workflow_execution_id = r.id \
         WHERE r.status IN ('succeeded', 'failed', 'canceled') AND t.status IN ('waiting', 'running') \
           AND ($1::uuid IS NULL OR r.id = $1) \
         UNION ALL \
         SELECT r.id, format('run is %s but an execution of item %s is %s', r.status, e.item_index, e.status) \
         FROM workflow_executions r JOIN executions e ON e.workflow_execution_id = r.id \
         WHERE r.status IN ('succeeded', 'failed', 'canceled') AND e.status IN ('pending', 'queued', 'running') \
           AND ($1::uuid IS NULL OR r.id = $1)",
    ),
    (
        "tasks_remaining_counter",
        "SELECT r.id, format('run counts %s tasks remaining but %s are unfinished', r.tasks_remaining, count(t.id)) \
         FROM workflow_executions r LEFT JOIN task_executions t \
              ON t.workflow_execution_id = r.id AND t.status IN ('waiting', 'running') \
         WHERE r.status = 'running' AND ($1::uuid IS NULL OR r.id = $1) \
         GROUP BY r.id HAVING r.tasks_remaining <> count(t.id)",
    ),
    (
        "outbox_drained",
        "SELECT coalesce((payload->>'workflow_execution_id')::uuid, '00000000-0000-0000-0000-000000000000'::uuid), \
                format('outbox message %s (%s to %s/%s) due since %s is unpublished', \
                       id, payload->>'type', exchange, routing_key, not_before) \
         FROM outbox WHERE not_before < now() - make_interval(secs => $2) \
           AND ($1::uuid IS NULL OR (payload->>'workflow_execution_id')::uuid = $1)",
    ),
    (
        // A dispatch lost on the way (a purged queue, a broker node lost
        // without replicated queues, a dead-lettered message) leaves its
        // execution queued: the executors send it again after
        // `--redispatch-after`, so one waiting longer than that (counted
        // from its last dispatch) is a run that hangs.
        "queued_executions_taken",
        "SELECT e.workflow_execution_id, \
                format('execution %s (task `%s`, item %s, attempt %s) has waited since %s for a worker to take it \
                        (re-sent %s times): its dispatch may be lost, or no worker serves its pool, or the pool''s queue is deep', \
                       e.id, t.task_name, coalesce(e.item_index::text, '-'), e.attempt, \
                       GREATEST(e.queued_at, e.due_at, e.redispatched_at), e.redispatches) \
         FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE e.status = 'queued' \
           AND GREATEST(e.queued_at, e.due_at, e.redispatched_at) < now() - make_interval(secs => $3) \
           AND ($1::uuid IS NULL OR e.workflow_execution_id = $1)",
    ),
    (
        // A start message lost on the way leaves its run pending: the
        // executors send it again after `--redispatch-after`.
        "pending_runs_started",
        "SELECT r.id, format('run has been pending since %s: no executor started it (its start message may be lost, or no executor runs)', \
                            GREATEST(r.created_at, r.resubmitted_at)) \
         FROM workflow_executions r \
         WHERE r.status = 'pending' \
           AND GREATEST(r.created_at, r.resubmitted_at) < now() - make_interval(secs => $3) \
           AND ($1::uuid IS NULL OR r.id = $1)",
    ),
    (
        // Rows the relay could not decode are parked, never dropped.
        "outbox_nothing_parked",
        // The payload is what could not be decoded: its run id is read only
        // if it has the shape of one.
        "SELECT coalesce(p.run, '00000000-0000-0000-0000-000000000000'::uuid), \
                format('outbox message %s (to %s/%s, written %s) was parked unpublished: %s', \
                       p.id, p.exchange, p.routing_key, p.created_at, p.reason) \
         FROM (SELECT o.*, CASE WHEN o.payload->>'workflow_execution_id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' \
                                THEN (o.payload->>'workflow_execution_id')::uuid END AS run \
               FROM outbox_parked o) p \
         WHERE ($1::uuid IS NULL OR p.run = $1)",
    ),
    (
        "fan_out_result_per_item",
        "SELECT t.workflow_execution_id, \
                format('fan-out `%s` %s with %s result entries for %s items', t.task_name, t.status, \
                       CASE WHEN jsonb_typeof(t.result) = 'array' THEN jsonb_array_length(t.result)::text \
                            ELSE 'no list of' END, \
                       t.items_total) \
         FROM task_executions t \
         WHERE t.with_items AND ($1::uuid IS NULL OR t.workflow_execution_id = $1) \
           AND (t.status = 'succeeded' \
                OR (t.status IN ('failed', 'canceled') AND t.items_total IS NOT NULL)) \
           AND (jsonb_typeof(t.result) IS DISTINCT FROM 'array' \
                OR jsonb_array_length(t.result) IS DISTINCT FROM t.items_total)",
    ),
    (
        "succeeded_items_kept",
        "SELECT t.workflow_execution_id, \
                format('item %s of fan-out `%s` succeeded in an earlier round and ran again in round %s', \
                       e.item_index, t.task_name, e.round) \
         FROM task_executions t \
         JOIN executions e ON e.task_execution_id = t.id AND e.attempt > t.attempt_base \
         WHERE t.keep_items AND e.kept_from IS NULL AND e.status = 'succeeded' \
           AND ($1::uuid IS NULL OR t.workflow_execution_id = $1) \
           AND EXISTS (SELECT 1 FROM executions o \
                       WHERE o.task_execution_id = t.id AND o.item_index = e.item_index \
                         AND o.attempt <= t.attempt_base AND o.status = 'succeeded' AND o.input = e.input)",
    ),
    (
        "decided_after_needs_finished",
        "SELECT t.workflow_execution_id, \
                format('task `%s` was decided at %s, before its need `%s` finished (at %s)', \
                       t.task_name, t.decided_at, n.task_name, n.finished_at) \
         FROM task_executions t \
         JOIN task_executions n ON n.workflow_execution_id = t.workflow_execution_id AND n.task_name = ANY(t.needs) \
         WHERE ($1::uuid IS NULL OR t.workflow_execution_id = $1) \
           AND t.decided_at IS NOT NULL AND n.finished_at IS NOT NULL AND t.decided_at < n.finished_at",
    ),
    (
        // A child run carries out an execution of its parent run, one level
        // deeper (see `children::start_child`).
        "child_run_lineage",
        "SELECT c.id, format('child run %s carries out execution %s of run %s but names run %s as its parent', \
                             c.id, e.id, e.workflow_execution_id, c.parent_run_id) \
         FROM workflow_executions c JOIN executions e ON e.id = c.parent_execution_id \
         WHERE e.workflow_execution_id <> c.parent_run_id \
           AND ($1::uuid IS NULL OR c.id = $1 OR c.parent_run_id = $1) \
         UNION ALL \
         SELECT c.id, format('child run %s is at depth %s under run %s at depth %s', c.id, c.depth, p.id, p.depth) \
         FROM workflow_executions c JOIN workflow_executions p ON p.id = c.parent_run_id \
         WHERE c.depth <> p.depth + 1 AND ($1::uuid IS NULL OR c.id = $1 OR c.parent_run_id = $1)",
    ),
    (
        // A parent execution ends when its child run ends (the child's end
        // reports it), or the reaper timed it out and canceled the child
        // in the same transaction: a child still pending or running under
        // an ended execution is an orphan nobody waits for.
        "child_run_has_a_waiting_parent",
        "SELECT c.parent_run_id, \
                format('execution %s of task `%s` (item %s, attempt %s) ended %s while its child run %s is still %s', \
                       e.id, t.task_name, coalesce(e.item_index::text, '-'), e.attempt, e.status, c.id, c.status) \
         FROM workflow_executions c \
         JOIN executions e ON e.id = c.parent_execution_id \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE c.status IN ('pending', 'running') AND e.finished_at IS NOT NULL \
           AND ($1::uuid IS NULL OR c.parent_run_id = $1 OR c.id = $1)",
    ),
    (
        // The statement that ends a child run writes its parent execution's
        // completion; once applied, the execution has ended. A child that
        // ended longer ago than the outbox threshold under an execution
        // still running: its end was never reported (or never applied).
        "child_run_end_reported",
        "SELECT c.parent_run_id, \
                format('child run %s ended %s at %s, but execution %s of task `%s` (item %s, attempt %s) it carries out is still %s', \
                       c.id, c.status, c.finished_at, e.id, t.task_name, coalesce(e.item_index::text, '-'), e.attempt, e.status) \
         FROM workflow_executions c \
         JOIN executions e ON e.id = c.parent_execution_id \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE c.finished_at < now() - make_interval(secs => $2) AND e.finished_at IS NULL \
           AND ($1::uuid IS NULL OR c.parent_run_id = $1 OR c.id = $1)",
    ),
    (
        // A running execution has a worker that reported its start, or is
        // a `workflow:` task's, carried out by a child run started in the
        // same statement that made it running.
        "running_execution_has_a_runner",
        "SELECT e.workflow_execution_id, \
                format('execution %s of task `%s` (item %s, attempt %s) is running with neither a worker nor a child run', \
                       e.id, t.task_name, coalesce(e.item_index::text, '-'), e.attempt) \
         FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE e.status = 'running' AND e.worker_id IS NULL \
           AND ($1::uuid IS NULL OR e.workflow_execution_id = $1) \
           AND NOT EXISTS (SELECT 1 FROM workflow_executions c WHERE c.parent_execution_id = e.id) \
           AND NOT EXISTS (SELECT 1 FROM waits w WHERE w.execution_id = e.id)",
    ),
    (
        // A wait (`wait:` task) ends its execution the way it was resolved:
        // succeeded by its time, a signal or an approval; failed or timed
        // out by a rejection or its timeout — and never before its time.
        "wait_ended_as_resolved",
        "SELECT w.workflow_execution_id, \
                format('the wait of task `%s` (attempt %s) was resolved %s but its execution is %s', \
                       t.task_name, e.attempt, coalesce(w.resolution, 'by nothing'), e.status) \
         FROM waits w JOIN executions e ON e.id = w.execution_id JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE ($1::uuid IS NULL OR w.workflow_execution_id = $1) \
           AND ((e.status = 'succeeded' AND coalesce(w.resolution, '') NOT IN ('elapsed', 'signaled', 'approved')) \
             OR (e.status IN ('failed', 'timed_out') AND coalesce(w.resolution, '') NOT IN ('timed_out', 'rejected'))) \
         UNION ALL \
         SELECT w.workflow_execution_id, \
                format('the wait of task `%s` (attempt %s) ended %s at %s, before its time %s', \
                       t.task_name, e.attempt, w.resolution, w.resolved_at, w.due_at) \
         FROM waits w JOIN executions e ON e.id = w.execution_id JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE ($1::uuid IS NULL OR w.workflow_execution_id = $1) \
           AND w.resolution IN ('elapsed', 'timed_out') AND w.resolved_at < w.due_at",
    ),
    (
        // A signal, an approval or a rejection is taken only by a waiting
        // execution: recorded after it started and, if it ended, not after
        // it ended (a delivery's end is stamped with the delivery's time).
        "signal_taken_while_waiting",
        "SELECT w.workflow_execution_id, \
                format('task `%s` (attempt %s) took a delivery (%s) at %s while it was not waiting (started %s, ended %s as %s)', \
                       t.task_name, e.attempt, w.resolution, w.resolved_at, e.started_at, \
                       coalesce(e.finished_at::text, '-'), e.status) \
         FROM waits w JOIN executions e ON e.id = w.execution_id JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE ($1::uuid IS NULL OR w.workflow_execution_id = $1) \
           AND w.resolution IN ('signaled', 'approved', 'rejected') \
           AND (e.started_at IS NULL OR w.resolved_at < e.started_at OR w.resolved_at > e.finished_at)",
    ),
    (
        // An open wait whose time passed longer ago than the outbox's
        // threshold: its `wait.due` message was lost or is stuck.
        "waits_end_on_time",
        "SELECT w.workflow_execution_id, \
                format('the wait of task `%s` (attempt %s) was due at %s and is still open', \
                       t.task_name, e.attempt, w.due_at) \
         FROM waits w JOIN executions e ON e.id = w.execution_id JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE ($1::uuid IS NULL OR w.workflow_execution_id = $1) \
           AND w.resolution IS NULL AND e.status = 'running' \
           AND w.due_at < now() - make_interval(secs => $2)",
    ),
    (
        // Run-wide parallelism (`parallelism: N`, see `parallelism`): from
        // the executions' recorded times — in flight from `queued_at` (the
        // database's clock, when its dispatch was written) to `finished_at`
        // — never more than N of a run's executions at once (an end and a
        // dispatch at the same instant: the end first). `finished_at` of a
        // worker's report is the worker's clock: a worker whose clock runs
        // ahead of the database's by more than the gap between an end and
        // the next dispatch can make this report an overlap that was not.
        // And a running limited run with executions waiting for a slot has
        // at least one in flight: its last end dispatched what waits.
        "parallelism_respected",
        concat!(
            "SELECT v.run, format('%s of the run''s executions were in flight at once at %s, over its parallelism of %s', \
                                  v.in_flight, v.at, v.lim) \
             FROM ( \
                 SELECT DISTINCT ON (s.run) s.run, s.in_flight, s.at, s.lim \
                 FROM ( \
                     SELECT ev.run, ev.at, ev.lim, \
                            sum(ev.d) OVER (PARTITION BY ev.run ORDER BY ev.at, ev.d ROWS UNBOUNDED PRECEDING) AS in_flight \
                     FROM ( \
                         SELECT r.id AS run, r.parallelism AS lim, x.at, x.d \
                         FROM workflow_executions r \
                         JOIN executions e ON e.workflow_execution_id = r.id \
                         JOIN task_executions t ON t.id = e.task_execution_id \
                         CROSS JOIN LATERAL (VALUES (e.queued_at, 1), (e.finished_at, -1)) AS x(at, d) \
                         WHERE r.parallelism IS NOT NULL AND e.queued_at IS NOT NULL AND x.at IS NOT NULL \
                           AND ($1::uuid IS NULL OR r.id = $1) AND ",
            counted_tasks!(),
            " \
                     ) ev \
                 ) s \
                 WHERE s.in_flight > s.lim \
                 ORDER BY s.run, s.in_flight DESC, s.at \
             ) v \
             UNION ALL \
             SELECT r.id, format('task `%s` has %s executions waiting for a run-wide slot, but none of the run''s executions is in flight (parallelism %s)', \
                                 t.task_name, count(*), r.parallelism) \
             FROM workflow_executions r \
             JOIN task_executions t ON t.workflow_execution_id = r.id \
             JOIN executions e ON e.task_execution_id = t.id \
             WHERE r.parallelism IS NOT NULL AND r.status = 'running' AND t.status = 'running' \
               AND t.items_failed = 0 AND e.status = 'pending' AND ($1::uuid IS NULL OR r.id = $1) AND ",
            counted_tasks!(),
            " AND NOT EXISTS ( \
                   SELECT 1 FROM executions l JOIN task_executions t ON t.id = l.task_execution_id \
                   WHERE l.workflow_execution_id = r.id AND l.status IN ('queued', 'running') AND ",
            counted_tasks!(),
            ") \
             GROUP BY r.id, t.task_name, r.parallelism"
        ),
    ),
    (
        // Exit handlers (`on_exit:`) start only after every main task is
        // terminal: each is decided (in this round) after the last main
        // task finished. Both timestamps are `clock_timestamp()` taken
        // under the run's row lock, in commit order. Decided once per
        // round: the task's guard and the unique (task, item, attempt)
        // index of its executions.
        "exit_handlers_run_once_after_main",
        "SELECT e.workflow_execution_id,                 format('exit handler `%s` was decided at %s, but main task `%s` %s',                        e.task_name, e.decided_at, m.task_name,                        coalesce('finished later, at ' || m.finished_at::text, 'is ' || m.status))          FROM task_executions e          JOIN task_executions m ON m.workflow_execution_id = e.workflow_execution_id AND NOT m.exit_handler          WHERE e.exit_handler AND e.decided_at IS NOT NULL            AND (m.finished_at IS NULL OR m.finished_at > e.decided_at)            AND ($1::uuid IS NULL OR e.workflow_execution_id = $1)",
    ),
    (
        // A run with exit handlers counts its unfinished main tasks apart;
        // the statement that brings the count to zero releases them.
        "main_remaining_counter",
        "SELECT r.id, format('run counts %s main tasks remaining but %s are unfinished',                              r.main_remaining, count(t.id))          FROM workflow_executions r LEFT JOIN task_executions t               ON t.workflow_execution_id = r.id AND NOT t.exit_handler AND t.status IN ('waiting', 'running')          WHERE r.main_remaining IS NOT NULL AND r.status IN ('running', 'succeeded', 'failed')            AND ($1::uuid IS NULL OR r.id = $1)          GROUP BY r.id HAVING r.main_remaining <> count(t.id)",
    ),
    (
        // A schedule's tick either started a run or was recorded as
        // skipped (overlap, missed, failed) by the claim that moved the
        // cursor past it — never both. (Two runs for one tick are
        // impossible by the unique (schedule, tick) index.)
        "schedule_tick_fired_once",
        "SELECT r.id, format('tick %s of schedule `%s` started run %s but is also recorded as %s: %s', \
                            r.scheduled_at, r.schedule_name, r.id, k.reason, k.detail) \
         FROM workflow_executions r \
         JOIN schedule_skips k ON k.schedule_id = r.schedule_id AND k.tick = r.scheduled_at \
         WHERE r.schedule_id IS NOT NULL AND ($1::uuid IS NULL OR r.id = $1)",
    ),
    (
        // The claim that starts a tick's run moves the schedule's cursor
        // past it in the same transaction: a cursor at or before a tick
        // that already ran would fire it again (only the unique index
        // would stop it). And a tick fires once it is due by the
        // database's clock, in the transaction that creates its run: a
        // run created before its tick fired early.
        "schedule_cursor_after_fired_ticks",
        "SELECT r.id, format('schedule `%s` will next fire tick %s, but tick %s already started run %s', \
                            s.name, s.next_tick, r.scheduled_at, r.id) \
         FROM schedules s \
         CROSS JOIN LATERAL (SELECT id, scheduled_at FROM workflow_executions \
                             WHERE schedule_id = s.id ORDER BY scheduled_at DESC LIMIT 1) r \
         WHERE r.scheduled_at >= s.next_tick AND ($1::uuid IS NULL OR r.id = $1) \
         UNION ALL \
         SELECT r.id, format('run %s of schedule `%s` was created at %s, before its tick %s', \
                             r.id, r.schedule_name, r.created_at, r.scheduled_at) \
         FROM workflow_executions r \
         WHERE r.schedule_id IS NOT NULL AND r.created_at < r.scheduled_at \
           AND ($1::uuid IS NULL OR r.id = $1)",
    ),
    (
        // Shared limits (`limit:`, see `shared_limits`): a run's claim is
        // deleted by the statement that ends it (`runs::end_many`), so no
        // finished run holds a slot or waits in line; a run waits in line
        // only while pending (or canceling on its way out).
        "limit_slots_released",
        "SELECT r.id, format('run is %s but still %s a slot of limit `%s` %s (since %s)', \
                             r.status, CASE c.state WHEN 'holding' THEN 'holds' ELSE 'waits for' END, \
                             c.scope, c.key, coalesce(c.granted_at, c.created_at)) \
         FROM limit_claims c JOIN workflow_executions r ON r.id = c.workflow_execution_id \
         WHERE (r.status IN ('succeeded', 'failed', 'canceled') \
                OR (c.state = 'waiting' AND r.status = 'running' AND c.task_execution_id IS NULL)) \
           AND ($1::uuid IS NULL OR r.id = $1) \
         UNION ALL \
         SELECT t.workflow_execution_id, format('task `%s` is %s but still %s its lock `%s`', \
                             t.task_name, t.status, \
                             CASE c.state WHEN 'holding' THEN 'holds' ELSE 'waits for' END, c.key) \
         FROM limit_claims c JOIN task_executions t ON t.id = c.task_execution_id \
         WHERE t.status IN ('succeeded', 'failed', 'skipped', 'canceled') \
           AND ($1::uuid IS NULL OR t.workflow_execution_id = $1)",
    ),
    (
        // Only a run admitted under a `limit:` (`limit_key`, never cleared)
        // or a task whose definition takes a lock (`task_executions.locks`,
        // set when its run starts) ever has a claim: the transaction that
        // ends any other run or task asks nothing, so a claim of one would
        // never be released.
        "limit_claims_declared",
        "SELECT r.id, format('run %s a slot of limit `%s` %s but has no limit key: its end would not release it', \
                             CASE c.state WHEN 'holding' THEN 'holds' ELSE 'waits for' END, c.scope, c.key) \
         FROM limit_claims c JOIN workflow_executions r ON r.id = c.workflow_execution_id \
         WHERE c.task_execution_id IS NULL AND r.limit_key IS NULL \
           AND ($1::uuid IS NULL OR r.id = $1) \
         UNION ALL \
         SELECT t.workflow_execution_id, \
                format('task `%s` %s lock `%s` but its definition takes no lock (locks = false): its end would not release it', \
                       t.task_name, CASE c.state WHEN 'holding' THEN 'holds' ELSE 'waits for' END, c.key) \
         FROM limit_claims c JOIN task_executions t ON t.id = c.task_execution_id \
         WHERE NOT t.locks \
           AND ($1::uuid IS NULL OR t.workflow_execution_id = $1)",
    ),
    (
        // The counters a grant decides by equal the claims they count:
        // per key the holders, the waiters and the head of the line; per
        // scope the holders, at most its `runs_total`. (A key's holders
        // at most its capacity is a CHECK of its row.)
        "limit_counters_match_claims",
        "SELECT coalesce(x.first_run, '00000000-0000-0000-0000-000000000000'::uuid), \
                format('limit `%s` %s counts %s holding / %s waiting (head %s), its claims say %s / %s (head %s)', \
                       k.scope, k.key, k.holders, k.waiters, coalesce(k.head_seq::text, 'none'), \
                       x.holding, x.waiting, coalesce(x.head::text, 'none')) \
         FROM limit_keys k \
         CROSS JOIN LATERAL ( \
             SELECT count(*) FILTER (WHERE state = 'holding') AS holding, \
                    count(*) FILTER (WHERE state = 'waiting') AS waiting, \
                    min(seq) FILTER (WHERE state = 'waiting') AS head, \
                    (array_agg(workflow_execution_id ORDER BY seq))[1] AS first_run, \
                    bool_or(workflow_execution_id = $1) AS concerns \
             FROM limit_claims WHERE scope = k.scope AND key = k.key \
         ) x \
         WHERE (k.holders <> x.holding OR k.waiters <> x.waiting OR k.head_seq IS DISTINCT FROM x.head) \
           AND ($1::uuid IS NULL OR x.concerns) \
         UNION ALL \
         SELECT '00000000-0000-0000-0000-000000000000'::uuid, \
                format('limit `%s` counts %s runs holding a slot, its keys %s (runs_total %s)', \
                       s.scope, s.holders, coalesce(sum(k.holders), 0), coalesce(s.runs_total::text, 'none')) \
         FROM limit_scopes s LEFT JOIN limit_keys k ON k.scope = s.scope \
         WHERE $1::uuid IS NULL \
         GROUP BY s.scope, s.holders, s.runs_total \
         HAVING s.holders <> coalesce(sum(k.holders), 0) OR s.holders > coalesce(s.runs_total, s.holders)",
    ),
    (
        // A slot freed is granted in the transaction that frees it: no
        // run waits in line while its key (and its scope) has a free slot.
        "limit_no_idle_waiter",
        "SELECT c.workflow_execution_id, \
                format('run is first in line for limit `%s` %s (since %s) although %s of its %s slots are held%s', \
                       k.scope, k.key, c.created_at, k.holders, k.capacity, \
                       CASE WHEN s.runs_total IS NULL THEN '' \
                            ELSE format(' and %s of the workflow''s %s', s.holders, s.runs_total) END) \
         FROM limit_keys k \
         JOIN limit_scopes s ON s.scope = k.scope \
         JOIN limit_claims c ON c.seq = k.head_seq \
         WHERE k.waiters > 0 AND k.holders < k.capacity \
           AND (s.runs_total IS NULL OR s.holders < s.runs_total) \
           AND ($1::uuid IS NULL OR c.workflow_execution_id = $1)",
    ),
    (
        // A run granted a slot while it waited gets its start message in
        // the granting transaction; the redispatcher re-sends it if lost.
        "limit_granted_runs_start",
        "SELECT r.id, format('run was granted a slot of limit `%s` %s at %s but is still pending', \
                             c.scope, c.key, c.granted_at) \
         FROM limit_claims c JOIN workflow_executions r ON r.id = c.workflow_execution_id \
         WHERE c.state = 'holding' AND r.status = 'pending' \
           AND c.granted_at < now() - make_interval(secs => $3) \
           AND ($1::uuid IS NULL OR r.id = $1)",
    ),
];

/// The names of every check, in the order they run.
#[must_use]
pub fn checks() -> Vec<&'static str> {
    CHECKS.iter().map(|(name, _)| *name).collect()
}

/// The ages past which the audit reports a message or an execution as
/// stuck.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Seconds an outbox message may stay unpublished past its due time.
    pub outbox_secs: f64,
    /// Seconds a queued execution may wait for a worker to take it since
    /// its dispatch was last written; the executors' `--redispatch-after`.
    pub queued_secs: f64,
}

impl Thresholds {
    /// The given outbox threshold, and the default redispatch delay.
    #[must_use]
    pub fn outbox(outbox_secs: f64) -> Self {
        Self {
            outbox_secs,
            queued_secs: crate::overdue::DEFAULT_REDISPATCH_AFTER.as_secs_f64(),
        }
    }
}

/// Runs every check, for one run or for all; returns every violation.
/// Queued executions are judged against the default redispatch delay (see
/// [`audit_with`]).
///
/// # Errors
/// A database error.
pub async fn audit(
    conn: &mut PgConnection,
    run: Option<WorkflowExecutionId>,
    outbox_threshold_secs: f64,
) -> Result<Vec<Violation>, StoreError> {
    audit_with(conn, run, Thresholds::outbox(outbox_threshold_secs)).await
}

/// Runs every check with the given thresholds, for one run or for all;
/// returns every violation.
///
/// # Errors
/// A database error.
pub async fn audit_with(
    conn: &mut PgConnection,
    run: Option<WorkflowExecutionId>,
    thresholds: Thresholds,
) -> Result<Vec<Violation>, StoreError> {
    let mut found = Vec::new();
    for (name, sql) in CHECKS {
        let query = format!(
            "SELECT '{name}' AS check, v.* FROM ({sql}) AS v(workflow_execution_id, detail)"
        );
        let rows: Vec<Violation> = sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(run.map(|r| r.as_uuid()))
            .bind(thresholds.outbox_secs)
            .bind(thresholds.queued_secs)
            .fetch_all(&mut *conn)
            .await
            .context("auditing")?;
        found.extend(rows);
    }
    Ok(found)
}
