//! End-to-end benchmarks of the engine on this machine's PostgreSQL and
//! RabbitMQ (`cargo bench -p weft-tests --bench engine`). Each scenario runs
//! on a fresh database and vhost with in-process daemons, checks its own
//! result (every run succeeded) and prints one line per figure.
//!
//! Latency is measured from the database's own timestamps (submit
//! transaction → run finished), so the harness's polling does not count.
//! Set `WEFT_BENCH_RUNS` / `WEFT_BENCH_TASKS` for shorter or longer runs.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::json;
use sqlx::PgPool;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_tests::{Stack, StackOptions, submit, wait_terminal};

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

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too, so
    // keep that run short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = env_usize("WEFT_BENCH_RUNS", if quick { 5 } else { 200 });
    let tasks = env_usize("WEFT_BENCH_TASKS", if quick { 50 } else { 5_000 });

    let stack = Stack::start(StackOptions {
        worker_concurrency: 32,
        ..StackOptions::default()
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let pool = stack.pool().await?;
        // Warm up: connections, caches, queue declarations.
        sequential(&pool, LINEAR4, 3).await?;
        let linear = sequential(&pool, LINEAR4, runs).await?;
        report("latency-linear4", &linear);
        let diamond = sequential(&pool, DIAMOND, runs).await?;
        report("latency-diamond", &diamond);
        let (n, elapsed) = throughput(&pool, NOOP, tasks).await?;
        println!(
            "throughput-noop-runs  tasks={n} elapsed={:.2}s  tasks/s={:.0}",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64()
        );
        anyhow::Ok(())
    })?;
    Ok(())
}

/// Submits runs one at a time, each after the previous finished; returns
/// each run's submit → finished latency.
async fn sequential(pool: &PgPool, yaml: &str, runs: usize) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(runs);
    for _ in 0..runs {
        let id = submit(pool, yaml, "bench.yaml", json!({})).await?;
        let run = wait_terminal(pool, id, Duration::from_secs(60)).await?;
        ensure!(
            run.status == WorkflowStatus::Succeeded,
            "run {id} ended {}: {:?}",
            run.status,
            run.error
        );
        let finished = run.finished_at.context("a finished run has finished_at")?;
        latencies.push((finished - run.created_at).to_std().unwrap_or_default());
    }
    Ok(latencies)
}

/// Submits `n` runs from 4 concurrent clients, waits for all; returns the
/// number of tasks and the time from the first start to the last finish.
async fn throughput(pool: &PgPool, yaml: &str, n: usize) -> anyhow::Result<(usize, Duration)> {
    let mut clients = Vec::new();
    for c in 0..4 {
        let pool = pool.clone();
        let yaml = yaml.to_owned();
        clients.push(tokio::spawn(async move {
            let mut ids: Vec<WorkflowExecutionId> = Vec::new();
            for _ in (c..n).step_by(4) {
                ids.push(submit(&pool, &yaml, "bench.yaml", json!({})).await?);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for c in clients {
        ids.extend(c.await??);
    }
    for id in &ids {
        let run = wait_terminal(pool, *id, Duration::from_secs(600)).await?;
        ensure!(
            run.status == WorkflowStatus::Succeeded,
            "run {id} ended {}",
            run.status
        );
    }
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let (first, last): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT min(created_at), max(finished_at) FROM workflow_executions WHERE id = ANY($1)",
        )
        .bind(&uuids)
        .fetch_one(pool)
        .await?;
    Ok((ids.len(), (last - first).to_std().unwrap_or_default()))
}

fn report(name: &str, samples: &[Duration]) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<22} runs={} p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms",
        ms.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        ms[ms.len() - 1]
    );
}
