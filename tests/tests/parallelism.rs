//! Run-wide parallelism (`parallelism: N`): at most N executions of a run
//! in flight at once, counted where it matters — by the workers, as the
//! actions run — with two executors and several workers, fan-outs and
//! plain tasks mixed, a task's `concurrency` below and above the run's
//! limit, retries, and completions delivered twice. Slots go out in task
//! order, then item order; `weft audit` checks the same from the
//! executions' recorded times, and catches a corrupted run.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_tests::{Stack, StackOptions, duplicate_completions};
use weft_worker::{ActionContext, ActionError, ActionRegistry};

/// What the workers saw of one run: actions in flight now and at most,
/// per run and per (run, task), and the order actions began in.
#[derive(Debug, Default)]
struct Gauge {
    now: HashMap<String, usize>,
    max: HashMap<String, usize>,
    began: HashMap<String, Vec<(String, Option<u32>)>>,
}

static GAUGE: Mutex<Option<Gauge>> = Mutex::new(None);

fn with_gauge<T>(f: impl FnOnce(&mut Gauge) -> T) -> T {
    f(GAUGE.lock().expect("lock").get_or_insert_default())
}

/// The built-ins and `gauge`: counts itself in flight for its run and its
/// task while it sleeps `ms`; fails its first attempt when `fail_first`,
/// and every attempt when `fail`.
fn gauged_actions() -> ActionRegistry {
    let mut registry = ActionRegistry::with_builtins();
    registry.register("gauge", |ctx: ActionContext| async move {
        let run = ctx.workflow_execution_id.to_string();
        let keys = [run.clone(), format!("{run}/{}", ctx.task_name)];
        with_gauge(|g| {
            for key in &keys {
                let now = g.now.entry(key.clone()).or_default();
                *now += 1;
                let now = *now;
                let max = g.max.entry(key.clone()).or_default();
                *max = (*max).max(now);
            }
            g.began
                .entry(run.clone())
                .or_default()
                .push((ctx.task_name.clone(), ctx.item_index));
        });
        let ms = ctx.input.get("ms").and_then(Value::as_u64).unwrap_or(50);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        with_gauge(|g| {
            for key in &keys {
                if let Some(now) = g.now.get_mut(key) {
                    *now -= 1;
                }
            }
        });
        let flag = |name: &str| ctx.input.get(name).and_then(Value::as_bool) == Some(true);
        if flag("fail") || (flag("fail_first") && ctx.attempt == 1) {
            return Err(ActionError::new("told to fail"));
        }
        Ok(json!({ "item": ctx.item_index }))
    });
    registry
}

/// Most of the run's (or `run/task`'s) actions the workers ran at once.
fn max_in_flight(key: &str) -> usize {
    with_gauge(|g| g.max.get(key).copied().unwrap_or(0))
}

/// Two executors, three workers of 8 slots each: far more room than any
/// limit below, so only the limit holds work back.
fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        Stack::start(StackOptions {
            executors: 2,
            workers: 3,
            worker_concurrency: 8,
            actions: gauged_actions,
            ..StackOptions::default()
        })
        .expect("stack")
    })
}

async fn audit(pool: &PgPool, id: WorkflowExecutionId) -> Vec<weft_store::audit::Violation> {
    let mut conn = pool.acquire().await.expect("conn");
    weft_store::audit::audit(&mut conn, Some(id), 60.0)
        .await
        .expect("audit")
}

async fn executions(pool: &PgPool, id: WorkflowExecutionId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM executions WHERE workflow_execution_id = $1")
        .bind(id.as_uuid())
        .fetch_one(pool)
        .await
        .expect("count")
}

const MIXED: &str = r#"
name: limited
parallelism: 3
tasks:
  first: { action: gauge, input: { ms: 30 } }
  fan:
    needs: [first]
    with_items: "{{ range(12) | list }}"
    action: gauge
    input: { ms: 80 }
  side: { needs: [first], action: gauge, input: { ms: 250 } }
  capped:
    needs: [first]
    with_items: "{{ range(6) | list }}"
    concurrency: 2
    action: gauge
    input: { ms: 80 }
  wide:
    needs: [first]
    with_items: "{{ range(6) | list }}"
    concurrency: 5
    action: gauge
    input: { ms: 80 }
  last:
    needs: [fan, side, capped, wide]
    action: gauge
    input: { ms: 10 }
output:
  fan: "{{ tasks.fan.result | length }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_run_has_more_executions_in_flight_than_its_parallelism() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(stack.submit(&pool, MIXED, json!({})).await.expect("submit"));
    }
    for id in &ids {
        let run = stack
            .wait(&pool, *id, Duration::from_secs(90))
            .await
            .expect("finishes");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
        assert_eq!(run.output, Some(json!({ "fan": 12 })));
        let run = id.to_string();
        let most = max_in_flight(&run);
        assert!(
            most <= 3,
            "run {run}: {most} actions at once, parallelism 3"
        );
        assert!(most >= 2, "run {run}: never more than {most} at once");
        // The task's own limit holds under the run's.
        let capped = max_in_flight(&format!("{run}/capped"));
        assert!(capped <= 2, "`capped` ran {capped} items at once");
        let began = with_gauge(|g| g.began.get(&run).map_or(0, Vec::len));
        assert_eq!(began, 1 + 12 + 1 + 6 + 6 + 1, "each action ran once");
        assert_eq!(executions(&pool, *id).await, 27);
        let violations = audit(&pool, *id).await;
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_go_out_in_task_order_then_item_order() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: one-at-a-time
parallelism: 1
tasks:
  a: { action: gauge, input: { ms: 10 } }
  b:
    needs: [a]
    with_items: [0, 1, 2, 3, 4]
    action: gauge
    input: { ms: 20 }
  c: { needs: [a], action: gauge, input: { ms: 10 } }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert_eq!(max_in_flight(&id.to_string()), 1);
    let began = with_gauge(|g| g.began.get(&id.to_string()).cloned().unwrap_or_default());
    let order: Vec<String> = began
        .iter()
        .map(|(task, item)| match item {
            Some(i) => format!("{task}{i}"),
            None => task.clone(),
        })
        .collect();
    // `b` before `c`: the workflow's order (topological, ties as written).
    assert_eq!(order, ["a", "b0", "b1", "b2", "b3", "b4", "c"]);
    let violations = audit(&pool, id).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_to_the_limit_and_failed_fan_outs_leave_nothing_waiting() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let retried = r#"
name: retried
parallelism: 2
tasks:
  fan:
    with_items: "{{ range(8) | list }}"
    action: gauge
    input: { ms: 40, fail_first: "{{ item % 2 == 1 }}" }
    retry: { attempts: 2, delay: 100ms }
"#;
    let failing = r#"
name: failing
parallelism: 2
tasks:
  fan:
    with_items: "{{ range(10) | list }}"
    action: gauge
    input: { ms: 40, fail: "{{ item == 2 }}" }
  plain: { action: gauge, input: { ms: 40 } }
"#;
    let ok = stack
        .submit(&pool, retried, json!({}))
        .await
        .expect("submit");
    let bad = stack
        .submit(&pool, failing, json!({}))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, ok, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert!(max_in_flight(&ok.to_string()) <= 2);
    assert_eq!(executions(&pool, ok).await, 8 + 4, "a retry per odd item");
    let violations = audit(&pool, ok).await;
    assert!(violations.is_empty(), "{violations:#?}");

    let run = stack
        .wait(&pool, bad, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Failed);
    assert!(max_in_flight(&bad.to_string()) <= 2);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE workflow_execution_id = $1 AND status = 'pending'",
    )
    .bind(bad.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(left, 0, "items left waiting after the fan-out failed");
    let violations = audit(&pool, bad).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_delivered_twice_free_each_slot_once() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let stop = CancellationToken::new();
    let copies = Arc::new(AtomicUsize::new(0));
    let duplicator = duplicate_completions(stack, copies.clone(), stop.clone())
        .await
        .expect("duplicator");
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(stack.submit(&pool, MIXED, json!({})).await.expect("submit"));
    }
    for id in &ids {
        let run = stack
            .wait(&pool, *id, Duration::from_secs(90))
            .await
            .expect("finishes");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
        let most = max_in_flight(&id.to_string());
        assert!(most <= 3, "{most} actions at once, parallelism 3");
        assert_eq!(executions(&pool, *id).await, 27);
        let violations = audit(&pool, *id).await;
        assert!(violations.is_empty(), "{violations:#?}");
    }
    stop.cancel();
    let _ = duplicator.await;
    assert!(
        copies.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "no completion was delivered twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_a_run_over_its_limit_and_one_left_waiting() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: audited
parallelism: 1
tasks:
  fan:
    with_items: [0, 1, 2]
    action: gauge
    input: { ms: 10 }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert!(audit(&pool, id).await.is_empty());

    // Every item dispatched at the first one's instant: three at once.
    sqlx::query(
        "UPDATE executions SET queued_at = (SELECT min(queued_at) FROM executions WHERE workflow_execution_id = $1) \
         WHERE workflow_execution_id = $1",
    )
    .bind(id.as_uuid())
    .execute(&pool)
    .await
    .expect("corrupt");
    let found = audit(&pool, id).await;
    assert!(
        found.iter().any(|v| v.check == "parallelism_respected"
            && v.detail
                .contains("3 of the run's executions were in flight at once")),
        "{found:#?}"
    );

    // A running run with an item waiting and nothing in flight: stuck.
    sqlx::query("UPDATE workflow_executions SET status = 'running' WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&pool)
        .await
        .expect("corrupt");
    sqlx::query("UPDATE task_executions SET status = 'running' WHERE workflow_execution_id = $1")
        .bind(id.as_uuid())
        .execute(&pool)
        .await
        .expect("corrupt");
    sqlx::query(
        "UPDATE executions SET status = 'pending', queued_at = NULL, finished_at = NULL \
         WHERE workflow_execution_id = $1 AND item_index = 2",
    )
    .bind(id.as_uuid())
    .execute(&pool)
    .await
    .expect("corrupt");
    let found = audit(&pool, id).await;
    assert!(
        found.iter().any(|v| v.check == "parallelism_respected"
            && v.detail
                .contains("task `fan` has 1 executions waiting for a run-wide slot")),
        "{found:#?}"
    );
}

/// Not a benchmark (debug build, shared machine): a 2,000-item fan-out
/// under a limit finishes, in a time of the order of the same fan-out
/// without one — serialising a run's completions on its row must not make
/// a wide fan-out pathological. Both times are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_fan_out_under_a_limit_is_not_pathological() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let wide = |limit: &str, concurrency: &str| {
        format!(
            "name: wide\n{limit}tasks:\n  fan:\n    with_items: \"{{{{ range(2000) | list }}}}\"\n{concurrency}    action: noop\n"
        )
    };
    let mut took = Vec::new();
    for (limit, concurrency) in [
        ("", ""),
        ("", "    concurrency: 16\n"),
        ("parallelism: 16\n", ""),
    ] {
        let started = Instant::now();
        let id = stack
            .submit(&pool, &wide(limit, concurrency), json!({}))
            .await
            .expect("submit");
        let run = stack
            .wait(&pool, id, Duration::from_secs(300))
            .await
            .expect("finishes");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
        took.push(started.elapsed());
        let violations = audit(&pool, id).await;
        assert!(violations.is_empty(), "{violations:#?}");
    }
    println!(
        "2,000-item fan-out of noop: no limit {:?}, concurrency 16 {:?}, parallelism 16 {:?}",
        took[0], took[1], took[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_explain_say_a_task_waits_for_a_run_wide_slot() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: held
parallelism: 1
tasks:
  slow: { action: gauge, input: { ms: 3000 } }
  held:
    with_items: [0, 1]
    action: gauge
    input: { ms: 10 }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    // `slow` comes first in the workflow's order: it takes the one slot.
    let deadline = Instant::now() + Duration::from_secs(20);
    let facts = loop {
        let mut conn = pool.acquire().await.expect("conn");
        let facts = weft_store::inspect::explain::run_facts(&mut conn, id, Duration::from_secs(30))
            .await
            .expect("facts")
            .expect("the run");
        if facts.in_flight == 1
            && facts
                .tasks
                .iter()
                .any(|t| t.name == "slow" && t.running == 1)
        {
            break facts;
        }
        assert!(Instant::now() < deadline, "`slow` never ran: {facts:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let explained = facts.explain();
    let held = explained
        .tasks
        .iter()
        .find(|t| t.task == "held")
        .expect("held");
    assert_eq!(held.status, "waiting");
    assert!(
        held.why
            .contains("2 items wait for a run-wide slot (parallelism 1, 1 in flight in the run)"),
        "{held:?}"
    );
    assert!(
        explained
            .run
            .ends_with("1 of 1 run-wide slots (`parallelism`) in use"),
        "{}",
        explained.run
    );
    let mut conn = pool.acquire().await.expect("conn");
    let summaries = weft_store::tasks::summaries(&mut conn, id)
        .await
        .expect("summaries");
    let shown: Vec<(&str, &str)> = summaries
        .iter()
        .map(|t| (t.task.task_name.as_str(), t.shown_status()))
        .collect();
    assert!(shown.contains(&("held", "waiting")), "{shown:?}");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
}

/// Executors killed (`SIGKILL`) and restarted at random while limited runs
/// are in flight: a transaction cut short frees and takes nothing, its
/// messages come again, and the survivor's fills still count every slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_executors_mid_run_never_lets_more_through() {
    use weft_tests::process::Daemon;

    // Workers in process (the gauge counts their actions); executors as
    // processes, to kill.
    let stack = Stack::start(StackOptions {
        executors: 0,
        workers: 3,
        worker_concurrency: 8,
        actions: gauged_actions,
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");
    let env = [
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
        ("WEFT_REAPER_INTERVAL", "0.5"),
    ];
    let mut executors: Vec<Daemon> = (0..2)
        .map(|i| Daemon::start(&format!("executor-{i}"), &["executor"], &env).expect("executor"))
        .collect();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(stack.submit(&pool, MIXED, json!({})).await.expect("submit"));
    }
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(30) {
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workflow_executions WHERE id = ANY($1) AND status NOT IN ('succeeded', 'failed', 'canceled')",
        )
        .bind(&uuids)
        .fetch_one(&pool)
        .await
        .expect("count");
        if unfinished <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300 + (kills % 3) * 150)).await;
        let victim = &mut executors[usize::try_from(kills % 2).unwrap_or(0)];
        victim.kill();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
        victim.restart().expect("restart");
    }
    assert!(
        kills > 0,
        "the runs finished before any executor was killed"
    );
    println!("{kills} executor kills while the runs were in flight");
    for id in &ids {
        let run = stack
            .wait(&pool, *id, Duration::from_secs(120))
            .await
            .expect("finishes");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
        let most = max_in_flight(&id.to_string());
        assert!(most <= 3, "{most} actions at once, parallelism 3");
        let violations = audit(&pool, *id).await;
        assert!(violations.is_empty(), "{violations:#?}");
    }
    drop(executors);
}

/// A child run is one execution of its parent: a parent limited to 1
/// runs its children one after another, while each child's own tasks run
/// side by side (the child has no limit of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_run_takes_one_slot_of_its_parent() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let dir = std::env::temp_dir().join(format!("weft-parallelism-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("parent.yaml"),
        "name: parent\nparallelism: 1\ntasks:\n  each:\n    with_items: [0, 1, 2]\n    workflow: child.yaml\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("child.yaml"),
        "name: child\ntasks:\n  left: { action: gauge, input: { ms: 300 } }\n  right: { action: gauge, input: { ms: 300 } }\n",
    )
    .expect("write");
    let id = weft_tests::submit_file(&pool, &dir.join("parent.yaml"), json!({}))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let children: Vec<(
        uuid::Uuid,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )> = sqlx::query_as(
        "SELECT id, started_at, finished_at FROM workflow_executions \
             WHERE parent_run_id = $1 ORDER BY started_at",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("children");
    assert_eq!(children.len(), 3);
    for pair in children.windows(2) {
        assert!(
            pair[0].2 <= pair[1].1,
            "child {} started before child {} ended",
            pair[1].0,
            pair[0].0
        );
    }
    for (child, _, _) in &children {
        assert_eq!(
            max_in_flight(&child.to_string()),
            2,
            "the child's own tasks ran side by side"
        );
    }
    let violations = audit(&pool, id).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

/// `weft retry` of a limited run whose fan-out failed: the new round
/// keeps the items that succeeded and runs the others, still within the
/// limit (kept items hold no slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_round_keeps_its_items_and_the_limit() {
    use weft_store::retry::{self, Reopened, Scope};

    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: again
parallelism: 2
tasks:
  fan:
    with_items: "{{ range(6) | list }}"
    action: gauge
    input: { ms: 30, fail_first: "{{ item == 3 }}" }
  after: { needs: [fan], action: gauge, input: { ms: 10 } }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Failed);
    let succeeded_first: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE workflow_execution_id = $1 AND status = 'succeeded'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("count");
    assert!(
        (3..=5).contains(&succeeded_first),
        "{succeeded_first} items succeeded"
    );

    let mut tx = pool.begin().await.expect("tx");
    let reopened = retry::reopen(&mut tx, id, Scope::Unfinished)
        .await
        .expect("retry");
    tx.commit().await.expect("commit");
    assert!(
        matches!(&reopened, Reopened::Reopened { round: 2, .. }),
        "{reopened:?}"
    );
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert!(max_in_flight(&id.to_string()) <= 2);
    let (kept, ran): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE e.kept_from IS NOT NULL), count(*) FILTER (WHERE e.kept_from IS NULL) \
         FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = 'fan' AND e.round = 2",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(kept, succeeded_first, "every success kept");
    assert_eq!(kept + ran, 6, "the others ran again, once each");
    let violations = audit(&pool, id).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_handlers_take_no_run_wide_slot() {
    // `parallelism: 1` holds the main fan-out to one item at a time; the
    // exit handlers run whatever holds the slots: all four of the
    // handler's items go out together, none waits for a slot.
    let yaml = r#"
name: limited-with-handlers
parallelism: 1
tasks:
  slow: { action: gauge, with_items: [0, 1, 2], input: { ms: 100 } }
on_exit:
  cleanup: { action: gauge, with_items: [0, 1, 2, 3], input: { ms: 1000 } }
"#;
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(90))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let run = id.to_string();
    let main = max_in_flight(&format!("{run}/slow"));
    assert_eq!(main, 1, "the main fan-out ran {main} items at once");
    let handlers = max_in_flight(&format!("{run}/cleanup"));
    assert_eq!(
        handlers, 4,
        "the exit handler's items waited for run-wide slots: at most {handlers} at once"
    );
    let began = with_gauge(|g| g.began.get(&run).map_or(0, Vec::len));
    assert_eq!(began, 3 + 4, "each action ran once");
    let violations = audit(&pool, id).await;
    assert!(violations.is_empty(), "{violations:#?}");
}
