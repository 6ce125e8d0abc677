//! Concurrency limits shared across runs (`limit:`, ADR 0016): at most
//! `runs` runs per key running, measured from the runs' recorded start
//! and end times (the database's clock, in commit order); a slot freed by
//! any end — success, cancellation — goes to the next run in line in the
//! same transaction; `fair` shares a workflow-wide cap between keys;
//! executors killed while runs wait lose nothing; `weft audit` catches a
//! corrupted limit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_store::shared_limits::{self, Admission};
use weft_tests::process::Daemon;
use weft_tests::{Stack, StackOptions, violations};

#[path = "shared_limits/locks.rs"]
mod locks;

/// Each key's runs as (start, end), by the database's clock.
type Intervals = BTreeMap<String, Vec<(DateTime<Utc>, DateTime<Utc>)>>;

async fn intervals(pool: &PgPool, ids: &[WorkflowExecutionId]) -> Intervals {
    let uuids: Vec<Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT limit_key, started_at, finished_at FROM workflow_executions WHERE id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_all(pool)
    .await
    .expect("intervals");
    let mut by_key = Intervals::new();
    for (key, start, end) in rows {
        by_key.entry(key).or_default().push((start, end));
    }
    by_key
}

/// Most intervals overlapping at once (an end and a start at the same
/// instant: the end first).
fn most_at_once(intervals: &[(DateTime<Utc>, DateTime<Utc>)]) -> usize {
    let mut events: Vec<(DateTime<Utc>, i32)> = intervals
        .iter()
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

/// The 90th percentile of `values` (sorted in place).
fn p90(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let at = ((values.len() as f64) * 0.9).ceil() as usize;
    values[at.saturating_sub(1).min(values.len() - 1)]
}

async fn global_audit(pool: &PgPool) -> Vec<String> {
    let mut conn = pool.acquire().await.expect("conn");
    weft_store::audit::audit(&mut conn, None, 60.0)
        .await
        .expect("audit")
        .into_iter()
        .map(|v| format!("{}: {} ({})", v.check, v.detail, v.workflow_execution_id))
        .collect()
}

const FAIR: &str = r#"
name: limited-fair
input: { customer: null }
limit: { key: "{{ input.customer }}", runs: 2, runs_total: 6, order: fair }
tasks:
  work: { action: sleep, input: { seconds: 0.15 } }
"#;

/// 200 runs over 5 keys, submitted key by key (the last key's runs
/// arrive last), on three executor processes, one of them SIGKILLed while
/// runs wait: never more than 2 running per key nor 6 in all, every run
/// succeeds, `fair` gives each key's runs about the same wait, and the
/// audit finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_runs_over_five_keys_keep_their_limits_and_share_fairly() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let env = stack.fast_liveness_env();
    let mut executors: Vec<Daemon> = (0..3)
        .map(|i| Daemon::start(&format!("executor-{i}"), &["executor"], &env).expect("executor"))
        .collect();
    let _worker =
        Daemon::start("worker", &["worker", "--concurrency", "16"], &env).expect("worker");
    let keys = ["acme", "bolt", "corp", "dyne", "echo"];
    let mut ids = Vec::new();
    for key in keys {
        for _ in 0..40 {
            ids.push(
                stack
                    .submit(&pool, FAIR, json!({ "customer": key }))
                    .await
                    .expect("submit"),
            );
        }
    }
    // Kill an executor while most runs wait in line; it stays dead.
    let uuids: Vec<Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let started = Instant::now();
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workflow_executions WHERE id = ANY($1) AND status = 'succeeded'",
        )
        .bind(&uuids)
        .fetch_one(&pool)
        .await
        .expect("count");
        if done >= 30 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting: i64 =
        sqlx::query_scalar("SELECT count(*) FROM limit_claims WHERE state = 'waiting'")
            .fetch_one(&pool)
            .await
            .expect("waiting");
    assert!(
        waiting > 100,
        "most runs wait in line when an executor dies: {waiting}"
    );
    executors[0].kill();

    for id in &ids {
        let run = stack
            .wait(&pool, *id, Duration::from_secs(240))
            .await
            .expect("every run finishes");
        assert_eq!(
            run.status,
            WorkflowStatus::Succeeded,
            "run {id}: {:?}",
            run.error
        );
    }
    let by_key = intervals(&pool, &ids).await;
    assert_eq!(by_key.len(), 5, "{:?}", by_key.keys());
    let mut all = Vec::new();
    for (key, runs) in &by_key {
        assert_eq!(runs.len(), 40, "{key}");
        assert!(
            most_at_once(runs) <= 2,
            "{key}: {} running at once",
            most_at_once(runs)
        );
        all.extend(runs.iter().copied());
    }
    assert!(
        most_at_once(&all) <= 6,
        "{} running at once in all",
        most_at_once(&all)
    );
    // The wait of each run, submitted to started; each key's p90.
    let waits: Vec<(String, f64)> = sqlx::query_as(
        "SELECT limit_key, extract(epoch FROM started_at - created_at)::float8 \
         FROM workflow_executions WHERE id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_all(&pool)
    .await
    .expect("waits");
    let mut per_key: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (key, wait) in waits {
        per_key.entry(key).or_default().push(wait);
    }
    let p90s: BTreeMap<String, f64> = per_key
        .into_iter()
        .map(|(k, mut v)| (k, p90(&mut v)))
        .collect();
    let (lo, hi) = p90s
        .values()
        .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    eprintln!("per-key p90 wait (s): {p90s:?}");
    assert!(hi <= 2.0 * lo, "p90 waits not within 2x: {p90s:?}");
    let found = global_audit(&pool).await;
    assert!(found.is_empty(), "{found:#?}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM limit_claims")
        .fetch_one(&pool)
        .await
        .expect("claims");
    assert_eq!(left, 0, "every claim released");
}

const ONE_AT_A_TIME: &str = r#"
name: one-at-a-time
input: { target: null, seconds: 0.1 }
limit: { key: "{{ input.target }}", runs: 1 }
tasks:
  work: { action: sleep, input: { seconds: "{{ input.seconds }}" } }
"#;

async fn status_of(pool: &PgPool, id: WorkflowExecutionId) -> WorkflowStatus {
    let mut conn = pool.acquire().await.expect("conn");
    weft_store::runs::status(&mut conn, id, weft_store::runs::RunLock::None)
        .await
        .expect("status")
}

async fn wait_for(pool: &PgPool, id: WorkflowExecutionId, status: WorkflowStatus) {
    let started = Instant::now();
    while status_of(pool, id).await != status {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "run {id} never became {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn explain_line(pool: &PgPool, id: WorkflowExecutionId) -> String {
    let mut conn = pool.acquire().await.expect("conn");
    let facts = weft_store::inspect::explain::run_facts(&mut conn, id, Duration::from_secs(10))
        .await
        .expect("facts")
        .expect("the run");
    facts.explain().run
}

/// A run holding the only slot is canceled: its slot goes to the first in
/// line, which runs; a run canceled while it waits leaves the line; a
/// retry of a finished run is refused while the key is taken. `explain`
/// and `status` say who is in line behind whom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_holder_frees_its_slot_for_the_next_in_line() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let long = json!({ "target": "db", "seconds": 30 });
    let holder = stack
        .submit(&pool, ONE_AT_A_TIME, long.clone())
        .await
        .expect("submit");
    wait_for(&pool, holder, WorkflowStatus::Running).await;
    let next = stack
        .submit(&pool, ONE_AT_A_TIME, long.clone())
        .await
        .expect("submit");
    let started = Instant::now();
    while !explain_line(&pool, next).await.contains("1st in line") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            explain_line(&pool, next).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = stack
        .submit(&pool, ONE_AT_A_TIME, json!({ "target": "db" }))
        .await
        .expect("submit");
    // Another key is not held up.
    let other = stack
        .submit(&pool, ONE_AT_A_TIME, json!({ "target": "cache" }))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, other, Duration::from_secs(30))
        .await
        .expect("other key");
    assert_eq!(run.status, WorkflowStatus::Succeeded);
    let started = Instant::now();
    while !explain_line(&pool, last).await.contains("2nd in line") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            explain_line(&pool, last).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = explain_line(&pool, next).await;
    assert_eq!(
        line,
        format!("pending: 1st in line for limit target=db (1 running: {holder})")
    );
    let mut conn = pool.acquire().await.expect("conn");
    let status = weft_store::inspect::status::load(&mut conn, last)
        .await
        .expect("status")
        .expect("run");
    drop(conn);
    assert!(
        status
            .hints
            .iter()
            .any(|h| h.contains("2nd in line for limit target=db")),
        "{:?}",
        status.hints
    );
    assert!(
        explain_line(&pool, holder)
            .await
            .contains("holds a slot of limit target=db")
    );

    // Cancel the holder: the first in line starts; the last stays in line.
    weft_store::cancel::request_committed(&pool, holder)
        .await
        .expect("cancel");
    let run = stack
        .wait(&pool, holder, Duration::from_secs(30))
        .await
        .expect("canceled");
    assert_eq!(run.status, WorkflowStatus::Canceled);
    wait_for(&pool, next, WorkflowStatus::Running).await;
    assert_eq!(status_of(&pool, last).await, WorkflowStatus::Pending);
    assert!(explain_line(&pool, last).await.contains(&format!(
        "1st in line for limit target=db (1 running: {next})"
    )));

    // A finished run cannot be retried while its key's slot is taken.
    let refused =
        weft_store::retry::reopen_committed(&pool, holder, weft_store::retry::Scope::Unfinished)
            .await
            .expect("retry");
    let why = refused
        .outcome(holder)
        .expect_err("refused")
        .expect("a sentence");
    assert!(why.contains("limit target=db has no free slot"), "{why}");

    // Cancel the one in line: it leaves the line at once.
    weft_store::cancel::request_committed(&pool, last)
        .await
        .expect("cancel");
    let run = stack
        .wait(&pool, last, Duration::from_secs(30))
        .await
        .expect("canceled");
    assert_eq!(run.status, WorkflowStatus::Canceled);
    assert!(
        run.started_at.is_none(),
        "a run canceled in line never started"
    );
    // The second holder, canceled too, leaves the key free: the retry of
    // the first is accepted and runs under the limit.
    weft_store::cancel::request_committed(&pool, next)
        .await
        .expect("cancel");
    stack
        .wait(&pool, next, Duration::from_secs(30))
        .await
        .expect("canceled");
    let reopened =
        weft_store::retry::reopen_committed(&pool, holder, weft_store::retry::Scope::Unfinished)
            .await
            .expect("retry");
    assert!(reopened.outcome(holder).is_ok());
    assert!(
        explain_line(&pool, holder)
            .await
            .contains("holds a slot of limit target=db")
    );
    weft_store::cancel::request_committed(&pool, holder)
        .await
        .expect("cancel");
    stack
        .wait(&pool, holder, Duration::from_secs(30))
        .await
        .expect("canceled");

    for id in [holder, next, last, other] {
        let found = violations(&pool, id).await;
        assert!(found.is_empty(), "{id}: {found:#?}");
    }
    let found = global_audit(&pool).await;
    assert!(found.is_empty(), "{found:#?}");
}

/// A run whose key renders to nothing fails at its start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_renders_empty_fails_the_run_with_the_reason() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let id = stack
        .submit(&pool, ONE_AT_A_TIME, json!({ "target": " " }))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("ends");
    assert_eq!(run.status, WorkflowStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("`limit.key` ({{ input.target }}) rendered an empty string"),
        "{error}"
    );
}

/// Runs stored but never started (no executor): the test admits them
/// itself, as an executor's start would.
async fn pending_runs(stack: &Stack, pool: &PgPool, n: usize) -> Vec<WorkflowExecutionId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            stack
                .submit(pool, ONE_AT_A_TIME, json!({ "target": "db" }))
                .await
                .expect("submit"),
        );
    }
    ids
}

async fn admit(pool: &PgPool, ids: &[WorkflowExecutionId]) -> Vec<WorkflowExecutionId> {
    let mut tx = pool.begin().await.expect("tx");
    weft_store::runs::lock_pending(&mut tx, ids)
        .await
        .expect("lock");
    let admissions: Vec<Admission<'_>> = ids
        .iter()
        .map(|id| Admission {
            run: *id,
            scope: "one-at-a-time",
            key: "target=db",
            runs: 1,
            runs_total: None,
            fair: false,
        })
        .collect();
    let holding = shared_limits::admit(&mut tx, &admissions)
        .await
        .expect("admit");
    tx.commit().await.expect("commit");
    ids.iter()
        .copied()
        .filter(|id| holding.contains(id))
        .collect()
}

/// `weft audit` finds a slot held by a finished run, a claim of a run
/// whose row says it has no limit, counters that do not match the claims,
/// and a run left in line while a slot is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_catches_a_corrupted_limit() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let ids = pending_runs(&stack, &pool, 3).await;
    let holding = admit(&pool, &ids).await;
    assert_eq!(
        holding,
        vec![ids[0]],
        "the first in line holds the one slot"
    );
    // Admitting again changes nothing: a duplicated start.
    assert_eq!(admit(&pool, &ids).await, vec![ids[0]]);
    let found = global_audit(&pool).await;
    let limit_checks: Vec<&String> = found.iter().filter(|v| v.starts_with("limit_")).collect();
    assert!(limit_checks.is_empty(), "{limit_checks:#?}");

    // The holder ends without releasing (its end bypassed).
    sqlx::query(
        "UPDATE workflow_executions SET status = 'failed', finished_at = now() WHERE id = $1",
    )
    .bind(ids[0].as_uuid())
    .execute(&pool)
    .await
    .expect("corrupt");
    let found = violations(&pool, ids[0]).await;
    assert!(
        found.iter().any(|v| v.starts_with("limit_slots_released: run is failed but still holds a slot of limit `one-at-a-time` target=db")),
        "{found:#?}"
    );

    // A run in line whose row says it was never admitted under a limit:
    // its end would ask nothing and leave its claim.
    sqlx::query("UPDATE workflow_executions SET limit_key = NULL WHERE id = $1")
        .bind(ids[1].as_uuid())
        .execute(&pool)
        .await
        .expect("corrupt");
    let found = violations(&pool, ids[1]).await;
    assert!(
        found.iter().any(|v| v.starts_with("limit_claims_declared: run waits for a slot of limit `one-at-a-time` target=db but has no limit key")),
        "{found:#?}"
    );
    sqlx::query(
        "UPDATE workflow_executions w SET limit_key = c.key FROM limit_claims c \
         WHERE c.workflow_execution_id = w.id AND w.id = $1",
    )
    .bind(ids[1].as_uuid())
    .execute(&pool)
    .await
    .expect("repair");

    // A counter off by one.
    sqlx::query("UPDATE limit_keys SET waiters = waiters + 1")
        .execute(&pool)
        .await
        .expect("corrupt");
    let found = global_audit(&pool).await;
    assert!(
        found.iter().any(|v| v.starts_with("limit_counters_match_claims: limit `one-at-a-time` target=db counts 1 holding / 3 waiting")),
        "{found:#?}"
    );
    sqlx::query("UPDATE limit_keys SET waiters = waiters - 1")
        .execute(&pool)
        .await
        .expect("repair");

    // A slot free while runs wait: a grant was missed.
    sqlx::query("UPDATE limit_keys SET capacity = 3")
        .execute(&pool)
        .await
        .expect("corrupt");
    let found = violations(&pool, ids[1]).await;
    assert!(
        found.iter().any(|v| v.starts_with(
            "limit_no_idle_waiter: run is first in line for limit `one-at-a-time` target=db"
        )),
        "{found:#?}"
    );

    // The end of the holder through `end_many` releases and grants: the
    // next in line holds the slot, the line moves on.
    sqlx::query("UPDATE limit_keys SET capacity = 1")
        .execute(&pool)
        .await
        .expect("repair");
    sqlx::query(
        "UPDATE workflow_executions SET status = 'running', finished_at = NULL WHERE id = $1",
    )
    .bind(ids[0].as_uuid())
    .execute(&pool)
    .await
    .expect("repair");
    let mut tx = pool.begin().await.expect("tx");
    let ended = weft_store::runs::end_many(
        &mut tx,
        &[weft_store::runs::Ending {
            id: ids[0],
            workflow: "one-at-a-time",
            to: WorkflowStatus::Failed,
            output: None,
            error: Some("test"),
        }],
        None,
    )
    .await
    .expect("end");
    tx.commit().await.expect("commit");
    assert_eq!(ended.len(), 1);
    let states: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT workflow_execution_id, state FROM limit_claims ORDER BY seq")
            .fetch_all(&pool)
            .await
            .expect("claims");
    assert_eq!(
        states,
        vec![
            (ids[1].as_uuid(), "holding".to_owned()),
            (ids[2].as_uuid(), "waiting".to_owned())
        ]
    );
    // Its start message is in the outbox for the relays.
    let starts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE routing_key = 'workflow.submitted' \
         AND payload::text LIKE '%' || $1 || '%'",
    )
    .bind(ids[1].to_string())
    .fetch_one(&pool)
    .await
    .expect("outbox");
    assert!(starts >= 1, "the granted run's start is written");
    let found = global_audit(&pool).await;
    let limit_checks: Vec<&String> = found.iter().filter(|v| v.starts_with("limit_")).collect();
    assert!(limit_checks.is_empty(), "{limit_checks:#?}");
}
