//! Looking inside a 10,000-item fan-out: the query layer behind `weft
//! status ID --task fan` and `weft logs ID fan`, and the two commands
//! themselves, end to end.
//!
//! ```text
//! cargo bench -p weft-tests --bench inspect [-- [--json]]
//! ```
//!
//! The data is generated in SQL on a fresh database: 20 finished runs,
//! each a plain task and a 10,000-item shell fan-out (200,000 executions
//! in all), every execution with an item label and logs (~120 bytes of
//! stdout, one line of stderr, an exit code); every 100th item failed
//! twice before it succeeded, so a run has 10,200 executions of `fan`.
//! Then `ANALYZE`, and on one run in the middle each read is measured
//! (p50, p95, p99 over many calls):
//! - `attempts(fan)` and `logs(fan)`: what the two commands read;
//! - `logs(all)`: `weft logs ID` without a task;
//! - `logs(fan) except all`: what a `--follow` re-read costs once it has
//!   shown every attempt (the list of those shown is sent each time);
//! - `weft status ID --task fan` and `weft logs ID fan` as processes
//!   (this build's binary, output to a pipe that is read and dropped):
//!   connect, read, render, print — what a user waits for.
//!
//! `cargo test --benches` runs it in a quick mode (2 runs of 200 items) as
//! a check that it works, never of its speed.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, ensure};
use weft_common::{ExecutionId, WorkflowExecutionId};
use weft_store::inspect::attempts::{self, AttemptFilter};
use weft_store::inspect::logs;
use weft_tests::process::weft_binary;
use weft_tests::report::Report;
use weft_tests::{Stack, StackOptions};

/// Sizes of one run of the bench.
struct Sizes {
    runs: i64,
    items: i64,
    calls: usize,
}

const FULL: Sizes = Sizes {
    runs: 20,
    items: 10_000,
    calls: 50,
};

const QUICK: Sizes = Sizes {
    runs: 2,
    items: 200,
    calls: 3,
};

/// The workflow every generated run runs (its definition row).
const WORKFLOW: &str = r#"
name: inspect
input: { n: 10000 }
tasks:
  prepare: { action: echo, input: { n: "{{ input.n }}" } }
  fan:
    needs: [prepare]
    action: shell
    with_items: "{{ range(input.n) | map('string') | map('format', 'file-%s.csv') | list }}"
    retry: { attempts: 3 }
    input: { command: ["process", "{{ item }}"] }
"#;

/// Fills the database. Run `g`'s id is `md5('run' || g)`; `$1` stands for
/// the definition's id, `$2` for the number of runs, `$3` for the items.
const FILL: &[&str] = &[
    "INSERT INTO workflow_executions (id, definition_id, workflow_name, status, input, \
         tasks_total, tasks_remaining, created_at, started_at, finished_at) \
     SELECT md5('run' || g)::uuid, $1, 'inspect', 'succeeded', '{}', 2, 0, \
            now() - interval '1 hour', now() - interval '1 hour', now() - interval '50 minutes' \
     FROM generate_series(1, $2::int) g",
    "INSERT INTO task_executions (id, workflow_execution_id, task_name, status, needs, needs_remaining, \
         with_items, allow_failure, items_total, items_dispatched, items_succeeded, successors, \
         decided_at, finished_at) \
     SELECT md5('task' || g || t.name)::uuid, md5('run' || g)::uuid, t.name, 'succeeded', t.needs, 0, \
            t.name = 'fan', false, t.items, t.items, t.items, t.successors, \
            now() - interval '1 hour', now() - interval '50 minutes' \
     FROM generate_series(1, $2::int) g \
     CROSS JOIN (VALUES ('prepare', '{}'::text[], '{fan}'::text[], 1), \
                        ('fan', '{prepare}', '{}', $3::int)) AS t(name, needs, successors, items)",
    // Every item's attempts: 3 for every 100th item (two failures), 1 for
    // the others; and the plain task's one.
    "INSERT INTO executions (id, task_execution_id, workflow_execution_id, item_index, attempt, status, \
         input, result, error, worker_id, timeout_ms, created_at, queued_at, started_at, finished_at, \
         item_label, logs) \
     SELECT gen_random_uuid(), md5('task' || g || 'fan')::uuid, md5('run' || g)::uuid, i, a, \
            CASE WHEN a < n THEN 'failed' ELSE 'succeeded' END, \
            jsonb_build_object('command', jsonb_build_array('process', 'file-' || i || '.csv')), \
            CASE WHEN a = n THEN jsonb_build_object('exit_code', 0, 'stdout', 'processed ' || i) END, \
            CASE WHEN a < n THEN '`process` failed with exit code 1: connection reset' END, \
            'worker-' || (i % 4), 30000, now() - interval '1 hour', now() - interval '1 hour', \
            now() - interval '1 hour' + i * interval '1 ms', \
            now() - interval '1 hour' + i * interval '1 ms' + interval '40 ms', \
            '\"file-' || i || '.csv\"', \
            jsonb_build_object( \
                'stdout', jsonb_build_object('text', 'reading file-' || i || '.csv\n' || \
                          repeat('processed a batch of 1,000 records\n', 3)), \
                'stderr', jsonb_build_object('text', CASE WHEN a < n THEN 'connection reset\n' \
                                                          ELSE 'warning: slow disk\n' END), \
                'exit_code', CASE WHEN a < n THEN 1 ELSE 0 END) \
     FROM generate_series(1, $2::int) g \
     CROSS JOIN generate_series(0, $3::int - 1) i \
     CROSS JOIN LATERAL (SELECT CASE WHEN i % 100 = 0 THEN 3 ELSE 1 END AS n) k \
     CROSS JOIN LATERAL generate_series(1, k.n) a",
    "INSERT INTO executions (id, task_execution_id, workflow_execution_id, attempt, status, input, result, \
         worker_id, created_at, queued_at, started_at, finished_at) \
     SELECT gen_random_uuid(), md5('task' || g || 'prepare')::uuid, md5('run' || g)::uuid, 1, 'succeeded', \
            '{}', '{}', 'worker-0', now() - interval '1 hour', now() - interval '1 hour', \
            now() - interval '1 hour', now() - interval '1 hour' \
     FROM generate_series(1, $2::int) g",
];

/// The percentiles reported of query times.
const PERCENTILES: &[(&str, f64)] = &[("p50", 0.50), ("p95", 0.95), ("p99", 0.99)];

/// Runs `$body` `$calls` times; evaluates to the durations in ms.
macro_rules! timed {
    ($calls:expr, $body:block) => {{
        let mut ms = Vec::with_capacity($calls);
        for _ in 0..$calls {
            let began = Instant::now();
            $body
            ms.push(began.elapsed().as_secs_f64() * 1000.0);
        }
        ms
    }};
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let quick = !args.iter().any(|a| a == "--bench");
    let json = args.iter().any(|a| a == "--json");
    let sizes = if quick { QUICK } else { FULL };
    let mut report = Report::new(json);
    let stack = Stack::start(StackOptions::bare())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let pool = stack.pool().await?;
        let began = Instant::now();
        let definition = weft_store::runs::definition_id(WORKFLOW);
        sqlx::query(
            "INSERT INTO workflow_definitions (id, name, source, origin) \
             VALUES ($1, 'inspect', $2, 'inspect.yaml')",
        )
        .bind(definition)
        .bind(WORKFLOW)
        .execute(&pool)
        .await?;
        for sql in FILL {
            let sql = sql
                .replace("$1", &format!("'{definition}'::uuid"))
                .replace("$2", &sizes.runs.to_string())
                .replace("$3", &sizes.items.to_string());
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&pool)
                .await
                .with_context(|| format!("filling: {sql}"))?;
        }
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        let executions: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
            .fetch_one(&pool)
            .await?;
        report.add("inspect fill", "executions", executions as f64, "rows");
        report.add("inspect fill", "took", began.elapsed().as_secs_f64(), "s");

        let run: uuid::Uuid = sqlx::query_scalar("SELECT md5('run' || $1::int)::uuid")
            .bind(i32::try_from(sizes.runs / 2 + 1)?)
            .fetch_one(&pool)
            .await?;
        let run = WorkflowExecutionId::from(run);
        let per_run = sizes.items + 2 * (sizes.items / 100);
        let scenario = format!("{} items", sizes.items);
        let fan = AttemptFilter {
            task: Some("fan"),
            ..AttemptFilter::default()
        };
        let mut conn = pool.acquire().await?;

        let samples = timed!(sizes.calls, {
            let rows = attempts::attempts(&mut conn, run, &fan).await?;
            ensure!(rows.len() as i64 == per_run, "{} attempts", rows.len());
        });
        report.percentiles(&format!("{scenario}: attempts(fan)"), &samples, PERCENTILES);

        let mut shown: Vec<ExecutionId> = Vec::new();
        let samples = timed!(sizes.calls, {
            let rows = logs::logs(&mut conn, run, &fan, &[]).await?;
            ensure!(rows.len() as i64 == per_run, "{} logs", rows.len());
            ensure!(rows.iter().all(|r| r.logs.is_some()), "logs missing");
            shown = rows.iter().map(|r| r.attempt.execution_id).collect();
        });
        report.percentiles(&format!("{scenario}: logs(fan)"), &samples, PERCENTILES);

        let samples = timed!(sizes.calls, {
            let rows = logs::logs(&mut conn, run, &AttemptFilter::default(), &[]).await?;
            ensure!(rows.len() as i64 == per_run + 1, "{} logs", rows.len());
        });
        report.percentiles(&format!("{scenario}: logs(all)"), &samples, PERCENTILES);

        let samples = timed!(sizes.calls, {
            let rows = logs::logs(&mut conn, run, &fan, &shown).await?;
            ensure!(rows.is_empty(), "{} logs not shown yet", rows.len());
        });
        report.percentiles(
            &format!("{scenario}: logs(fan) except all shown"),
            &samples,
            PERCENTILES,
        );
        drop(conn);

        let binary = weft_binary()?;
        let id = run.to_string();
        for (name, args) in [
            (
                "weft status ID --task fan",
                vec!["status", &id, "--task", "fan"],
            ),
            ("weft logs ID fan", vec!["logs", &id, "fan"]),
        ] {
            let samples = timed!(sizes.calls.min(20), {
                let out = Command::new(&binary)
                    .args(&args)
                    .env("WEFT_DATABASE_URL", &stack.database_url)
                    .env("RUST_LOG", "error")
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()?;
                ensure!(out.status.success(), "{name} failed");
                ensure!(
                    out.stdout.iter().filter(|b| **b == b'\n').count() as i64 >= per_run,
                    "{name} printed too little"
                );
            });
            report.percentiles(
                &format!("{scenario}: {name} (process)"),
                &samples,
                PERCENTILES,
            );
        }
        anyhow::Ok(())
    })?;
    report.finish();
    Ok(())
}
