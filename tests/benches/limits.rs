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

const KEY: &str = "customer=acme";

fn admission(scope: &str, run: WorkflowExecutionId) -> Admission<'_> {
    Admission {
        run,
        scope,
        key: KEY,
        runs: 1,
        runs_total: None,
        fair: false,
    }
}

/// `n` pending runs of a stored definition, inserted in one statement.
async fn pending_runs(
    pool: &PgPool,
    scope: &str,
    n: i64,
) -> anyhow::Result<Vec<WorkflowExecutionId>> {
    let definition = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO workflow_definitions (id, name, source, origin) \
         VALUES ($1, $2, 'name: bench-limit', 'bench') ON CONFLICT DO NOTHING",
    )
    .bind(definition)
    .bind(scope)
    .execute(pool)
    .await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO workflow_executions (id, definition_id, workflow_name, input, tasks_total, tasks_remaining) \
         SELECT gen_random_uuid(), $1, $2, '{}'::jsonb, 1, 1 FROM generate_series(1, $3) \
         RETURNING id",
    )
    .bind(definition)
    .bind(scope)
    .bind(n)
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().map(WorkflowExecutionId::from).collect())
}

/// Gets runs in line, in transactions of 500.
async fn admit_all(pool: &PgPool, scope: &str, runs: &[WorkflowExecutionId]) -> anyhow::Result<()> {
    for chunk in runs.chunks(500) {
        let mut tx = pool.begin().await?;
        runs::lock_pending(&mut tx, chunk).await?;
        let admissions: Vec<Admission<'_>> = chunk.iter().map(|r| admission(scope, *r)).collect();
        shared_limits::admit(&mut tx, &admissions).await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn holder(pool: &PgPool, scope: &str) -> anyhow::Result<WorkflowExecutionId> {
    let id: Uuid = sqlx::query_scalar(
        "SELECT workflow_execution_id FROM limit_claims WHERE scope = $1 AND state = 'holding'",
    )
    .bind(scope)
    .fetch_one(pool)
    .await?;
    Ok(id.into())
}

/// p50 of `ms`.
fn median(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

/// A key with `waiting` runs in line behind one holder, and runs to
/// get in line next.
struct Line {
    scope: String,
    order: Vec<WorkflowExecutionId>,
    fresh: Vec<WorkflowExecutionId>,
    refill: Vec<WorkflowExecutionId>,
    acquire: Vec<f64>,
    release: Vec<f64>,
}

async fn line(pool: &PgPool, scope: &str, waiting: i64, calls: usize) -> anyhow::Result<Line> {
    let order = pending_runs(pool, scope, waiting + 1).await?;
    admit_all(pool, scope, &order).await?;
    let n = i64::try_from(calls)?;
    Ok(Line {
        scope: scope.to_owned(),
        order,
        fresh: pending_runs(pool, scope, n).await?,
        refill: pending_runs(pool, scope, n).await?,
        acquire: Vec::with_capacity(calls),
        release: Vec::with_capacity(calls),
    })
}

/// One timed get-in-line of the `i`th fresh run.
async fn acquire(pool: &PgPool, line: &mut Line, i: usize) -> anyhow::Result<()> {
    let run = line.fresh[i];
    let began = Instant::now();
    let mut tx = pool.begin().await?;
    runs::lock_pending(&mut tx, std::slice::from_ref(&run)).await?;
    let holding = shared_limits::admit(&mut tx, &[admission(&line.scope, run)]).await?;
    tx.commit().await?;
    line.acquire.push(began.elapsed().as_secs_f64() * 1000.0);
    ensure!(holding.is_empty(), "a run jumped the line");
    Ok(())
}

/// One timed end of the holder (which grants the head), then one more
/// run in line, untimed: the line keeps its length.
async fn release(pool: &PgPool, line: &mut Line, i: usize) -> anyhow::Result<()> {
    let run = holder(pool, &line.scope).await?;
    let began = Instant::now();
    let mut tx = pool.begin().await?;
    let ended = runs::end_many(
        &mut tx,
        &[Ending {
            id: run,
            workflow: &line.scope,
            to: WorkflowStatus::Failed,
            output: None,
            error: Some("bench"),
        }],
        None,
    )
    .await?;
    tx.commit().await?;
    line.release.push(began.elapsed().as_secs_f64() * 1000.0);
    ensure!(ended.len() == 1, "the holder did not end");
    let more = line.refill[i];
    admit_all(pool, &line.scope, &[more]).await
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
        let mut short = line(&pool, "bench-short", 10, calls).await?;
        let mut long_line = line(&pool, "bench-long", long, calls).await?;
        // What autovacuum does on a live system: the setup's thousands of
        // updates of the keys' rows leave dead versions behind, which
        // would be measured instead of the line.
        for table in [
            "limit_claims",
            "limit_keys",
            "limit_scopes",
            "workflow_executions",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
                .execute(&pool)
                .await?;
        }
        // Interleaved, so both lines see the same load on the machine.
        for i in 0..calls {
            acquire(&pool, &mut short, i).await?;
            acquire(&pool, &mut long_line, i).await?;
        }
        for i in 0..calls {
            release(&pool, &mut short, i).await?;
            release(&pool, &mut long_line, i).await?;
        }
        for l in [&short, &long_line] {
            // Every grant went to the head of the line, in arrival order.
            let order: Vec<WorkflowExecutionId> = l
                .order
                .iter()
                .chain(&l.fresh)
                .chain(&l.refill)
                .copied()
                .collect();
            let now = holder(&pool, &l.scope).await?;
            ensure!(
                now == order[calls],
                "{}: the slot went out of line order",
                l.scope
            );
        }
        let (sa, la) = (
            median(short.acquire.clone()),
            median(long_line.acquire.clone()),
        );
        let (sr, lr) = (
            median(short.release.clone()),
            median(long_line.release.clone()),
        );
        let scenario = |what: &str, n: i64| format!("{what}, {n} waiting");
        report.add(&scenario("get in line", 10), "p50", sa, "ms");
        report.add(&scenario("get in line", long), "p50", la, "ms");
        report.add(&scenario("end holder + grant", 10), "p50", sr, "ms");
        report.add(&scenario("end holder + grant", long), "p50", lr, "ms");
        report.add("get in line", "ratio", la / sa, "x");
        report.add("end holder + grant", "ratio", lr / sr, "x");
        anyhow::Ok(())
    })?;
    report.finish();
    Ok(())
}
