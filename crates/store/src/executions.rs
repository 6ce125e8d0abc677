//! `executions`: one row per task item × attempt. The guarded transitions
//! here are what make a redelivered start or completion a no-op.

use chrono::{DateTime, Utc};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::types::Json;
use sqlx::{Arguments as _, PgConnection};
use uuid::Uuid;
use weft_common::{
    AttemptLogs, Envelope, ExecutionId, ExecutionStatus, TaskExecutionId, TaskStatus,
    WorkflowExecutionId, WorkflowStatus,
};

use crate::error::{Context, StoreError};
use crate::tasks::{self, CascadeRow, Finished};

/// An execution as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExecutionRow {
    /// Its id.
    #[sqlx(try_from = "Uuid")]
    pub id: ExecutionId,
    /// Its task.
    #[sqlx(try_from = "Uuid")]
    pub task_execution_id: TaskExecutionId,
    /// Its run.
    #[sqlx(try_from = "Uuid")]
    pub workflow_execution_id: WorkflowExecutionId,
    /// The item's position, for a with_items task.
    pub item_index: Option<i32>,
    /// Which try.
    pub attempt: i32,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: ExecutionStatus,
    /// The rendered input.
    pub input: Value,
    /// The action's result.
    pub result: Option<Value>,
    /// What went wrong.
    pub error: Option<String>,
    /// The worker that ran it.
    pub worker_id: Option<String>,
    /// The per-attempt timeout.
    pub timeout_ms: Option<i64>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its dispatch was written to the outbox.
    pub queued_at: Option<DateTime<Utc>>,
    /// When its dispatch becomes due.
    pub due_at: Option<DateTime<Utc>>,
    /// When the action began.
    pub started_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    pub finished_at: Option<DateTime<Utc>>,
    /// Past this instant a running execution is reaped.
    pub deadline: Option<DateTime<Utc>>,
    /// The run's round (`weft retry`) it was created in.
    pub round: i32,
    /// The earlier round's execution whose success it keeps (nothing was
    /// dispatched for it).
    pub kept_from: Option<Uuid>,
    /// Its dispatch position in a round that kept items (`None`: its item
    /// index is its position).
    pub seq: Option<i32>,
    /// The item's value, abbreviated to one line
    /// ([`weft_common::item_label`]), for a with_items task.
    pub item_label: Option<String>,
}

pub(crate) const EXECUTION_COLUMNS: &str = "id, task_execution_id, workflow_execution_id, item_index, attempt, status, input, \
     result, error, worker_id, timeout_ms, created_at, queued_at, due_at, started_at, finished_at, deadline, \
     round, kept_from, seq, item_label";

/// An execution to create.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// Its id.
    pub id: ExecutionId,
    /// The item's position, for a with_items task.
    pub item_index: Option<i32>,
    /// Which try.
    pub attempt: i32,
    /// `queued` (its dispatch goes to the outbox now) or `pending` (waits for
    /// a concurrency slot).
    pub status: ExecutionStatus,
    /// The rendered input, as compact JSON: a wide fan-out's are held
    /// until written, and text is the smallest form of them.
    pub input: Box<RawValue>,
    /// When its dispatch becomes due (a retry's backoff); `None` = now.
    pub due_at: Option<DateTime<Utc>>,
    /// Its dispatch position in a round that kept items (see
    /// [`ExecutionRow::seq`]).
    pub seq: Option<i32>,
    /// With status `succeeded`: the earlier round's execution whose
    /// success (and result) it keeps.
    pub kept_from: Option<ExecutionId>,
    /// The item's value, abbreviated ([`ExecutionRow::item_label`]).
    pub item_label: Option<String>,
}

/// Creates executions of one task in one statement. The unique
/// (task, item, attempt) index refuses a unit that exists already.
///
/// # Errors
/// [`StoreError::Duplicate`] if one of them exists.
pub async fn create_many(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    task: TaskExecutionId,
    round: i32,
    timeout_ms: Option<i64>,
    executions: &[NewExecution],
) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = executions.iter().map(|e| e.id.as_uuid()).collect();
    let items: Vec<Option<i32>> = executions.iter().map(|e| e.item_index).collect();
    let attempts: Vec<i32> = executions.iter().map(|e| e.attempt).collect();
    let statuses: Vec<&str> = executions.iter().map(|e| e.status.as_str()).collect();
    let inputs: Vec<Json<&RawValue>> = executions.iter().map(|e| Json(&*e.input)).collect();
    let due: Vec<Option<DateTime<Utc>>> = executions.iter().map(|e| e.due_at).collect();
    let seqs: Vec<Option<i32>> = executions.iter().map(|e| e.seq).collect();
    let labels: Vec<Option<&str>> = executions.iter().map(|e| e.item_label.as_deref()).collect();
    sqlx::query(
        "INSERT INTO executions \
             (id, task_execution_id, workflow_execution_id, item_index, attempt, status, input, timeout_ms, \
              queued_at, due_at, round, seq, item_label) \
         SELECT id, $1, $2, item, attempt, status, input, $3, \
                CASE WHEN status = 'queued' THEN clock_timestamp() END, due, $10, seq, label \
         FROM UNNEST($4::uuid[], $5::int[], $6::int[], $7::text[], $8::jsonb[], $9::timestamptz[], \
                     $11::int[], $12::text[]) \
              AS e(id, item, attempt, status, input, due, seq, label)",
    )
    .bind(task.as_uuid())
    .bind(run.as_uuid())
    .bind(timeout_ms)
    .bind(&ids)
    .bind(&items)
    .bind(&attempts)
    .bind(&statuses)
    .bind(&inputs)
    .bind(&due)
    .bind(round)
    .bind(&seqs)
    .bind(&labels)
    .execute(conn)
    .await
    .context("creating executions")?;
    Ok(())
}

/// A task decided to run: `waiting → running` with its executions.
#[derive(Debug, Clone)]
pub struct TaskStart {
    /// The task.
    pub task: TaskExecutionId,
    /// Its run.
    pub run: WorkflowExecutionId,
    /// The run's round it starts in.
    pub round: i32,
    /// How many items it has (1 for a plain task).
    pub items: i32,
    /// How many of them this round keeps from an earlier one (they count
    /// as dispatched and succeeded from the start).
    pub kept: i32,
    /// How many positions are dispatched at once: the kept items and the
    /// first items to run.
    pub dispatched: i32,
    /// The per-attempt timeout of its executions.
    pub timeout_ms: Option<i64>,
    /// Its executions (at least one).
    pub executions: Vec<NewExecution>,
}

/// What [`start_tasks`] did.
#[derive(Debug, Clone, Default)]
pub struct TasksStarted {
    /// The tasks it started; a task left out was not waiting — nothing
    /// changed for it.
    pub tasks: Vec<TaskExecutionId>,
    /// The outbox row of each message given, in their order (`None`: its
    /// task did not start, so it was not written).
    pub written: Vec<Option<i64>>,
}

/// Guarded `waiting → running` of several tasks (locked in id order), each
/// with its items counted and its executions created, in one statement —
/// and, in the same statement, the messages of each task that started
/// (its dispatches) written to the outbox, due after `lease` as with
/// [`outbox::enqueue`](crate::outbox::enqueue). Executions past the first
/// [`WRITTEN_PER_STATEMENT`] (a wide fan-out's) are written by further
/// statements of the same transaction, for the tasks that started: their
/// inputs are encoded a chunk at a time, never all at once.
///
/// # Errors
/// [`StoreError::Duplicate`] if one of the executions exists.
pub async fn start_tasks(
    conn: &mut PgConnection,
    starts: &[TaskStart],
    messages: &[(TaskExecutionId, &Envelope)],
    lease: Option<std::time::Duration>,
) -> Result<TasksStarted, StoreError> {
    if starts.is_empty() {
        return Ok(TasksStarted::default());
    }
    let message_tasks: Vec<Uuid> = messages.iter().map(|(task, _)| task.as_uuid()).collect();
    let columns = crate::outbox::Columns::of(messages.iter().map(|(_, envelope)| *envelope))?;
    let task_ids: Vec<Uuid> = starts.iter().map(|s| s.task.as_uuid()).collect();
    let totals: Vec<i32> = starts.iter().map(|s| s.items).collect();
    let dispatched: Vec<i32> = starts.iter().map(|s| s.dispatched).collect();
    let kept: Vec<i32> = starts.iter().map(|s| s.kept).collect();
    let executions: Vec<(&TaskStart, &NewExecution)> = starts
        .iter()
        .flat_map(|s| s.executions.iter().map(move |e| (s, e)))
        .collect();
    let mut chunks = executions.chunks(WRITTEN_PER_STATEMENT);
    let first = chunks.next().unwrap_or_default();
    let args = execution_arguments(first)
        .and_then(|mut args| {
            args.add(&task_ids)?;
            args.add(&totals)?;
            args.add(&dispatched)?;
            args.add(&kept)?;
            args.add(&message_tasks)?;
            args.add(&columns.exchanges)?;
            args.add(&columns.keys)?;
            args.add(&columns.payloads)?;
            args.add(crate::outbox::lease_millis(lease))?;
            Ok(args)
        })
        .map_err(sqlx::Error::Encode)
        .context("encoding the tasks to start")?;
    let rows: Vec<(Option<Uuid>, Option<i64>, Option<Uuid>)> =
        sqlx::query_as_with(sqlx::AssertSqlSafe(format!(
            "WITH s AS ( \
                 SELECT DISTINCT ON (id) * FROM UNNEST($14::uuid[], $15::int[], $16::int[], $17::int[]) \
                     AS s(id, total, dispatched, kept) \
             ), locked AS ( \
                 SELECT t.id, s.total, s.dispatched, s.kept FROM task_executions t JOIN s ON s.id = t.id \
                 WHERE t.status = 'waiting' ORDER BY t.id FOR UPDATE OF t \
             ), started AS ( \
                 UPDATE task_executions t \
                 SET status = 'running', items_total = locked.total, items_dispatched = locked.dispatched, \
                     items_kept = locked.kept, items_succeeded = locked.kept, decided_at = clock_timestamp() \
                 FROM locked WHERE t.id = locked.id AND t.status = 'waiting' RETURNING t.id \
             ), created AS ( \
                 {INSERT_EXECUTIONS} JOIN started ON started.id = e.task \
             ), written AS ( \
                 INSERT INTO outbox (exchange, routing_key, payload, not_before) \
                 SELECT m.exchange, m.key, m.payload::jsonb, \
                        now() + make_interval(secs => $22::float8 / 1000) \
                 FROM UNNEST($18::uuid[], $19::text[], $20::text[], $21::text[]) \
                      AS m(task, exchange, key, payload) \
                 JOIN started ON started.id = m.task \
                 RETURNING id, (payload->>'id')::uuid AS message \
             ) \
             SELECT id, NULL::int8, NULL::uuid FROM started \
             UNION ALL SELECT NULL, id, message FROM written"
        )), args)
        .fetch_all(&mut *conn)
        .await
        .context("starting tasks")?;
    let mut tasks = Vec::new();
    let mut written = Vec::new();
    for row in rows {
        match row {
            (Some(task), _, _) => tasks.push(TaskExecutionId::from(task)),
            (None, Some(id), Some(message)) => written.push((id, message)),
            _ => {
                return Err(StoreError::Corrupt {
                    what: "task start",
                    detail: "the database returned an empty row".into(),
                });
            }
        }
    }
    let started: std::collections::HashSet<TaskExecutionId> = tasks.iter().copied().collect();
    for chunk in chunks {
        let of_started: Vec<(&TaskStart, &NewExecution)> = chunk
            .iter()
            .filter(|(start, _)| started.contains(&start.task))
            .copied()
            .collect();
        if of_started.is_empty() {
            continue;
        }
        let args = execution_arguments(&of_started)
            .map_err(sqlx::Error::Encode)
            .context("encoding the executions of started tasks")?;
        sqlx::query_with(INSERT_EXECUTIONS, args)
            .execute(&mut *conn)
            .await
            .context("creating the executions of started tasks")?;
    }
    let started = TasksStarted {
        tasks,
        written: crate::outbox::rows_of(messages.iter().map(|(_, envelope)| *envelope), written)?,
    };
    Ok(started)
}

/// Executions written by one statement of [`start_tasks`]: 4,096 inputs
/// of 1 KiB are 4 MiB of parameters.
const WRITTEN_PER_STATEMENT: usize = 4_096;

/// Creates the executions given as the columns `$1`–`$13` of
/// [`execution_arguments`]. A kept item is created `succeeded` with its
/// earlier execution's result; the `CASE` looks that row up for kept items
/// only.
const INSERT_EXECUTIONS: &str = "INSERT INTO executions \
         (id, task_execution_id, workflow_execution_id, item_index, attempt, status, input, \
          timeout_ms, queued_at, due_at, round, seq, kept_from, result, finished_at, item_label) \
     SELECT e.id, e.task, e.run, e.item, e.attempt, e.status, e.input, e.timeout, \
            CASE WHEN e.status = 'queued' THEN clock_timestamp() END, e.due, e.round, e.seq, \
            e.kept_from, \
            CASE WHEN e.kept_from IS NOT NULL \
                 THEN (SELECT o.result FROM executions o WHERE o.id = e.kept_from) END, \
            CASE WHEN e.kept_from IS NOT NULL THEN clock_timestamp() END, e.label \
     FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::int[], $6::int[], \
                 $7::text[], $8::jsonb[], $9::timestamptz[], $10::int[], $11::int[], $12::uuid[], \
                 $13::text[]) \
          AS e(task, run, id, timeout, item, attempt, status, input, due, round, seq, kept_from, label)";

/// New executions (each with the task start it belongs to) as the
/// parameters `$1`–`$13` of [`INSERT_EXECUTIONS`].
fn execution_arguments(
    executions: &[(&TaskStart, &NewExecution)],
) -> Result<PgArguments, BoxDynError> {
    fn column<T>(
        executions: &[(&TaskStart, &NewExecution)],
        f: impl Fn(&TaskStart, &NewExecution) -> T,
    ) -> Vec<T> {
        executions.iter().map(|(s, e)| f(s, e)).collect()
    }
    let mut args = PgArguments::default();
    args.add(column(executions, |s, _| s.task.as_uuid()))?;
    args.add(column(executions, |s, _| s.run.as_uuid()))?;
    args.add(column(executions, |_, e| e.id.as_uuid()))?;
    args.add(column(executions, |s, _| s.timeout_ms))?;
    args.add(column(executions, |_, e| e.item_index))?;
    args.add(column(executions, |_, e| e.attempt))?;
    args.add(column(executions, |_, e| e.status.as_str()))?;
    args.add(
        executions
            .iter()
            .map(|(_, e)| Json(&*e.input))
            .collect::<Vec<Json<&RawValue>>>(),
    )?;
    args.add(column(executions, |_, e| e.due_at))?;
    args.add(column(executions, |s, _| s.round))?;
    args.add(column(executions, |_, e| e.seq))?;
    args.add(column(executions, |_, e| {
        e.kept_from.map(|id| id.as_uuid())
    }))?;
    args.add(column(executions, |_, e| e.item_label.clone()))?;
    Ok(args)
}

/// Guarded `pending → queued` of items' first attempt of this round, by
/// dispatch position: the item index, or the position in a round that kept
/// items (`by_seq`, see [`ExecutionRow::seq`]). Items not pending (already
/// queued) are left out.
///
/// # Errors
/// A database error.
pub async fn queue_items(
    conn: &mut PgConnection,
    task: TaskExecutionId,
    positions: std::ops::Range<i32>,
    attempt: i32,
    by_seq: bool,
) -> Result<Vec<ExecutionRow>, StoreError> {
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let position = if by_seq { "seq" } else { "item_index" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE executions SET status = 'queued', queued_at = clock_timestamp() \
         WHERE task_execution_id = $1 AND {position} >= $2 AND {position} < $3 AND attempt = $4 \
           AND status = 'pending' \
         RETURNING {EXECUTION_COLUMNS}"
    )))
    .bind(task.as_uuid())
    .bind(positions.start)
    .bind(positions.end)
    .bind(attempt)
    .fetch_all(conn)
    .await
    .context("queueing items")
}

/// Guarded `queued → running` when a worker reports the start; sets the
/// deadline to the timeout plus `grace` (none without a timeout: then only a
/// lost heartbeat reaps it), counted from the database's clock as the
/// report arrives: `started_at` is the worker's clock, kept for display,
/// but a worker clock running behind — or a report that waited in
/// `weft.executor` while the executors were down — must not bring the
/// deadline forward and get a healthy action reaped. A start reported by another worker while the
/// execution is running means the broker redelivered the dispatch after its
/// first worker was lost: the execution is re-assigned to the new worker, so
/// the reaper watches the worker that actually runs it. `false`: a duplicate
/// or late report — do nothing.
///
/// # Errors
/// A database error.
pub async fn started(
    conn: &mut PgConnection,
    id: ExecutionId,
    attempt: i32,
    worker_id: &str,
    started_at: DateTime<Utc>,
    grace_ms: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE executions \
         SET status = 'running', worker_id = $3, started_at = $4, seen_at = clock_timestamp(), \
             deadline = clock_timestamp() + make_interval(secs => (timeout_ms + $5)::float8 / 1000) \
         WHERE id = $1 AND attempt = $2 AND (status = 'queued' OR (status = 'running' AND worker_id <> $3))",
    )
    .bind(id.as_uuid())
    .bind(attempt)
    .bind(worker_id)
    .bind(started_at)
    .bind(grace_ms)
    .execute(conn)
    .await
    .context("recording an execution's start")?;
    Ok(done.rows_affected() == 1)
}

/// A completion to record.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    /// The execution.
    pub id: ExecutionId,
    /// Its run: locked `FOR KEY SHARE` before the execution (see
    /// [`RunLock`](crate::runs::RunLock)).
    pub run: WorkflowExecutionId,
    /// Which try the report is about.
    pub attempt: i32,
    /// A terminal status.
    pub status: ExecutionStatus,
    /// The action's result.
    pub result: Option<&'a Value>,
    /// What went wrong.
    pub error: Option<&'a str>,
    /// Who ran it (`None` when the reaper decides).
    pub worker_id: Option<&'a str>,
    /// When the action began.
    pub started_at: Option<DateTime<Utc>>,
    /// When the action ended, as its worker reported it (`None`: now).
    pub finished_at: Option<DateTime<Utc>>,
    /// What the attempt printed, as its worker reported it.
    pub logs: Option<&'a AttemptLogs>,
}

/// A recorded completion, with what the engine needs next of its task and
/// run (read in the same statement, to save round trips).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Completed {
    /// The execution, now terminal.
    #[sqlx(flatten)]
    pub execution: ExecutionRow,
    /// Its task's name.
    pub task_name: String,
    /// Its task's attempt base (see `weft retry`).
    pub attempt_base: i32,
    /// Its run's status.
    #[sqlx(try_from = "String")]
    pub run_status: WorkflowStatus,
    /// Its run's workflow definition.
    pub definition_id: Uuid,
    /// Its run's workflow name.
    pub workflow_name: String,
    /// Its run's input.
    pub run_input: Value,
    /// Its run's current round (`run_attempt`).
    pub run_round: i32,
    /// Its run's tick, when a schedule started it.
    pub run_scheduled_at: Option<DateTime<Utc>>,
    /// Whether the same statement made its task terminal: a plain task
    /// (no `with_items`) of a running run whose one execution succeeded
    /// ends with it (see [`Recorded::finished`]).
    pub task_finished: bool,
}

/// What [`complete_many`] recorded and what followed from it.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// One per completion, in their order (`None` for each whose guard
    /// refused it: a duplicate or late report; do nothing).
    pub completions: Vec<Option<Completed>>,
    /// The plain tasks finished with their succeeded execution, their
    /// successors that became ready and the runs left without an
    /// unfinished task, as [`tasks::finish`] reports them.
    pub finished: Finished,
}

#[derive(sqlx::FromRow)]
struct CompletedRow {
    ord: i64,
    #[sqlx(flatten)]
    completed: Completed,
    cascade: Option<sqlx::types::Json<Vec<CascadeRow>>>,
}

/// Guarded `queued | running → terminal` of several executions in one
/// statement. A completion listed twice is recorded once. Each run is
/// locked `FOR KEY SHARE` before its executions, until the transaction
/// ends, and the run's status returned is read under that lock: what the
/// caller dispatches for a running run commits before a cancellation of
/// it can (see [`RunLock`](crate::runs::RunLock)).
///
/// The same statement finishes each plain task whose execution succeeded
/// while its run is running — the task's outcome is its execution's — and
/// cascades from it as [`tasks::finish`] does, so the commonest step (a
/// task succeeded, decide its successors) needs one statement fewer.
///
/// The same statement `NOTIFY`s [`RUNS_CHANNEL`](crate::inspect::RUNS_CHANNEL)
/// once, with the runs whose executions it ended (not once per row: a
/// notification is queued under a lock held until commit, so one per row
/// would serialise the commits of a busy executor).
///
/// The keys are joined to the table: run it in a transaction with
/// sequential scans disabled (as the executor's are), or a plan made while
/// the table was small scans it whole once it has grown.
///
/// # Errors
/// A database error.
pub async fn complete_many(
    conn: &mut PgConnection,
    completions: &[Completion<'_>],
) -> Result<Recorded, StoreError> {
    if completions.is_empty() {
        return Ok(Recorded::default());
    }
    let column = |f: fn(&Completion<'_>) -> Option<String>| -> Vec<Option<String>> {
        completions.iter().map(f).collect()
    };
    let ids: Vec<Uuid> = completions.iter().map(|c| c.id.as_uuid()).collect();
    let runs: Vec<Uuid> = completions.iter().map(|c| c.run.as_uuid()).collect();
    let attempts: Vec<i32> = completions.iter().map(|c| c.attempt).collect();
    let statuses: Vec<&str> = completions.iter().map(|c| c.status.as_str()).collect();
    let results = column(|c| c.result.map(Value::to_string));
    let errors = column(|c| c.error.map(str::to_owned));
    let workers = column(|c| c.worker_id.map(str::to_owned));
    let logs: Vec<Option<String>> = completions
        .iter()
        .map(|c| c.logs.map(serde_json::to_string).transpose())
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Corrupt {
            what: "attempt logs",
            detail: e.to_string(),
        })?;
    let started: Vec<Option<DateTime<Utc>>> = completions.iter().map(|c| c.started_at).collect();
    let finished: Vec<Option<DateTime<Utc>>> = completions.iter().map(|c| c.finished_at).collect();
    // The states each completion may leave, as one comma-separated string
    // per row (arrays of arrays do not bind).
    let sources: Vec<String> = completions
        .iter()
        .map(|c| ExecutionStatus::source_names(c.status).join(","))
        .collect();
    let rows: Vec<CompletedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH i AS ( \
             SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], \
                                  $6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[], \
                                  $11::uuid[], $12::text[]) \
                 WITH ORDINALITY AS i(id, attempt, status, result, error, worker_id, started_at, \
                                      finished_at, sources, run, logs, ord) \
         ), r AS ( \
             SELECT w.id, w.status FROM workflow_executions w \
             WHERE w.id IN (SELECT run FROM i) ORDER BY w.id FOR KEY SHARE OF w \
         ), e AS ( \
             UPDATE executions x \
             SET status = i.status, result = i.result::jsonb, error = i.error, \
                 worker_id = COALESCE(i.worker_id, x.worker_id), \
                 started_at = COALESCE(x.started_at, i.started_at), \
                 finished_at = COALESCE(i.finished_at, clock_timestamp()), \
                 logs = i.logs::jsonb \
             FROM i JOIN r ON r.id = i.run \
             WHERE x.id = i.id AND x.attempt = i.attempt AND x.workflow_execution_id = r.id \
               AND x.status = ANY(string_to_array(i.sources, ',')) \
             RETURNING i.ord, {returned} \
         ), plain AS ( \
             SELECT DISTINCT ON (e.task_execution_id) e.task_execution_id AS id, e.result \
             FROM e \
             JOIN task_executions t ON t.id = e.task_execution_id \
             JOIN r ON r.id = e.workflow_execution_id \
             WHERE e.status = 'succeeded' AND NOT t.with_items AND r.status = 'running' \
               AND e.attempt > t.attempt_base \
         ), f AS ( \
             UPDATE task_executions t \
             SET status = 'succeeded', result = COALESCE(plain.result, 'null'::jsonb), \
                 items_succeeded = t.items_succeeded + 1, finished_at = clock_timestamp(), \
                 decided_at = COALESCE(t.decided_at, clock_timestamp()) \
             FROM plain WHERE t.id = plain.id AND t.status = ANY($10::text[]) \
             RETURNING {finished} \
         ), n AS ( \
             SELECT pg_notify($13, CASE WHEN length(runs) <= {max_payload} THEN runs ELSE '*' END) \
             FROM (SELECT string_agg(DISTINCT workflow_execution_id::text, ',') AS runs FROM e) s \
             WHERE runs IS NOT NULL \
         ), {cascade} \
         SELECT e.*, t.task_name, t.attempt_base, r.status AS run_status, w.definition_id, \
                w.workflow_name, w.input AS run_input, w.run_attempt AS run_round, \
                w.scheduled_at AS run_scheduled_at, \
                f.id IS NOT NULL AS task_finished, \
                CASE WHEN e.ord = (SELECT min(ord) FROM e) \
                     THEN (SELECT jsonb_agg(c) FROM cascade c) END AS cascade \
         FROM e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         JOIN workflow_executions w ON w.id = e.workflow_execution_id \
         JOIN r ON r.id = e.workflow_execution_id \
         LEFT JOIN f ON f.id = e.task_execution_id \
         WHERE (SELECT count(*) FROM n) >= 0",
        returned = crate::prefixed("x", EXECUTION_COLUMNS),
        max_payload = crate::inspect::MAX_NOTIFY_PAYLOAD,
        finished = tasks::finished_columns(),
        cascade = tasks::cascade(),
    )))
    .bind(&ids)
    .bind(&attempts)
    .bind(&statuses)
    .bind(&results)
    .bind(&errors)
    .bind(&workers)
    .bind(&started)
    .bind(&finished)
    .bind(&sources)
    .bind(TaskStatus::source_names(TaskStatus::Succeeded))
    .bind(&runs)
    .bind(&logs)
    .bind(crate::inspect::RUNS_CHANNEL)
    .fetch_all(&mut *conn)
    .await
    .context("recording completions")?;
    let mut recorded = Recorded {
        completions: completions.iter().map(|_| None).collect(),
        finished: Finished::default(),
    };
    for row in rows {
        if let Some(cascade) = row.cascade {
            recorded.finished = Finished::of(cascade.0)?;
        }
        let slot = usize::try_from(row.ord - 1)
            .ok()
            .and_then(|i| recorded.completions.get_mut(i))
            .ok_or_else(|| StoreError::Corrupt {
                what: "completion",
                detail: format!(
                    "the database returned completion #{} of {}",
                    row.ord,
                    completions.len()
                ),
            })?;
        *slot = Some(row.completed);
    }
    recorded.finished.release_locks(conn).await?;
    Ok(recorded)
}

/// An item that succeeded in an earlier round: a round that keeps items
/// keeps it if its input renders the same again.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Keepable {
    /// Its task.
    #[sqlx(try_from = "Uuid")]
    pub task_execution_id: TaskExecutionId,
    /// The item's position.
    pub item_index: i32,
    /// A successful execution of it.
    #[sqlx(try_from = "Uuid")]
    pub id: ExecutionId,
    /// The input that execution ran with.
    pub input: Value,
}

/// The successful executions of these tasks' items in earlier rounds
/// (attempts up to each task's `attempt_base`), by task and item, latest
/// first. Read only for the tasks `weft retry` marked `keep_items`.
///
/// # Errors
/// A database error.
pub async fn keepable(
    conn: &mut PgConnection,
    tasks: &[(TaskExecutionId, i32)],
) -> Result<Vec<Keepable>, StoreError> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = tasks.iter().map(|(t, _)| t.as_uuid()).collect();
    let bases: Vec<i32> = tasks.iter().map(|(_, b)| *b).collect();
    sqlx::query_as(
        "SELECT e.task_execution_id, e.item_index, e.id, e.input \
         FROM executions e JOIN UNNEST($1::uuid[], $2::int[]) AS t(id, base) ON e.task_execution_id = t.id \
         WHERE e.status = 'succeeded' AND e.attempt <= t.base AND e.item_index IS NOT NULL \
         ORDER BY e.task_execution_id, e.item_index, e.attempt DESC",
    )
    .bind(&ids)
    .bind(&bases)
    .fetch_all(conn)
    .await
    .context("reading the items earlier rounds finished")
}

/// Cancels the executions of a task that never started (pending items left
/// when an item failed).
///
/// # Errors
/// A database error.
pub async fn cancel_pending(
    conn: &mut PgConnection,
    task: TaskExecutionId,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE executions SET status = 'canceled', finished_at = clock_timestamp() \
         WHERE task_execution_id = $1 AND status = 'pending'",
    )
    .bind(task.as_uuid())
    .execute(conn)
    .await
    .context("canceling pending items")?;
    Ok(done.rows_affected())
}

/// Every execution of a run, for `weft status` and audits.
///
/// # Errors
/// A database error.
pub async fn for_run(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<Vec<ExecutionRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE workflow_execution_id = $1 \
         ORDER BY task_execution_id, item_index, attempt"
    )))
    .bind(run.as_uuid())
    .fetch_all(conn)
    .await
    .context("reading a run's executions")
}

/// The lowest-indexed item of a task that failed for good in its current
/// round (attempts after `attempt_base`).
///
/// # Errors
/// A database error.
pub async fn first_failure(
    conn: &mut PgConnection,
    task: TaskExecutionId,
    attempt_base: i32,
) -> Result<Option<FirstFailure>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        item_index: Option<i32>,
        item_label: Option<String>,
        error: Option<String>,
        status: String,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT item_index, item_label, error, status FROM executions \
         WHERE task_execution_id = $1 AND status IN ('failed', 'timed_out') AND attempt > $2 \
         ORDER BY item_index, attempt DESC LIMIT 1",
    )
    .bind(task.as_uuid())
    .bind(attempt_base)
    .fetch_optional(conn)
    .await
    .context("finding the first failed item")?;
    Ok(row.map(|row| FirstFailure {
        item_index: row.item_index.unwrap_or(0),
        item_label: row.item_label,
        error: row
            .error
            .unwrap_or_else(|| format!("execution ended `{}`", row.status)),
    }))
}

/// The first item of a task that failed for good: see [`first_failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstFailure {
    /// The item's position.
    pub item_index: i32,
    /// The item's value, abbreviated (`None` for a plain task, and for
    /// rows written before labels were kept).
    pub item_label: Option<String>,
    /// Its error, or the status it ended with.
    pub error: String,
}
