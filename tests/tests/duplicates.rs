//! Two executors apply the same runs while every `execution.completed` is
//! delivered twice: no dispatch crosses the wire twice, no action runs
//! twice, and every run succeeds. (Rows the unique indexes forbid are not
//! counted: those counts could not fail.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_common::WorkflowStatus;
use weft_tests::{Stack, StackOptions, duplicate_completions, spy_dispatches};
use weft_worker::{ActionContext, ActionRegistry};

/// (run, task, item) → times its action ran, across the stack's workers.
type Ran = HashMap<(String, String, Option<u32>), usize>;
static RAN: Mutex<Option<Ran>> = Mutex::new(None);

/// The built-ins with `echo` and `noop` counting their runs in [`RAN`].
fn counting_actions() -> ActionRegistry {
    fn count(ctx: &ActionContext) {
        let key = (
            ctx.workflow_execution_id.to_string(),
            ctx.task_name.clone(),
            ctx.item_index,
        );
        *RAN.lock()
            .expect("lock")
            .get_or_insert_default()
            .entry(key)
            .or_default() += 1;
    }
    let mut registry = ActionRegistry::with_builtins();
    registry
        .register("echo", |ctx: ActionContext| async move {
            count(&ctx);
            Ok(ctx.input)
        })
        .register("noop", |ctx: ActionContext| async move {
            count(&ctx);
            Ok(serde_json::Value::Null)
        });
    registry
}

const WORKFLOW: &str = r#"
name: dup
tasks:
  start: { action: echo, input: { n: 3 } }
  fan:
    needs: [start]
    with_items: "{{ range(tasks.start.result.n * 4) | list }}"
    concurrency: 5
    action: echo
    input: { i: "{{ item }}" }
  left: { needs: [fan], action: noop }
  right: { needs: [fan], action: noop }
  join: { needs: [left, right], action: echo, input: { n: "{{ tasks.fan.result | length }}" } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_completions_with_two_executors_change_nothing() {
    let stack = Stack::start(StackOptions {
        executors: 2,
        actions: counting_actions,
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");

    let stop = CancellationToken::new();
    let duplicated = Arc::new(AtomicUsize::new(0));
    let duplicator = duplicate_completions(&stack, duplicated.clone(), stop.clone())
        .await
        .expect("duplicator");
    let (spy, wire) = spy_dispatches(&stack, "default", stop.clone())
        .await
        .expect("spy");

    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            stack
                .submit(&pool, WORKFLOW, json!({}))
                .await
                .expect("submit"),
        );
    }
    for id in &ids {
        let run = stack
            .wait(&pool, *id, Duration::from_secs(120))
            .await
            .expect("finishes");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    }
    stop.cancel();
    let _ = duplicator.await;
    let _ = spy.await;
    assert!(
        duplicated.load(Ordering::Relaxed) > 0,
        "no completion was duplicated"
    );

    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    // On the wire: each execution dispatched once, and nothing dispatched
    // that is not a committed row — a duplicated completion that slipped
    // past a guard would publish a second dispatch (the unique index would
    // refuse its row, not its message).
    let wire = wire.lock().expect("lock").clone();
    let mut on_wire: HashMap<uuid::Uuid, usize> = HashMap::new();
    for d in &wire {
        *on_wire.entry(d.execution_id.as_uuid()).or_default() += 1;
    }
    let twice: Vec<_> = on_wire.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "dispatched more than once: {twice:?}");
    let mut rows: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM executions WHERE workflow_execution_id = ANY($1)")
            .bind(&uuids)
            .fetch_all(&pool)
            .await
            .expect("executions");
    let mut dispatched: Vec<uuid::Uuid> = on_wire.into_keys().collect();
    rows.sort_unstable();
    dispatched.sort_unstable();
    assert_eq!(dispatched, rows, "the dispatches on the wire are the rows");
    assert_eq!(
        rows.len(),
        20 * (1 + 12 + 3),
        "one execution per item, no retries"
    );

    // What ran: each (run, task, item) once. Nothing crashed, so nothing
    // may run twice even at least once.
    // (The spy's probes ran too, under a run of their own.)
    let runs: std::collections::HashSet<String> = ids.iter().map(ToString::to_string).collect();
    let ran: Ran = RAN
        .lock()
        .expect("lock")
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|((run, _, _), _)| runs.contains(run))
        .collect();
    let again: Vec<_> = ran.iter().filter(|(_, n)| **n > 1).collect();
    assert!(again.is_empty(), "actions run more than once: {again:?}");
    assert_eq!(ran.len(), 20 * (1 + 12 + 3), "every item's action ran");

    let results: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT result FROM task_executions WHERE workflow_execution_id = ANY($1) AND task_name = 'join'",
    )
    .bind(&uuids)
    .fetch_all(&pool)
    .await
    .expect("results");
    assert_eq!(results.len(), 20);
    assert!(
        results.iter().all(|r| *r == json!({"n": 12})),
        "{results:?}"
    );
    let mut conn = pool.acquire().await.expect("conn");
    let violations = weft_store::audit::audit(&mut conn, None, 60.0)
        .await
        .expect("audit");
    assert!(violations.is_empty(), "{violations:#?}");
}
