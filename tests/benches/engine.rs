//! The engine benchmark suite, on this machine's PostgreSQL and RabbitMQ.
//!
//! ```text
//! cargo bench -p weft-tests --bench engine [-- [--json] [SCENARIO...]]
//! ```
//!
//! Every scenario runs on a fresh database and vhost against `weft executor`
//! and `weft worker` processes of this build (so each one's memory can be
//! measured), checks its own result (every run succeeded, every join ran
//! once with every item) and prints one line per figure — or, with
//! `--json`, one JSON array at the end. Scenarios: `latency` (linear4,
//! diamond, start-to-start), `throughput` (independent runs and one wide
//! `with_items`, 1 + 1 and 2 + 2 daemons), `fanout` (1k, 10k, 100k items,
//! unbounded and `concurrency: 500`), `upstream` (100,000 items over an
//! upstream task's result list vs the same over `range`), `results`
//! (100,000 items of ~1 KiB results each, read by a successor), `depth`
//! (dispatch latency with 100 and 100,000 executions parked in a queue
//! nobody consumes), `children` (a parent fanning out 1,000 child runs of
//! a 2-task workflow beside a plain fan-out of 2,000 items: the same
//! number of actions). Peak memory (RSS) of executors and workers is
//! reported with each daemon set.
//!
//! Durations come from the database's and the messages' own timestamps,
//! never from the harness's polling — except the `client` figures of the
//! latency scenario, which are the client's own clock on purpose: submit
//! call → the final result in hand, the way Celery's peer benchmark
//! (`scripts/peer/celery_bench.py`) measures itself, so the two engines
//! are compared both ways. `cargo test` runs this binary in a quick mode
//! (small sizes, seconds) as a check of its results, never of its speed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::ensure;
use serde_json::{Value, json};
use sqlx::PgPool;
use weft_common::{Workflow, WorkflowExecutionId};
use weft_store::runs::{self, NewRun};
use weft_tests::client::Client;
use weft_tests::fleet::{Daemons, Peaks};
use weft_tests::report::Report;
use weft_tests::{Stack, StackOptions, submit_via};

#[path = "engine/latency.rs"]
mod latency;
use latency::{SINGLE, latency, sequential};

const LINEAR4: &str = r#"
name: linear4
tasks:
  a: { action: echo, input: { v: 1 } }
  b: { needs: [a], action: echo, input: { v: "{{ tasks.a.result.v + 1 }}" } }
  c: { needs: [b], action: echo, input: { v: "{{ tasks.b.result.v + 1 }}" } }
  d: { needs: [c], action: echo, input: { v: "{{ tasks.c.result.v + 1 }}" } }
"#;

const DIAMOND: &str = r#"
name: diamond4
tasks:
  a: { action: echo, input: { v: 1 } }
  b: { needs: [a], action: echo, input: { v: "{{ tasks.a.result.v + 1 }}" } }
  c: { needs: [a], action: echo, input: { v: "{{ tasks.a.result.v + 2 }}" } }
  d: { needs: [b, c], action: echo, input: { v: "{{ tasks.b.result.v + tasks.c.result.v }}" } }
"#;

const NOOP: &str = "name: noop1\ntasks:\n  only: { action: noop }\n";

/// `n` noop items, then a join that counts them.
fn fan_out(concurrency: Option<usize>) -> String {
    let limit = concurrency.map_or(String::new(), |c| format!(", concurrency: {c}"));
    format!(
        r#"
name: fanout
input: {{ n: null }}
tasks:
  fan: {{ action: noop, with_items: "{{{{ range(input.n) | list }}}}"{limit} }}
  join: {{ needs: [fan], action: echo, input: {{ n: "{{{{ tasks.fan.result | length }}}}" }} }}
"#
    )
}

/// `n` items over a list, each item's input rendered from its item, then
/// a join that counts them; `head` runs first in both forms. `upstream`:
/// the list is `head`'s result (`{xs: [0, …, n-1]}`), so every item is
/// rendered in a context holding it — the shape whose cost once grew with
/// the square of the list; otherwise the same list comes from `range` and
/// `head`'s result is a number, so the two differ only in where the list
/// comes from.
fn listed(upstream: bool) -> String {
    let (head, items) = if upstream {
        (
            r#"{ xs: "{{ range(input.n) | list }}" }"#,
            "{{ tasks.head.result.xs }}",
        )
    } else {
        ("{ xs: 0 }", "{{ range(input.n) | list }}")
    };
    format!(
        r#"
name: listed
input: {{ n: null }}
tasks:
  head: {{ action: echo, input: {head} }}
  fan: {{ needs: [head], action: noop, input: {{ i: "{{{{ item }}}}" }}, with_items: "{items}" }}
  join: {{ needs: [fan], action: echo, input: {{ n: "{{{{ tasks.fan.result | length }}}}" }} }}
"#
    )
}

/// Bytes of padding in each item's result of [`big_results`]: with its
/// index and the keys, each result is ~1 KiB of JSON.
const PAD: usize = 1_000;

/// `n` `echo` items returning ~1 KiB each, then a join reading how many
/// results the fan-out has: the join's context holds all of them.
fn big_results() -> String {
    let pad = "x".repeat(PAD);
    format!(
        r#"
name: results
input: {{ n: null }}
tasks:
  fan: {{ action: echo, input: {{ i: "{{{{ item }}}}", pad: "{pad}" }}, with_items: "{{{{ range(input.n) | list }}}}" }}
  join: {{ needs: [fan], action: echo, input: {{ n: "{{{{ tasks.fan.result | length }}}}" }} }}
"#
    )
}

/// `n` noop items on a pool no worker consumes.
const PARKED: &str = r#"
name: parked
input: { n: null }
tasks:
  park: { action: noop, queue: parked, with_items: "{{ range(input.n) | list }}" }
"#;

/// Sizes of one run of the suite.
struct Sizes {
    latency_runs: usize,
    throughput_runs: usize,
    throughput_items: usize,
    fan_outs: Vec<usize>,
    /// Items of each `upstream` fan-out, and rounds of the pair.
    upstream: (usize, usize),
    /// Items of the `results` fan-out.
    result_items: usize,
    depths: (usize, usize),
    depth_runs: usize,
    children: usize,
}

impl Sizes {
    fn full() -> Self {
        Self {
            latency_runs: 200,
            throughput_runs: 20_000,
            throughput_items: 20_000,
            fan_outs: vec![1_000, 10_000, 100_000],
            upstream: (100_000, 2),
            result_items: 100_000,
            depths: (100, 100_000),
            depth_runs: 200,
            children: 1_000,
        }
    }

    fn quick() -> Self {
        Self {
            latency_runs: 5,
            throughput_runs: 100,
            throughput_items: 100,
            fan_outs: vec![10, 100],
            upstream: (100, 1),
            result_items: 100,
            depths: (10, 100),
            depth_runs: 5,
            children: 10,
        }
    }
}

/// The percentiles reported of latencies.
const PERCENTILES: &[(&str, f64)] = &[("p50", 0.50), ("p90", 0.90), ("p99", 0.99)];

/// Records the daemons' peak memory.
fn memory(report: &mut Report, scenario: &str, peaks: &Peaks) {
    report.add(scenario, "executor_rss", peaks.executor_mb, "MB");
    report.add(scenario, "worker_rss", peaks.worker_mb, "MB");
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then the suite runs in its quick mode.
    let quick = !args.iter().any(|a| a == "--bench");
    let json = args.iter().any(|a| a == "--json");
    let only: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let wanted = |name: &str| only.is_empty() || only.contains(&name);
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    let mut report = Report::new(json);
    let runtime = tokio::runtime::Runtime::new()?;
    if wanted("latency") {
        runtime.block_on(latency(&sizes, &mut report))?;
    }
    if wanted("throughput") {
        for (executors, workers) in [(1, 1), (2, 2)] {
            runtime.block_on(throughput(&sizes, executors, workers, &mut report))?;
        }
    }
    if wanted("fanout") {
        runtime.block_on(fanout(&sizes, &mut report))?;
    }
    if wanted("upstream") {
        runtime.block_on(upstream(&sizes, &mut report))?;
    }
    if wanted("results") {
        runtime.block_on(results(&sizes, &mut report))?;
    }
    if wanted("depth") {
        runtime.block_on(depth(&sizes, &mut report))?;
    }
    if wanted("children") {
        runtime.block_on(children(&sizes, &mut report))?;
    }
    report.finish();
    Ok(())
}

/// The child of the `children` scenario: two tasks in a row.
const CHILD: &str = "name: child2\ninput: { i: null }\noutput: \"{{ tasks.second.result }}\"\ntasks:\n  first: { action: noop }\n  second: { needs: [first], action: echo, input: { i: \"{{ input.i }}\" } }\n";

/// `n` child runs of [`CHILD`], one per item, then a join that counts them.
const PARENT: &str = "name: children\ninput: { n: null }\ntasks:\n  fan: { workflow: child2.yaml, with_items: \"{{ range(input.n) | list }}\", input: { i: \"{{ item }}\" } }\n  join: { needs: [fan], action: echo, input: { n: \"{{ tasks.fan.result | length }}\" } }\n";

/// A parent fanning out `n` child runs of a 2-task workflow, beside a plain
/// fan-out of `2n` items (as many actions), on the same daemons: what a
/// child run costs over the actions it runs.
async fn children(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let (stack, pool) = stack().await?;
    let daemons = Daemons::start(&stack, 1, 1)?;
    let n = sizes.children;
    let dir = std::env::temp_dir().join(format!(
        "weft-bench-children-{}",
        WorkflowExecutionId::new()
    ));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("children.yaml"), PARENT)?;
    std::fs::write(dir.join("child2.yaml"), CHILD)?;
    let plain = submit_via(
        &pool,
        None,
        &fan_out(None),
        "bench.yaml",
        json!({ "n": 2 * n }),
    )
    .await?;
    wait_all(&pool, &[plain], Duration::from_secs(900)).await?;
    let plain_seconds = check_join(&pool, plain, 2 * n).await?;
    let parent =
        weft_tests::submit_file(&pool, &dir.join("children.yaml"), json!({ "n": n })).await?;
    wait_all(&pool, &[parent], Duration::from_secs(900)).await?;
    // The join ran once over every child's output, and each child ran once.
    let (join, seconds): (Option<Value>, f64) = sqlx::query_as(
        "SELECT t.result, extract(epoch FROM t.finished_at - r.created_at)::float8 \
         FROM task_executions t JOIN workflow_executions r ON r.id = t.workflow_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = 'join'",
    )
    .bind(parent.as_uuid())
    .fetch_one(&pool)
    .await?;
    ensure!(
        join == Some(json!({ "n": n })),
        "the join saw {join:?}, not {n} children"
    );
    let succeeded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM workflow_executions WHERE parent_run_id = $1 AND status = 'succeeded'",
    )
    .bind(parent.as_uuid())
    .fetch_one(&pool)
    .await?;
    ensure!(
        usize::try_from(succeeded)? == n,
        "{succeeded} of {n} children succeeded"
    );
    report.add(
        &format!("fanout {} plain", 2 * n),
        "join_done",
        plain_seconds,
        "s",
    );
    report.add(
        &format!("children {n} x 2 tasks"),
        "join_done",
        seconds,
        "s",
    );
    report.add(
        &format!("children {n} x 2 tasks"),
        "vs plain",
        seconds / plain_seconds,
        "x",
    );
    let peaks = daemons.stop();
    memory(report, "children (1 executor + 1 worker)", &peaks);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A fresh database and vhost with no daemons, and a pool on it.
async fn stack() -> anyhow::Result<(Stack, PgPool)> {
    let stack = tokio::task::spawn_blocking(|| Stack::start(StackOptions::bare())).await??;
    let pool = stack.pool().await?;
    Ok((stack, pool))
}

/// Submits `n` runs of `yaml` in a few large transactions (no daemon needs
/// to be running).
async fn submit_many(
    pool: &PgPool,
    yaml: &str,
    input: &Value,
    n: usize,
) -> anyhow::Result<Vec<WorkflowExecutionId>> {
    let workflow = Workflow::parse(yaml, "bench.yaml").map_err(|d| anyhow::anyhow!("{d}"))?;
    let tasks_total = i32::try_from(workflow.tasks().count())?;
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let mut tx = pool.begin().await?;
        for _ in chunk {
            let new = NewRun {
                id: WorkflowExecutionId::new(),
                workflow_name: workflow.name(),
                source: yaml,
                origin: "bench.yaml",
                input,
                tasks_total,
                idempotency_key: None,
            };
            ids.push(runs::submit(&mut tx, &new).await?.id());
        }
        tx.commit().await?;
    }
    Ok(ids)
}

/// Waits until none of `ids` is still pending or running. Every scenario
/// has a database of its own, so the poll counts the open runs of the whole
/// database by the status index: cheap, where matching 20,000 ids twice a
/// second cost the engine a good part of a core (and a scan of every run,
/// ~4 ms a poll).
async fn wait_all(
    pool: &PgPool,
    ids: &[WorkflowExecutionId],
    timeout: Duration,
) -> anyhow::Result<()> {
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workflow_executions \
             WHERE status IN ('pending', 'running', 'canceling')",
        )
        .fetch_one(pool)
        .await?;
        if open == 0 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{open} of {} runs still open after {timeout:?}",
            ids.len()
        );
        // Durations come from the database's timestamps, not this loop.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM workflow_executions WHERE id = ANY($1) AND status <> 'succeeded'",
    )
    .bind(&uuids)
    .fetch_one(pool)
    .await?;
    ensure!(
        failed == 0,
        "{failed} of {} runs did not succeed",
        ids.len()
    );
    Ok(())
}

/// Seconds from the first run's start to the last run's end.
async fn span(pool: &PgPool, ids: &[WorkflowExecutionId]) -> anyhow::Result<f64> {
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let seconds: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 \
         FROM workflow_executions WHERE id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_one(pool)
    .await?;
    Ok(seconds)
}

/// A backlog of independent runs, then one wide `with_items`, drained by
/// daemons started after the backlog was stored.
async fn throughput(
    sizes: &Sizes,
    executors: usize,
    workers: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let set = format!("{executors}+{workers}");
    let runs = sizes.throughput_runs;
    drain(
        &format!("throughput-runs {set}"),
        (executors, workers),
        NOOP,
        &json!({}),
        runs,
        runs,
        report,
    )
    .await?;
    let items = sizes.throughput_items;
    drain(
        &format!("throughput-items {set}"),
        (executors, workers),
        &fan_out(None),
        &json!({ "n": items }),
        1,
        items,
        report,
    )
    .await
}

/// Stores `runs` runs (of `tasks` tasks in all), then starts the daemons
/// and lets them drain the backlog; reports tasks per second and memory.
async fn drain(
    scenario: &str,
    (executors, workers): (usize, usize),
    yaml: &str,
    input: &Value,
    runs: usize,
    tasks: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (stack, pool) = stack().await?;
    let ids = submit_many(&pool, yaml, input, runs).await?;
    let daemons = Daemons::start(&stack, executors, workers)?;
    wait_all(&pool, &ids, Duration::from_secs(900)).await?;
    let peaks = daemons.stop();
    // A single run is the fan-out: check its join saw every item.
    if runs == 1 {
        check_join(&pool, ids[0], tasks).await?;
    }
    let seconds = span(&pool, &ids).await?;
    report.add(scenario, "tasks/s", tasks as f64 / seconds, "tasks/s");
    report.add(scenario, "elapsed", seconds, "s");
    memory(report, scenario, &peaks);
    Ok(())
}

/// The join of a fan-out ran once, after every item, and counted them all.
async fn check_join(pool: &PgPool, id: WorkflowExecutionId, items: usize) -> anyhow::Result<f64> {
    let (executions, result, seconds): (i64, Option<Value>, f64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM executions WHERE task_execution_id = t.id), t.result, \
                extract(epoch FROM t.finished_at - r.created_at)::float8 \
         FROM task_executions t JOIN workflow_executions r ON r.id = t.workflow_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = 'join'",
    )
    .bind(id.as_uuid())
    .fetch_one(pool)
    .await?;
    ensure!(executions == 1, "the join ran {executions} times");
    ensure!(
        result == Some(json!({ "n": items })),
        "the join saw {result:?}, not {items} items"
    );
    let fanned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = 'fan' AND e.status = 'succeeded'",
    )
    .bind(id.as_uuid())
    .fetch_one(pool)
    .await?;
    ensure!(
        usize::try_from(fanned)? == items,
        "{fanned} of {items} items succeeded"
    );
    Ok(seconds)
}

async fn fanout(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let (stack, pool) = stack().await?;
    let daemons = Daemons::start(&stack, 1, 1)?;
    let mut client = Client::connect(&stack, &pool).await?;
    sequential(&mut client, &SINGLE, 3).await?;
    let mut times: BTreeMap<(Option<usize>, usize), f64> = BTreeMap::new();
    for concurrency in [None, Some(500)] {
        let label = concurrency.map_or("unbounded".to_owned(), |c| format!("concurrency {c}"));
        for &n in &sizes.fan_outs {
            let id = submit_via(
                &pool,
                Some(&client.publisher),
                &fan_out(concurrency),
                "bench.yaml",
                json!({ "n": n }),
            )
            .await?;
            wait_all(&pool, &[id], Duration::from_secs(900)).await?;
            let seconds = check_join(&pool, id, n).await?;
            report.add(&format!("fanout {n} {label}"), "join_done", seconds, "s");
            times.insert((concurrency, n), seconds);
        }
        if let [.., ten, hundred] = sizes.fan_outs[..]
            && let (Some(a), Some(b)) = (
                times.get(&(concurrency, ten)),
                times.get(&(concurrency, hundred)),
            )
        {
            report.add(
                &format!("fanout ratio {hundred}/{ten} {label}"),
                "ratio",
                b / a,
                "x",
            );
        }
    }
    let peaks = daemons.stop();
    memory(report, "fanout (1 executor + 1 worker)", &peaks);
    Ok(())
}

/// A fan-out over an upstream task's list against the same fan-out over
/// `range`, alternated `rounds` times on the same daemons: the per-item
/// cost must not depend on where the list came from (the target: within
/// 1.3×). Each is timed from `head`'s end (the moment the fan-out can be
/// decided, so rendering its items is inside) to the join's end.
async fn upstream(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let (stack, pool) = stack().await?;
    let daemons = Daemons::start(&stack, 1, 1)?;
    let mut client = Client::connect(&stack, &pool).await?;
    sequential(&mut client, &SINGLE, 3).await?;
    let (n, rounds) = sizes.upstream;
    let mut totals = [0.0_f64; 2];
    for round in 1..=rounds {
        for (form, upstream) in [("range", false), ("upstream", true)] {
            let id = submit_via(
                &pool,
                Some(&client.publisher),
                &listed(upstream),
                "bench.yaml",
                json!({ "n": n }),
            )
            .await?;
            wait_all(&pool, &[id], Duration::from_secs(900)).await?;
            check_join(&pool, id, n).await?;
            let seconds: f64 = sqlx::query_scalar(
                "SELECT extract(epoch FROM j.finished_at - h.finished_at)::float8 \
                 FROM task_executions j JOIN task_executions h \
                   ON h.workflow_execution_id = j.workflow_execution_id AND h.task_name = 'head' \
                 WHERE j.workflow_execution_id = $1 AND j.task_name = 'join'",
            )
            .bind(id.as_uuid())
            .fetch_one(&pool)
            .await?;
            let scenario = format!("items {n} over {form} #{round}");
            report.add(&scenario, "elapsed", seconds, "s");
            report.add(&scenario, "items/s", n as f64 / seconds, "items/s");
            totals[usize::from(upstream)] += seconds;
        }
    }
    report.add(
        &format!("items {n} upstream/range"),
        "ratio",
        totals[1] / totals[0],
        "x",
    );
    let peaks = daemons.stop();
    memory(report, "upstream (1 executor + 1 worker)", &peaks);
    Ok(())
}

/// A fan-out whose items return ~1 KiB each, read whole by its successor
/// (`tasks.fan.result | length`): the run must succeed with the join
/// counting every item, and the daemons' peak memory is the figure (the
/// target: executor ≤ 300 MB at 100,000 items).
async fn results(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let (stack, pool) = stack().await?;
    let daemons = Daemons::start(&stack, 1, 1)?;
    let mut client = Client::connect(&stack, &pool).await?;
    sequential(&mut client, &SINGLE, 3).await?;
    let n = sizes.result_items;
    let id = submit_via(
        &pool,
        Some(&client.publisher),
        &big_results(),
        "bench.yaml",
        json!({ "n": n }),
    )
    .await?;
    wait_all(&pool, &[id], Duration::from_secs(900)).await?;
    let peaks = daemons.stop();
    let seconds = check_join(&pool, id, n).await?;
    // What the join's context held: the fan-out's result as stored.
    let bytes: i64 = sqlx::query_scalar(
        "SELECT octet_length(result::text)::int8 FROM task_executions \
         WHERE workflow_execution_id = $1 AND task_name = 'fan'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await?;
    let scenario = format!("results {n} x 1 KiB");
    report.add(&scenario, "join_done", seconds, "s");
    report.add(&scenario, "items/s", n as f64 / seconds, "items/s");
    report.add(&scenario, "fan_result", bytes as f64 / 1e6, "MB");
    memory(report, &scenario, &peaks);
    Ok(())
}

/// Dispatch latency of single-task runs with executions parked in a queue
/// nobody consumes: the cost of a dispatch must not grow with the backlog.
async fn depth(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let (stack, pool) = stack().await?;
    let daemons = Daemons::start(&stack, 1, 1)?;
    let mut client = Client::connect(&stack, &pool).await?;
    sequential(&mut client, &SINGLE, 3).await?;
    let mut p50s = Vec::new();
    let mut parked = 0;
    for depth in [sizes.depths.0, sizes.depths.1] {
        let n = json!({ "n": depth - parked });
        submit_via(&pool, Some(&client.publisher), PARKED, "bench.yaml", n).await?;
        parked = depth;
        wait_parked(&pool, depth).await?;
        // The same warm-up at each depth: the first runs after parking
        // share the machine with the parking's aftermath (autovacuum of the
        // new rows, the broker writing the parked messages to disk).
        sequential(&mut client, &SINGLE, sizes.depth_runs / 5).await?;
        let latencies = sequential(&mut client, &SINGLE, sizes.depth_runs)
            .await?
            .engine;
        let scenario = format!("depth {depth} parked");
        report.percentiles(&scenario, &latencies, PERCENTILES);
        let mut sorted = latencies;
        sorted.sort_by(f64::total_cmp);
        p50s.push(sorted[sorted.len() / 2]);
    }
    report.add(
        &format!("depth ratio {}/{}", sizes.depths.1, sizes.depths.0),
        "p50_ratio",
        p50s[1] / p50s[0],
        "x",
    );
    daemons.stop();
    Ok(())
}

/// Waits until `n` executions are queued for the parked pool and every
/// message has left the outbox.
async fn wait_parked(pool: &PgPool, n: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let (queued, outbox): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM executions WHERE status = 'queued'), \
                    (SELECT count(*) FROM outbox)",
        )
        .fetch_one(pool)
        .await?;
        if usize::try_from(queued)? >= n && outbox == 0 {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "only {queued} of {n} executions parked ({outbox} messages unpublished)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
