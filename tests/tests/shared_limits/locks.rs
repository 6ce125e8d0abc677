//! Locks across runs taken by tasks (`mutex`, `semaphore`): a task in
//! line holds no worker slot, a holder's end — success, cancellation, its
//! worker killed — hands the lock to the next task in line, and only
//! tasks that take one are marked as holding claims.

#[allow(clippy::wildcard_imports)]
use super::*;

const MUTEXED: &str = r#"
name: mutexed
input: { seconds: 0.1 }
tasks:
  guarded: { action: sleep, mutex: "prod-db", input: { seconds: "{{ input.seconds }}" } }
"#;

async fn task_line(pool: &PgPool, id: WorkflowExecutionId, task: &str) -> String {
    let mut conn = pool.acquire().await.expect("conn");
    let facts = weft_store::inspect::explain::run_facts(&mut conn, id, Duration::from_secs(10))
        .await
        .expect("facts")
        .expect("the run");
    facts
        .explain()
        .tasks
        .into_iter()
        .find(|t| t.task == task)
        .map(|t| t.why)
        .unwrap_or_default()
}

/// Waits until `run` has an execution running (on some worker).
async fn until_running(pool: &PgPool, run: WorkflowExecutionId) {
    let started = Instant::now();
    loop {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM executions WHERE workflow_execution_id = $1 AND status = 'running'",
        )
        .bind(run.as_uuid())
        .fetch_one(pool)
        .await
        .expect("count");
        if running == 1 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{run} never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `waiter`'s `guarded` task is first in line for its lock.
async fn until_first_in_line(pool: &PgPool, waiter: WorkflowExecutionId) {
    let started = Instant::now();
    while !task_line(pool, waiter, "guarded")
        .await
        .contains("1st in line")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            task_line(pool, waiter, "guarded").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A run holding the `prod-db` mutex (its action sleeping `seconds`),
/// running, and a second run's task first in line for it.
async fn holder_and_waiter(
    stack: &Stack,
    pool: &PgPool,
    seconds: f64,
) -> (WorkflowExecutionId, WorkflowExecutionId) {
    let holder = stack
        .submit(pool, MUTEXED, json!({ "seconds": seconds }))
        .await
        .expect("submit");
    until_running(pool, holder).await;
    let waiter = stack
        .submit(pool, MUTEXED, json!({ "seconds": 0.1 }))
        .await
        .expect("submit");
    until_first_in_line(pool, waiter).await;
    (holder, waiter)
}

/// A task holding a `mutex` whose run is canceled releases it; the task
/// waiting for it (dispatched nothing meanwhile, `explain` naming the
/// holder) runs and its run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutex_held_by_a_canceled_run_goes_to_the_next_task() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let (holder, waiter) = holder_and_waiter(&stack, &pool, 30.0).await;
    let line = task_line(&pool, waiter, "guarded").await;
    assert!(
        line.contains(&format!(
            "1st in line for limit mutex prod-db (1 running: {holder})"
        )),
        "{line}"
    );
    // Waiting holds no worker slot: nothing of it was dispatched.
    let dispatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE workflow_execution_id = $1 AND queued_at IS NOT NULL",
    )
    .bind(waiter.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(dispatched, 0);

    // Only a task whose definition takes a lock is asked for a claim when
    // it ends: a claim of a task whose row says otherwise would never be
    // released, and the audit says so.
    let mark = |locks: bool| {
        sqlx::query("UPDATE task_executions SET locks = $2 WHERE workflow_execution_id = $1")
            .bind(holder.as_uuid())
            .bind(locks)
            .execute(&pool)
    };
    mark(false).await.expect("corrupt");
    let found = violations(&pool, holder).await;
    assert!(
        found.iter().any(|v| v.starts_with(
            "limit_claims_declared: task `guarded` holds lock `mutex prod-db` but its definition takes no lock"
        )),
        "{found:#?}"
    );
    mark(true).await.expect("repair");

    weft_store::cancel::request_committed(&pool, holder)
        .await
        .expect("cancel");
    let run = stack
        .wait(&pool, holder, Duration::from_secs(30))
        .await
        .expect("canceled");
    assert_eq!(run.status, WorkflowStatus::Canceled);
    let run = stack
        .wait(&pool, waiter, Duration::from_secs(30))
        .await
        .expect("the waiter runs");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    for id in [holder, waiter] {
        let found = violations(&pool, id).await;
        assert!(found.is_empty(), "{id}: {found:#?}");
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM limit_claims")
        .fetch_one(&pool)
        .await
        .expect("claims");
    assert_eq!(left, 0, "every lock released");
}

/// A `mutex` whose holder's worker is SIGKILLed mid-action, together with
/// one of the two executors (`weft` processes): the surviving executor's
/// reaper ends the silent attempt past the heartbeat grace, which ends the
/// holder's run and hands the lock to the task in line, exactly once: it
/// is dispatched once, runs on a new worker (which also gets the lost
/// worker's unacked dispatch back, to no effect) and succeeds; no lock is
/// left and the audit is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutex_whose_holder_s_worker_is_killed_is_released_by_the_reaper() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let env: Vec<(&str, &str)> = stack.fast_liveness_env().to_vec();
    let mut doomed = Daemon::start("executor-0", &["executor"], &env).expect("executor");
    let _survivor = Daemon::start("executor-1", &["executor"], &env).expect("executor");
    let mut lost = Daemon::start("worker-lost", &["worker"], &env).expect("worker");
    let (holder, waiter) = holder_and_waiter(&stack, &pool, 300.0).await;
    lost.kill();
    doomed.kill();
    // No worker until the reaper has ended the holder: a live one would
    // get the lost worker's unacked dispatch back from RabbitMQ and run it
    // again (at least once), which is not the path under test.
    let run = stack
        .wait(&pool, holder, Duration::from_secs(60))
        .await
        .expect("the holder is reaped");
    assert_eq!(run.status, WorkflowStatus::Failed);
    let _worker = Daemon::start("worker-new", &["worker"], &env).expect("worker");
    let run = stack
        .wait(&pool, waiter, Duration::from_secs(60))
        .await
        .expect("the waiter runs");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let (executions, attempts): (i64, i32) = sqlx::query_as(
        "SELECT count(*), max(attempt) FROM executions WHERE workflow_execution_id = $1",
    )
    .bind(waiter.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("executions");
    assert_eq!((executions, attempts), (1, 1), "the waiter ran once");
    for id in [holder, waiter] {
        let found = violations(&pool, id).await;
        assert!(found.is_empty(), "{id}: {found:#?}");
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM limit_claims")
        .fetch_one(&pool)
        .await
        .expect("claims");
    assert_eq!(left, 0, "every lock released");
}

const SEMAPHORED: &str = r#"
name: semaphored
tasks:
  before: { action: noop }
  work:
    needs: [before]
    action: sleep
    semaphore: { key: "shared-api", limit: 3 }
    input: { seconds: 0.3 }
"#;

/// Ten runs whose task takes a semaphore of 3: never more than 3 of those
/// actions running at once (from the executions' start and end times),
/// and 3 at once at some point; every run succeeds, the audit is clean,
/// and only that task's rows say it takes a lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_of_three_across_ten_runs_runs_three_at_a_time() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(
            stack
                .submit(&pool, SEMAPHORED, json!({}))
                .await
                .expect("submit"),
        );
    }
    for id in &ids {
        let run = stack
            .wait(&pool, *id, Duration::from_secs(60))
            .await
            .expect("every run finishes");
        assert_eq!(
            run.status,
            WorkflowStatus::Succeeded,
            "{id}: {:?}",
            run.error
        );
    }
    let uuids: Vec<Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let ran: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT e.started_at, e.finished_at FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = ANY($1) AND t.task_name = 'work'",
    )
    .bind(&uuids)
    .fetch_all(&pool)
    .await
    .expect("executions");
    assert_eq!(ran.len(), 10, "one execution per run");
    let most = most_at_once(&ran);
    assert_eq!(most, 3, "at most 3 at once, and 3 reached");
    for id in &ids {
        let found = violations(&pool, *id).await;
        assert!(found.is_empty(), "{id}: {found:#?}");
    }
    let found = global_audit(&pool).await;
    assert!(found.is_empty(), "{found:#?}");
    // Only the task that takes the semaphore is marked as one whose end
    // must release a claim; the end of `before` asks nothing.
    let marked: Vec<(String, bool, i64)> = sqlx::query_as(
        "SELECT task_name, locks, count(*) FROM task_executions \
         WHERE workflow_execution_id = ANY($1) GROUP BY task_name, locks ORDER BY task_name",
    )
    .bind(&uuids)
    .fetch_all(&pool)
    .await
    .expect("tasks");
    assert_eq!(
        marked,
        vec![
            ("before".to_owned(), false, 10),
            ("work".to_owned(), true, 10)
        ]
    );
}
