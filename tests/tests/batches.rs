//! Group commit driven by hand: the engine applies batches of completions
//! (as the executor's batcher hands them over) with no daemon running, so
//! each batch's effect is checked exactly — duplicates inside a batch,
//! several items of a bounded fan-out freeing several slots at once, a
//! failure with tries left next to successes, run starts in one batch, and
//! one batch advancing several runs through their cascades at once.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use weft_common::message::{ExecutionCompleted, WorkflowSubmitted};
use weft_common::{ExecutionId, ExecutionStatus, WorkflowExecutionId, WorkflowStatus};
use weft_executor::{Applied, Engine, EngineConfig};
use weft_tests::{Stack, StackOptions, wait_for_queued};

const FAN: &str = r#"
name: batched
tasks:
  fan:
    with_items: "{{ range(5) | list }}"
    concurrency: 2
    action: echo
    input: { i: "{{ item }}" }
  flaky:
    action: fail
    retry: { attempts: 2, delay: 50ms }
  after: { needs: [fan], action: noop }
"#;

/// Queued executions of a run: (id, task, item, attempt).
async fn queued(
    pool: &PgPool,
    run: WorkflowExecutionId,
) -> Vec<(ExecutionId, String, Option<i32>, i32)> {
    sqlx::query_as::<_, (uuid::Uuid, String, Option<i32>, i32)>(
        "SELECT e.id, t.task_name, e.item_index, e.attempt FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE e.workflow_execution_id = $1 AND e.status = 'queued' \
         ORDER BY t.task_name, e.item_index, e.attempt",
    )
    .bind(run.as_uuid())
    .fetch_all(pool)
    .await
    .expect("queued executions")
    .into_iter()
    .map(|(id, task, item, attempt)| (ExecutionId::from(id), task, item, attempt))
    .collect()
}

fn completion(
    run: WorkflowExecutionId,
    (id, _, item, attempt): &(ExecutionId, String, Option<i32>, i32),
    status: ExecutionStatus,
) -> ExecutionCompleted {
    ExecutionCompleted {
        execution_id: *id,
        workflow_execution_id: run,
        attempt: u32::try_from(*attempt).expect("attempt"),
        status,
        result: (status == ExecutionStatus::Succeeded).then(|| json!({ "i": item })),
        error: (status != ExecutionStatus::Succeeded).then(|| "boom".to_owned()),
        worker_id: "by-hand".to_owned(),
        started_at: None,
        finished_at: Utc::now(),
        logs: None,
    }
}

/// A private database and vhost with no daemon, and an engine on it that
/// the test drives by hand.
async fn bare_engine() -> (Stack, PgPool, Engine) {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let engine = Engine::new(pool.clone(), EngineConfig::default());
    (stack, pool, engine)
}

/// A run's dispatch messages in the outbox: (messages, distinct executions).
async fn dispatches(pool: &PgPool, run: WorkflowExecutionId) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(DISTINCT payload->>'execution_id') FROM outbox \
         WHERE payload->>'workflow_execution_id' = $1::text AND payload->>'type' = 'dispatch'",
    )
    .bind(run.as_uuid())
    .fetch_one(pool)
    .await
    .expect("dispatches")
}

/// Applies completions as one batch; every one must apply.
async fn apply(engine: &Engine, batch: &[ExecutionCompleted]) -> Vec<Applied> {
    let refs: Vec<&ExecutionCompleted> = batch.iter().collect();
    engine
        .apply_completions(&refs)
        .await
        .into_iter()
        .map(|r| r.expect("completion"))
        .collect()
}

/// (task, item, attempt) of queued executions.
fn shape(queued: &[(ExecutionId, String, Option<i32>, i32)]) -> Vec<(&str, Option<i32>, i32)> {
    queued
        .iter()
        .map(|(_, t, i, n)| (t.as_str(), *i, *n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_apply_each_completion_once_and_free_every_slot() {
    let (stack, pool, engine) = bare_engine().await;
    let a = stack.submit(&pool, FAN, json!({})).await.expect("submit");
    let b = stack.submit(&pool, FAN, json!({})).await.expect("submit");

    // Two starts (and a duplicate) in one batch.
    let starts = [
        WorkflowSubmitted {
            workflow_execution_id: a,
        },
        WorkflowSubmitted {
            workflow_execution_id: b,
        },
        WorkflowSubmitted {
            workflow_execution_id: a,
        },
    ];
    let refs: Vec<&WorkflowSubmitted> = starts.iter().collect();
    let started: Vec<Applied> = engine
        .apply_starts(&refs)
        .await
        .into_iter()
        .map(|r| r.expect("start"))
        .collect();
    assert_eq!(
        started,
        [Applied::Changed, Applied::Changed, Applied::Duplicate]
    );

    // Run a: items 0 and 1 of `fan` and `flaky`'s first try are queued.
    let first = queued(&pool, a).await;
    assert_eq!(
        shape(&first),
        [("fan", Some(0), 1), ("fan", Some(1), 1), ("flaky", None, 1)]
    );

    // Both items succeed (one reported twice) and `flaky` fails with a try
    // left, all in one batch: two slots free at once, `flaky` is retried.
    let batch = [
        completion(a, &first[0], ExecutionStatus::Succeeded),
        completion(a, &first[1], ExecutionStatus::Succeeded),
        completion(a, &first[0], ExecutionStatus::Succeeded),
        completion(a, &first[2], ExecutionStatus::Failed),
    ];
    let (changed, duplicate) = (Applied::Changed, Applied::Duplicate);
    assert_eq!(
        apply(&engine, &batch).await,
        [changed, changed, duplicate, changed]
    );
    let second = queued(&pool, a).await;
    assert_eq!(
        shape(&second),
        [("fan", Some(2), 1), ("fan", Some(3), 1), ("flaky", None, 2)]
    );

    // The same batch again changes nothing.
    assert_eq!(apply(&engine, &batch).await, [duplicate; 4]);
    assert_eq!(queued(&pool, a).await.len(), 3);

    // The rest in one batch: `fan`'s last slot opens for item 4; `flaky`
    // fails for good.
    let batch = [
        completion(a, &second[0], ExecutionStatus::Succeeded),
        completion(a, &second[1], ExecutionStatus::Succeeded),
        completion(a, &second[2], ExecutionStatus::Failed),
    ];
    assert_eq!(apply(&engine, &batch).await, [changed; 3]);
    let last = queued(&pool, a).await;
    assert_eq!(shape(&last), [("fan", Some(4), 1)]);

    // The last item ends `fan`, which decides `after`.
    let batch = [completion(a, &last[0], ExecutionStatus::Succeeded)];
    assert_eq!(apply(&engine, &batch).await, [changed]);
    let after = queued(&pool, a).await;
    assert_eq!(shape(&after), [("after", None, 1)]);
    let batch = [completion(a, &after[0], ExecutionStatus::Succeeded)];
    assert_eq!(apply(&engine, &batch).await, [changed]);

    let (status, result): (String, Option<serde_json::Value>) = sqlx::query_as(
        "SELECT r.status, t.result FROM workflow_executions r \
         JOIN task_executions t ON t.workflow_execution_id = r.id AND t.task_name = 'fan' \
         WHERE r.id = $1",
    )
    .bind(a.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("run");
    assert_eq!(
        status,
        WorkflowStatus::Failed.as_str(),
        "`flaky` failed for good"
    );
    let items: Vec<i64> = result
        .expect("fan's result")
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r["i"].as_i64().expect("i"))
        .collect();
    assert_eq!(items, [0, 1, 2, 3, 4], "one result per item, in item order");
}

const DIAMOND: &str = r#"
name: batched-diamond
output: { total: "{{ tasks.d.result.n }}" }
tasks:
  a: { action: echo, input: { n: 1 } }
  b: { needs: [a], action: noop }
  c: { needs: [a], action: noop }
  d: { needs: [b, c], action: echo, input: { n: 2 } }
"#;

const SKIPPED: &str = r#"
name: batched-skipped
input: { go: null }
tasks:
  gate: { when: "{{ input.go }}", action: noop }
  then: { needs: [gate], action: noop }
"#;

/// A run's status.
async fn status(pool: &PgPool, run: WorkflowExecutionId) -> String {
    sqlx::query_scalar("SELECT status FROM workflow_executions WHERE id = $1")
        .bind(run.as_uuid())
        .fetch_one(pool)
        .await
        .expect("run status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_advances_several_runs_through_their_cascades() {
    let (stack, pool, engine) = bare_engine().await;
    let x = stack
        .submit(&pool, DIAMOND, json!({}))
        .await
        .expect("submit");
    let y = stack
        .submit(&pool, DIAMOND, json!({}))
        .await
        .expect("submit");
    let skipped = stack
        .submit(&pool, SKIPPED, json!({ "go": false }))
        .await
        .expect("submit");

    // Three runs start in one batch; the one whose only root is skipped
    // cascades to its end within the batch, without an execution.
    let starts: Vec<WorkflowSubmitted> = [x, y, skipped]
        .into_iter()
        .map(|workflow_execution_id| WorkflowSubmitted {
            workflow_execution_id,
        })
        .collect();
    let refs: Vec<&WorkflowSubmitted> = starts.iter().collect();
    for applied in engine.apply_starts(&refs).await {
        assert_eq!(applied.expect("start"), Applied::Changed);
    }
    assert_eq!(status(&pool, skipped).await, "succeeded");
    assert!(queued(&pool, skipped).await.is_empty());
    let (tasks, executions): (Vec<String>, i64) = sqlx::query_as(
        "SELECT array_agg(task_name || ' ' || status ORDER BY task_name), \
                (SELECT count(*) FROM executions WHERE workflow_execution_id = $1) \
         FROM task_executions WHERE workflow_execution_id = $1",
    )
    .bind(skipped.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("tasks");
    assert_eq!(tasks, ["gate skipped", "then skipped"]);
    assert_eq!(executions, 0);

    // `a` of both diamonds in one batch: `b` and `c` of each are queued.
    let mut batch = Vec::new();
    for run in [x, y] {
        let first = queued(&pool, run).await;
        assert_eq!(shape(&first), [("a", None, 1)]);
        batch.push(completion(run, &first[0], ExecutionStatus::Succeeded));
    }
    assert_eq!(apply(&engine, &batch).await, [Applied::Changed; 2]);

    // `b` and `c` of both in one batch: each `d` sees both of its needs
    // finish in one statement and is queued exactly once.
    let mut batch = Vec::new();
    for run in [x, y] {
        let middle = queued(&pool, run).await;
        assert_eq!(shape(&middle), [("b", None, 1), ("c", None, 1)]);
        batch.extend(
            middle
                .iter()
                .map(|e| completion(run, e, ExecutionStatus::Succeeded)),
        );
    }
    assert_eq!(apply(&engine, &batch).await, [Applied::Changed; 4]);

    // Both joins in one batch finish both runs, each with its output.
    let mut batch = Vec::new();
    for run in [x, y] {
        let last = queued(&pool, run).await;
        assert_eq!(shape(&last), [("d", None, 1)]);
        let mut done = completion(run, &last[0], ExecutionStatus::Succeeded);
        done.result = Some(json!({ "n": 2 }));
        batch.push(done);
    }
    assert_eq!(apply(&engine, &batch).await, [Applied::Changed; 2]);
    for run in [x, y] {
        let (status, output): (String, Option<serde_json::Value>) =
            sqlx::query_as("SELECT status, output FROM workflow_executions WHERE id = $1")
                .bind(run.as_uuid())
                .fetch_one(&pool)
                .await
                .expect("run");
        assert_eq!(status, "succeeded");
        assert_eq!(output, Some(json!({ "total": 2 })));
        let runs_of_d: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
             WHERE e.workflow_execution_id = $1 AND t.task_name = 'd'",
        )
        .bind(run.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("executions of d");
        assert_eq!(runs_of_d, 1, "the join ran once");
    }
    // Every counter agrees with the executions behind it (a plain task's
    // one execution is counted by the statement that finishes the task).
    let mut conn = pool.acquire().await.expect("connection");
    let violations = weft_store::audit::audit(&mut conn, None, 60.0)
        .await
        .expect("audit");
    assert!(violations.is_empty(), "{violations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_fan_out_and_a_narrow_one_both_queue_every_dispatch_once() {
    let (stack, pool, engine) = bare_engine().await;
    let yaml = r#"
name: widths
input: { n: null }
tasks:
  fan: { action: noop, with_items: "{{ range(input.n) | list }}" }
"#;
    // Wider than what the start dispatches itself (the engine streams the
    // rest right after the commit, a window per transaction), and narrow.
    let mut runs = Vec::new();
    for n in [5_000, 7] {
        let run = stack
            .submit(&pool, yaml, json!({ "n": n }))
            .await
            .expect("submit");
        runs.push((run, n));
    }
    let starts: Vec<WorkflowSubmitted> = runs
        .iter()
        .map(|(workflow_execution_id, _)| WorkflowSubmitted {
            workflow_execution_id: *workflow_execution_id,
        })
        .collect();
    let refs: Vec<&WorkflowSubmitted> = starts.iter().collect();
    for applied in engine.apply_starts(&refs).await {
        assert_eq!(applied.expect("start"), Applied::Changed);
    }
    for (run, n) in runs {
        wait_for_queued(&pool, run, n, Duration::from_secs(60))
            .await
            .expect("every item is queued");
        assert_eq!(dispatches(&pool, run).await, (n, n), "run of {n} items");
    }
}

/// A fan-out without `concurrency` dispatches its first window when it
/// starts and the engine streams the rest; if that stream is cut (the
/// executor stopped mid-way), the task's finished items claim the rest, so
/// every item still runs exactly once and the task ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_of_items_is_finished_by_the_items_that_finish() {
    let (stack, pool, engine) = bare_engine().await;
    let yaml = r#"
name: cut
tasks:
  fan: { action: echo, with_items: "{{ range(3000) | list }}", input: { i: "{{ item }}" } }
"#;
    let run = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let start = WorkflowSubmitted {
        workflow_execution_id: run,
    };
    assert_eq!(
        engine
            .apply_starts(&[&start])
            .await
            .pop()
            .expect("one")
            .expect("start"),
        Applied::Changed
    );
    // Wait for the stream, then cut it after item 499 by hand: the later
    // items back to pending, their dispatches gone.
    wait_for_queued(&pool, run, 3000, Duration::from_secs(60))
        .await
        .expect("the stream queues every item");
    let mut tx = pool.begin().await.expect("begin");
    for statement in [
        "UPDATE executions SET status = 'pending', queued_at = NULL \
         WHERE workflow_execution_id = $1 AND item_index >= 500",
        "UPDATE task_executions SET items_dispatched = 500 WHERE workflow_execution_id = $1",
        "DELETE FROM outbox WHERE (payload->>'item_index')::int >= 500 \
         AND payload->>'workflow_execution_id' = $1::text",
    ] {
        sqlx::query(statement)
            .bind(run.as_uuid())
            .execute(&mut *tx)
            .await
            .expect("cut the stream");
    }
    tx.commit().await.expect("commit");

    // Workers report by hand, 64 at a time: each batch claims as many new
    // items as it finished.
    let mut reported = 0;
    loop {
        let batch: Vec<ExecutionCompleted> = queued(&pool, run)
            .await
            .iter()
            .take(64)
            .map(|e| completion(run, e, ExecutionStatus::Succeeded))
            .collect();
        if batch.is_empty() {
            break;
        }
        reported += batch.len();
        assert!(reported <= 3000, "no item is dispatched twice");
        apply(&engine, &batch).await;
    }
    assert_eq!(reported, 3000, "every item ran");
    let status: String = sqlx::query_scalar("SELECT status FROM workflow_executions WHERE id = $1")
        .bind(run.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("run");
    assert_eq!(status, "succeeded");
    assert_eq!(
        dispatches(&pool, run).await,
        (3000, 3000),
        "one dispatch per item"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_start_ends_failed_and_says_so() {
    // A definition this executor cannot parse (stored by hand: a submit
    // validates first): the run fails at once, and like every run that
    // ends it writes its `workflow.finished` for `weft watch` and others.
    let (_stack, pool, engine) = bare_engine().await;
    let id = WorkflowExecutionId::new();
    let input = json!({});
    let mut conn = pool.acquire().await.expect("conn");
    weft_store::runs::submit(
        &mut conn,
        &weft_store::runs::NewRun {
            id,
            workflow_name: "broken",
            source: "name: broken\ntasks: [not, a, map]\n",
            origin: "by-hand.yaml",
            input: &input,
            tasks_total: 1,
            idempotency_key: None,
        },
    )
    .await
    .expect("store the run");
    let start = WorkflowSubmitted {
        workflow_execution_id: id,
    };
    let applied = engine.apply_starts(&[&start]).await;
    assert!(matches!(applied.as_slice(), [Ok(_)]), "{applied:?}");
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM workflow_executions WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("run");
    assert_eq!(status, "failed");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("by-hand.yaml:2:8")),
        "the reason is kept: {error:?}"
    );
    let finished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE payload->>'type' = 'workflow_finished' \
           AND (payload->>'workflow_execution_id')::uuid = $1",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("outbox");
    assert_eq!(finished, 1, "the run's end is announced");
}
