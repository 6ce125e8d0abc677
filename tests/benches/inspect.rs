//! Looking inside a 10,000-item fan-out: the query layer behind `weft
//! status ID --task fan` and `weft logs ID fan`, and the two commands
//! themselves, end to end.
//!
//! ```text
//! cargo bench -p weft-tests --bench inspect [-- [--json]]
//! ```
//!
//! The data is generated in SQL on a fresh database
//! ([`weft_tests::fill::fan_out_runs`]): 20 finished runs,
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

use anyhow::ensure;
use weft_common::ExecutionId;
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
        weft_tests::fill::fan_out_runs(&pool, sizes.runs, sizes.items).await?;
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        let executions: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
            .fetch_one(&pool)
            .await?;
        report.add("inspect fill", "executions", executions as f64, "rows");
        report.add("inspect fill", "took", began.elapsed().as_secs_f64(), "s");

        let run = weft_tests::fill::fan_out_run_id(&pool, sizes.runs / 2 + 1).await?;
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
