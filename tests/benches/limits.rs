//! What a shared limit's slot costs with a short and a long line: getting
//! a run in line (`shared_limits::admit`, the start of a limited run that
//! finds no free slot) and ending the holder (`runs::end_many`, which
//! releases its slot and grants it to the head of the line), each in a
//! transaction of its own, with 10 and with 10,000 runs waiting on the
//! key. The seed post-mortem was FIFO fairness that cost O(queue): the
//! two must cost the same (ratio ≤ 1.2).
//!
//! ```text
//! cargo test -p weft-tests --bench limits -- --bench [--json]
//! ```
//!
//! Without `--bench` (as `cargo test --benches` runs it) a quick mode
//! checks that it works, never its speed.

use std::time::Instant;

use anyhow::ensure;
use sqlx::PgPool;
use uuid::Uuid;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_store::runs::{self, Ending};
use weft_store::shared_limits::{self, Admission};
use weft_tests::report::Report;
use weft_tests::{Stack, StackOptions};

const SCOPE: &str = "bench-limit";
const KEY: &str = "customer=acme";

fn admission(run: WorkflowExecutionId) -> Admission<'static> {
    Admission {
        run,
        scope: SCOPE,
        key: KEY,
        runs: 1,
        runs_total: None,
        fair: false,
    }
}

/// `n` pending runs of a stored definition, inserted in one statement.
async fn pending_runs(pool: &PgPool, n: i64) -> anyhow::Result<Vec<WorkflowExecutionId>> {
    let definition = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO workflow_definitions (id, name, source, origin) \
         VALUES ($1, $2, 'name: bench-limit', 'bench') ON CONFLICT DO NOTHING",
    )
    .bind(definition)
    .bind(SCOPE)
    .execute(pool)
    .await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO workflow_executions (id, definition_id, workflow_name, input, tasks_total, tasks_remaining) \
         SELECT gen_random_uuid(), $1, $2, '{}'::jsonb, 1, 1 FROM generate_series(1, $3) \
         RETURNING id",
    )
    .bind(definition)
    .bind(SCOPE)
    .bind(n)
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().map(WorkflowExecutionId::from).collect())
}

/// Gets runs in line, in transactions of 500.
async fn admit_all(pool: &PgPool, runs: &[WorkflowExecutionId]) -> anyhow::Result<()> {
    for chunk in runs.chunks(500) {
        let mut tx = pool.begin().await?;
        runs::lock_pending(&mut tx, chunk).await?;
        let admissions: Vec<Admission<'_>> = chunk.iter().map(|r| admission(*r)).collect();
        shared_limits::admit(&mut tx, &admissions).await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn holder(pool: &PgPool) -> anyhow::Result<WorkflowExecutionId> {
    let id: Uuid = sqlx::query_scalar(
        "SELECT workflow_execution_id FROM limit_claims WHERE scope = $1 AND state = 'holding'",
    )
    .bind(SCOPE)
    .fetch_one(pool)
    .await?;
    Ok(id.into())
}

/// p50 of `ms`.
fn median(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

/// (acquire p50, release-and-grant p50) in ms with `waiting` runs in line.
async fn measure(pool: &PgPool, waiting: i64, calls: usize) -> anyhow::Result<(f64, f64)> {
    sqlx::query("DELETE FROM limit_scopes WHERE scope = $1")
        .bind(SCOPE)
        .execute(pool)
        .await?;
    let line = pending_runs(pool, waiting + 1).await?;
    admit_all(pool, &line).await?;
    // What autovacuum does on a live system: the setup's thousands of
    // updates of the key's row leave dead versions behind, which would
    // be measured instead of the line.
    for table in ["limit_claims", "limit_keys", "limit_scopes", "workflow_executions"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
            .execute(pool)
            .await?;
    }
    let fresh = pending_runs(pool, i64::try_from(calls)?).await?;
    let mut acquire = Vec::with_capacity(calls);
    for run in &fresh {
        let began = Instant::now();
        let mut tx = pool.begin().await?;
        runs::lock_pending(&mut tx, std::slice::from_ref(run)).await?;
        let holding = shared_limits::admit(&mut tx, &[admission(*run)]).await?;
        tx.commit().await?;
        acquire.push(began.elapsed().as_secs_f64() * 1000.0);
        ensure!(holding.is_empty(), "a run jumped the line");
    }
    // The line keeps its length while holders end: one more run gets in
    // line (untimed) after each.
    let refill = pending_runs(pool, i64::try_from(calls)?).await?;
    let mut release = Vec::with_capacity(calls);
    for more in &refill {
        let run = holder(pool).await?;
        let began = Instant::now();
        let mut tx = pool.begin().await?;
        let ended = runs::end_many(
            &mut tx,
            &[Ending {
                id: run,
                workflow: SCOPE,
                to: WorkflowStatus::Failed,
                output: None,
                error: Some("bench"),
            }],
            None,
        )
        .await?;
        tx.commit().await?;
        release.push(began.elapsed().as_secs_f64() * 1000.0);
        ensure!(ended.len() == 1, "the holder did not end");
        admit_all(pool, std::slice::from_ref(more)).await?;
    }
    // Every grant went to the head of the line, in arrival order.
    let order: Vec<WorkflowExecutionId> = line.iter().chain(&fresh).chain(&refill).copied().collect();
    let holder_now = holder(pool).await?;
    ensure!(
        holder_now == order[calls],
        "the slot went out of line order: {holder_now} is not {}",
        order[calls]
    );
    Ok((median(acquire), median(release)))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let json = args.iter().any(|a| a == "--json");
    let (long, calls) = if quick { (200, 5) } else { (10_000, 200) };
    let stack = Stack::start(StackOptions::bare())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = Report::new(json);
    runtime.block_on(async {
        let pool = stack.pool().await?;
        let (short_acquire, short_release) = measure(&pool, 10, calls).await?;
        let (long_acquire, long_release) = measure(&pool, long, calls).await?;
        let scenario = |what: &str, n: i64| format!("{what}, {n} waiting");
        report.add(&scenario("get in line", 10), "p50", short_acquire, "ms");
        report.add(&scenario("get in line", long), "p50", long_acquire, "ms");
        report.add(&scenario("end holder + grant", 10), "p50", short_release, "ms");
        report.add(&scenario("end holder + grant", long), "p50", long_release, "ms");
        report.add("get in line", "ratio", long_acquire / short_acquire, "x");
        report.add("end holder + grant", "ratio", long_release / short_release, "x");
        anyhow::Ok(())
    })?;
    report.finish();
    Ok(())
}
