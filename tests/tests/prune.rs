//! Bounded history: `weft prune` and the executor's retention delete
//! finished runs past their age with every row beneath them, and nothing
//! else — not a live run of any age, not a run finished recently, not a run
//! `weft retry` re-opens while the prune runs, not the outbox.
//!
//! Each test has its own database (a prune deletes every eligible run of
//! its database, so tests sharing one would delete each other's runs).

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_executor::{RetentionConfig, prune_once};
use weft_store::prune::{self, Pruned};
use weft_store::retry::{self, Reopened, Scope};
use weft_tests::process::{Daemon, weft_binary};
use weft_tests::{Stack, StackOptions};

const DAY: Duration = Duration::from_secs(86_400);

/// The rows a run holds in each table: (runs, tasks, executions).
async fn rows_of(pool: &PgPool, id: WorkflowExecutionId) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM workflow_executions WHERE id = $1), \
                (SELECT count(*) FROM task_executions WHERE workflow_execution_id = $1), \
                (SELECT count(*) FROM executions WHERE workflow_execution_id = $1)",
    )
    .bind(id.as_uuid())
    .fetch_one(pool)
    .await
    .expect("counting a run's rows")
}

/// A hand-made run in `status`, created and (when `finished_ago` is given)
/// finished that long ago, with two tasks and three executions (a plain
/// task and a fan-out of two items).
async fn crafted_run(
    pool: &PgPool,
    status: WorkflowStatus,
    finished_ago: Option<Duration>,
) -> WorkflowExecutionId {
    let id = WorkflowExecutionId::new();
    let definition = Uuid::new_v4();
    let finished = finished_ago.map(|d| d.as_secs_f64());
    sqlx::query(
        "WITH d AS ( \
             INSERT INTO workflow_definitions (id, name, source, origin) VALUES ($2, 'crafted', 'crafted', 'test') \
         ), r AS ( \
             INSERT INTO workflow_executions \
                 (id, definition_id, workflow_name, status, input, tasks_total, tasks_remaining, created_at, finished_at) \
             VALUES ($1, $2, 'crafted', $3, '{}', 2, 0, now() - interval '400 days', \
                     now() - make_interval(secs => $4)) \
         ), t AS ( \
             INSERT INTO task_executions (id, workflow_execution_id, task_name, needs, needs_remaining, \
                                          with_items, allow_failure, successors) \
             VALUES ($5, $1, 'one', '{}', 0, false, false, '{many}'), \
                    ($6, $1, 'many', '{one}', 0, true, false, '{}') \
         ) \
         INSERT INTO executions (id, task_execution_id, workflow_execution_id, item_index, attempt, status, input) \
         VALUES (gen_random_uuid(), $5, $1, NULL, 1, 'succeeded', '{}'), \
                (gen_random_uuid(), $6, $1, 0, 1, 'succeeded', '{}'), \
                (gen_random_uuid(), $6, $1, 1, 1, 'succeeded', '{}')",
    )
    .bind(id.as_uuid())
    .bind(definition)
    .bind(status.as_str())
    .bind(finished)
    .bind(Uuid::new_v4())
    .bind(Uuid::new_v4())
    .execute(pool)
    .await
    .expect("crafting a run");
    id
}

async fn prune_now(pool: &PgPool, older_than: Duration, dry_run: bool) -> Pruned {
    let mut conn = pool.acquire().await.expect("conn");
    prune::prune(&mut conn, older_than, prune::DEFAULT_BATCH, dry_run)
        .await
        .expect("prune")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_finished_long_ago_goes_with_all_its_rows_and_nothing_else_does() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    // Real runs, as the engine writes them: a fan-out and its join.
    let yaml = r#"
name: history
tasks:
  fan: { action: echo, with_items: [1, 2, 3], input: { v: "{{ item }}" } }
  join: { needs: [fan], action: echo, input: { n: "{{ tasks.fan.result | length }}" } }
"#;
    let old = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let recent = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    for id in [old, recent] {
        let run = stack
            .wait(&pool, id, Duration::from_secs(30))
            .await
            .expect("finishes");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    }
    sqlx::query(
        "UPDATE workflow_executions SET finished_at = finished_at - interval '2 days' WHERE id = $1",
    )
    .bind(old.as_uuid())
    .execute(&pool)
    .await
    .expect("age the run");
    // Live runs of any age stay: the status decides, not the timestamps
    // (these even carry an old `finished_at`, which a live run never has).
    let mut live = Vec::new();
    for status in [
        WorkflowStatus::Pending,
        WorkflowStatus::Running,
        WorkflowStatus::Canceling,
    ] {
        live.push(crafted_run(&pool, status, Some(100 * DAY)).await);
        live.push(crafted_run(&pool, status, None).await);
    }
    // A due message of the old run stays in the outbox.
    sqlx::query(
        "INSERT INTO outbox (exchange, routing_key, payload) \
         VALUES ('weft.events', 'workflow.finished', jsonb_build_object('workflow_execution_id', $1::uuid))",
    )
    .bind(old.as_uuid())
    .execute(&pool)
    .await
    .expect("an outbox row");
    let before = rows_of(&pool, old).await;
    assert_eq!(before, (1, 2, 4), "the old run's rows before the prune");

    let pruned = prune_now(&pool, DAY, false).await;
    assert_eq!(
        (pruned.runs, pruned.tasks, pruned.executions),
        (1, 2, 4),
        "exactly the old run's rows are reported"
    );
    assert_eq!(rows_of(&pool, old).await, (0, 0, 0), "the old run is gone");
    assert_eq!(
        rows_of(&pool, recent).await,
        (1, 2, 4),
        "a run finished recently stays"
    );
    for id in live {
        assert_eq!(rows_of(&pool, id).await, (1, 2, 3), "a live run stays");
    }
    let outbox: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE (payload->>'workflow_execution_id')::uuid = $1",
    )
    .bind(old.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("outbox");
    assert_eq!(outbox, 1, "the outbox is not pruned");
    // Nothing is left to prune: a second prune deletes nothing.
    assert_eq!(prune_now(&pool, DAY, false).await.runs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_counts_what_a_prune_then_deletes_and_deletes_nothing() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let mut old = Vec::new();
    for status in [
        WorkflowStatus::Succeeded,
        WorkflowStatus::Failed,
        WorkflowStatus::Canceled,
    ] {
        old.push(crafted_run(&pool, status, Some(3 * DAY)).await);
    }
    let recent = crafted_run(&pool, WorkflowStatus::Succeeded, Some(DAY / 2)).await;

    let dry = prune_now(&pool, DAY, true).await;
    assert_eq!((dry.runs, dry.tasks, dry.executions), (3, 6, 9));
    for id in old.iter().chain([&recent]) {
        assert_eq!(
            rows_of(&pool, *id).await,
            (1, 2, 3),
            "a dry run deletes nothing"
        );
    }
    let done = prune_now(&pool, DAY, false).await;
    assert_eq!(
        (done.runs, done.tasks, done.executions),
        (dry.runs, dry.tasks, dry.executions),
        "the dry run counted what the prune deleted"
    );
    for id in &old {
        assert_eq!(rows_of(&pool, *id).await, (0, 0, 0));
    }
    assert_eq!(rows_of(&pool, recent).await, (1, 2, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reopened_while_the_prune_runs_stays() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let reopened_later = crafted_run(&pool, WorkflowStatus::Failed, Some(3 * DAY)).await;
    let being_reopened = crafted_run(&pool, WorkflowStatus::Failed, Some(3 * DAY)).await;

    // Selected (counted) first, re-opened before the delete: it stays.
    let dry = prune_now(&pool, DAY, true).await;
    assert_eq!(dry.runs, 2);
    let mut conn = pool.acquire().await.expect("conn");
    assert!(matches!(
        retry::reopen(&mut conn, reopened_later, Scope::Tasks(&["one".to_owned()]))
            .await
            .expect("retry"),
        Reopened::Reopened { .. }
    ));

    // Re-opened by a retry that has not committed: its row is locked. The
    // prune neither waits for it nor deletes it.
    let mut retrying = pool.begin().await.expect("tx");
    assert!(matches!(
        retry::reopen(
            &mut retrying,
            being_reopened,
            Scope::Tasks(&["one".to_owned()])
        )
        .await
        .expect("retry"),
        Reopened::Reopened { .. }
    ));
    let pruned = tokio::time::timeout(Duration::from_secs(10), prune_now(&pool, DAY, false))
        .await
        .expect("the prune does not wait for the retry's lock");
    assert_eq!(pruned.runs, 0, "{pruned:?}");
    retrying.commit().await.expect("the retry commits");

    for id in [reopened_later, being_reopened] {
        assert_eq!(rows_of(&pool, id).await, (1, 2, 3), "a re-opened run stays");
        let status: String =
            sqlx::query_scalar("SELECT status FROM workflow_executions WHERE id = $1")
                .bind(id.as_uuid())
                .fetch_one(&pool)
                .await
                .expect("status");
        assert_eq!(status, WorkflowStatus::Running.as_str());
    }
    assert_eq!(prune_now(&pool, DAY, false).await.runs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_loop_prunes_in_batches_and_stops_between_them() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    for _ in 0..5 {
        crafted_run(&pool, WorkflowStatus::Succeeded, Some(3 * DAY)).await;
    }
    let kept = crafted_run(&pool, WorkflowStatus::Succeeded, Some(DAY / 2)).await;
    let config = RetentionConfig {
        batch: std::num::NonZeroU32::new(2).expect("2"),
        pause: Duration::from_millis(10),
        ..RetentionConfig::keeping(DAY)
    };
    // Shut down already: one batch, then it stops.
    let stopped = CancellationToken::new();
    stopped.cancel();
    let first = prune_once(&pool, &config, &stopped).await.expect("prune");
    assert_eq!((first.runs, first.executions), (2, 6));
    // Running: batch after batch (2, 2, then a short one) until none is left.
    let rest = prune_once(&pool, &config, &CancellationToken::new())
        .await
        .expect("prune");
    assert_eq!((rest.runs, rest.tasks, rest.executions), (3, 6, 9));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_executions")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 1);
    assert_eq!(rows_of(&pool, kept).await, (1, 2, 3));
}

/// The reads of one run find its executions through an index whatever
/// statuses they ask for, and with no status at all (`weft audit ID`,
/// `executions::for_run`, the cascade from a pruned run) — cancellation's `pending`/`queued` included, which
/// the partial index before migration 0007 could not serve (a scan of every
/// execution ever run) — and a prune finds finished runs by age. Sequential
/// scans are disabled so the plan shows whether an index *can* serve the
/// query, whatever this small table's statistics would prefer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_one_run_and_the_prune_scan_are_served_by_indexes() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let id = crafted_run(&pool, WorkflowStatus::Running, None).await;
    let mut tx = pool.begin().await.expect("tx");
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .expect("set");
    let cases = [
        (
            format!(
                "UPDATE executions SET status = 'canceled' \
                 WHERE workflow_execution_id = '{id}' AND status IN ('pending', 'queued')"
            ),
            "executions_run_status_idx",
        ),
        (
            format!(
                "SELECT id FROM executions WHERE workflow_execution_id = '{id}' AND status = 'running'"
            ),
            "executions_run_status_idx",
        ),
        (
            format!("SELECT * FROM executions WHERE workflow_execution_id = '{id}'"),
            "executions_run_status_idx",
        ),
        (
            "SELECT id FROM workflow_executions \
             WHERE status IN ('succeeded', 'failed', 'canceled') AND finished_at < now() \
             ORDER BY finished_at LIMIT 500"
                .to_owned(),
            "workflow_executions_finished_idx",
        ),
    ];
    for (sql, index) in cases {
        let plan: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (COSTS OFF) {sql}")))
                .fetch_all(&mut *tx)
                .await
                .expect("explain");
        let plan = plan.join("\n");
        // Another index may win on this tiny table (the partial index of
        // running executions, say); what must not happen is a scan of the
        // whole table.
        assert!(
            !plan.contains("Seq Scan"),
            "{sql}\nscans the table instead of using an index such as {index}:\n{plan}"
        );
    }
    tx.rollback().await.expect("rollback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_started_with_a_retention_prunes_in_the_background() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let old = crafted_run(&pool, WorkflowStatus::Failed, Some(3 * DAY)).await;
    let kept = crafted_run(&pool, WorkflowStatus::Failed, Some(DAY / 2)).await;
    let env = [
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
        ("WEFT_RETENTION", "1d"),
    ];
    let _executor = Daemon::start("executor", &["executor"], &env).expect("weft executor");
    // Its first pass runs as it starts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while rows_of(&pool, old).await != (0, 0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the executor's retention did not prune the old run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows_of(&pool, kept).await, (1, 2, 3));
}

#[test]
fn weft_prune_from_the_command_line() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (old, recent) = runtime.block_on(async {
        let pool = stack.pool().await.expect("pool");
        (
            crafted_run(&pool, WorkflowStatus::Succeeded, Some(40 * DAY)).await,
            crafted_run(&pool, WorkflowStatus::Failed, Some(DAY)).await,
        )
    });
    let weft = |args: &[&str]| {
        std::process::Command::new(weft_binary().expect("weft binary"))
            .args(args)
            .env("WEFT_DATABASE_URL", &stack.database_url)
            .env("RUST_LOG", "error")
            .output()
            .expect("weft runs")
    };
    let json = |args: &[&str]| -> Value {
        let out = weft(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };

    let dry = json(&["prune", "--older-than", "30d", "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        (&dry["runs"], &dry["tasks"], &dry["executions"]),
        (&json!(1), &json!(2), &json!(3))
    );
    let done = json(&["prune", "--older-than", "30d", "--json"]);
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["runs"], 1);
    let human = weft(&["prune", "--older-than", "12h"]);
    let line = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success());
    assert!(
        line.starts_with("deleted 1 run(s) finished before "),
        "{line}"
    );
    runtime.block_on(async {
        let pool = stack.pool().await.expect("pool");
        assert_eq!(rows_of(&pool, old).await, (0, 0, 0));
        assert_eq!(rows_of(&pool, recent).await, (0, 0, 0));
    });

    // A zero, negative or garbled duration is refused before anything runs,
    // naming the flag and what is wrong.
    for (bad, why) in [
        ("0s", "is zero"),
        ("-5d", "not a duration"),
        ("30", "no unit"),
        ("30 days", "not a unit"),
    ] {
        let out = weft(&["prune", "--older-than", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(
            stderr.contains("--older-than") && stderr.contains(why),
            "{bad}: {stderr}"
        );
    }
}
