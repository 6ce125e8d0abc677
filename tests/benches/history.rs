//! Reads on a big history: `weft status`, `cancel`, `audit ID` and `list`
//! on a database holding 1,000,000 executions of finished runs, and what
//! `weft prune` deletes per second there.
//!
//! ```text
//! cargo bench -p weft-tests --bench history [-- [--json] [before] [after] [prune] [explain]]
//! ```
//!
//! The history is generated in SQL (`INSERT … SELECT generate_series`) on a
//! fresh database: 10,000 finished runs (90 % succeeded, 8 % failed, 2 %
//! canceled, created over the last 35 days), each with 5 tasks — a plain
//! task, a 96-item fan-out, and three plain tasks after it — so 100
//! executions a run, plus 20 live runs half-way through their fan-out
//! (40 items succeeded, 8 running, 8 queued, 40 pending). Then `ANALYZE`,
//! and each read is measured (p50, p95, p99 over many calls, each on
//! another run) through the store functions the CLI calls:
//! - `status`: `runs::get`, `tasks::summaries`, `runs::definition` (what
//!   `weft status ID` reads), and `executions::for_run` on its own;
//! - `cancel`: `cancel::request` on a live run, in a transaction rolled
//!   back so every call finds the run live;
//! - `audit`: `audit::audit` of one run;
//! - `list`: `runs::list`, the newest 20, and the newest 20 `running`.
//!
//! `after` measures with this build's indexes, `before` with the indexes
//! of migration 0006 (the full `(workflow_execution_id, status)` and the
//! `finished_at` index dropped, the partial live index back) and fewer
//! calls, since several of those reads scan the whole table. `prune`
//! deletes the oldest 10 % of the history the way `weft prune` does.
//! `explain` adds two runs of a 10,000-item fan-out (one live: 6,000 items
//! done, 16 in flight, a retry scheduled, the rest pending; one finished)
//! and measures what `weft explain` reads (`inspect::explain::run_facts`,
//! then the sentences), and the `weft explain ID` process end to end. Each
//! part prints the plans of cancellation's statements. `cargo test
//! --benches` runs this binary in a quick mode (100 runs) as a check that
//! it works, never of its speed.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use sqlx::PgPool;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_store::cancel::{self, Requested};
use weft_store::{audit, executions, prune, runs, tasks};
use weft_tests::report::Report;
use weft_tests::{Stack, StackOptions};

/// Sizes of one run of the bench.
struct Sizes {
    runs: i64,
    live: i64,
    /// Calls per read with this build's indexes.
    calls: usize,
    /// Calls per read with the old ones (some reads then scan everything).
    calls_before: usize,
}

const FULL: Sizes = Sizes {
    runs: 10_000,
    live: 20,
    calls: 200,
    calls_before: 20,
};

const QUICK: Sizes = Sizes {
    runs: 100,
    live: 4,
    calls: 5,
    calls_before: 3,
};

/// The workflow every generated run runs (its definition row).
const WORKFLOW: &str = r#"
name: history
tasks:
  prepare: { action: echo, input: { batch: 96 } }
  fan: { needs: [prepare], action: echo, with_items: "{{ range(96) | list }}", input: { v: "{{ item }}" } }
  join: { needs: [fan], action: echo, input: { n: "{{ tasks.fan.result | length }}" } }
  report: { needs: [join], action: echo, input: { n: "{{ tasks.join.result.n }}" } }
  notify: { needs: [report], action: noop }
"#;

/// Fills the database: the finished history, then the live runs. Run `g`'s
/// id is `md5('run' || g)`, its tasks' `md5('task' || g || name)`; runs
/// numbered above `sizes.runs` are live.
/// `$1` stands for the definition's id, `$3` for the number of finished
/// runs, `$4` for the number of live ones (spliced in: they are ours).
const FILL: &[&str] = &[
    "CREATE TEMP TABLE shape (name text, needs text[], successors text[], with_items boolean, items int, pos int)",
    "INSERT INTO shape VALUES \
        ('prepare', '{}', '{fan}', false, 1, 0), ('fan', '{prepare}', '{join}', true, 96, 1), \
        ('join', '{fan}', '{report}', false, 1, 2), ('report', '{join}', '{notify}', false, 1, 3), \
        ('notify', '{report}', '{}', false, 1, 4)",
    // Finished runs, one every ~5 minutes back from now, oldest first.
    "INSERT INTO workflow_executions (id, definition_id, workflow_name, status, input, output, error, \
         tasks_total, tasks_remaining, created_at, started_at, finished_at) \
     SELECT md5('run' || g)::uuid, $1, 'history', s.status, '{}', \
            CASE WHEN s.status = 'succeeded' THEN '{\"n\": 96}'::jsonb END, \
            CASE WHEN s.status <> 'succeeded' THEN 'task `report` failed' END, \
            5, 0, c.at, c.at + interval '20 ms', c.at + interval '2 s' \
     FROM generate_series(1, $3::int) g \
     CROSS JOIN LATERAL (SELECT now() - (($3::int - g + 1) * interval '5 minutes') AS at) c \
     CROSS JOIN LATERAL (SELECT CASE WHEN g % 50 = 0 THEN 'canceled' WHEN g % 12 = 0 THEN 'failed' \
                                     ELSE 'succeeded' END AS status) s",
    "INSERT INTO task_executions (id, workflow_execution_id, task_name, status, needs, needs_remaining, \
         with_items, allow_failure, items_total, items_dispatched, items_succeeded, successors, result, \
         created_at, decided_at, finished_at) \
     SELECT md5('task' || g || sh.name)::uuid, md5('run' || g)::uuid, sh.name, 'succeeded', sh.needs, 0, \
            sh.with_items, false, sh.items, sh.items, sh.items, sh.successors, \
            CASE WHEN sh.with_items \
                 THEN (SELECT jsonb_agg(jsonb_build_object('v', i)) FROM generate_series(0, sh.items - 1) i) \
                 ELSE '{\"ok\": true}' END, \
            r.created_at, r.created_at + sh.pos * interval '100 ms', r.created_at + (sh.pos + 1) * interval '100 ms' \
     FROM generate_series(1, $3::int) g JOIN workflow_executions r ON r.id = md5('run' || g)::uuid CROSS JOIN shape sh",
    "INSERT INTO executions (id, task_execution_id, workflow_execution_id, item_index, attempt, status, \
         input, result, worker_id, timeout_ms, created_at, queued_at, started_at, finished_at) \
     SELECT gen_random_uuid(), t.id, t.workflow_execution_id, CASE WHEN t.with_items THEN i END, 1, 'succeeded', \
            jsonb_build_object('v', i), jsonb_build_object('v', i), 'worker-1', 30000, \
            t.decided_at, t.decided_at, t.decided_at + interval '1 ms', t.finished_at \
     FROM task_executions t CROSS JOIN LATERAL generate_series(0, t.items_total - 1) i",
    // Live runs: `prepare` done, the fan-out half-way, the rest waiting.
    "INSERT INTO workflow_executions (id, definition_id, workflow_name, status, input, tasks_total, \
         tasks_remaining, created_at, started_at) \
     SELECT md5('run' || g)::uuid, $1, 'history', 'running', '{}', 5, 4, now(), now() \
     FROM generate_series($3::int + 1, $3::int + $4::int) g",
    "INSERT INTO task_executions (id, workflow_execution_id, task_name, status, needs, needs_remaining, \
         with_items, allow_failure, items_total, items_dispatched, items_succeeded, successors, \
         decided_at, finished_at) \
     SELECT md5('task' || g || sh.name)::uuid, md5('run' || g)::uuid, sh.name, \
            CASE sh.name WHEN 'prepare' THEN 'succeeded' WHEN 'fan' THEN 'running' ELSE 'waiting' END, \
            sh.needs, CASE WHEN sh.pos <= 1 THEN 0 ELSE 1 END, sh.with_items, false, \
            CASE WHEN sh.pos <= 1 THEN sh.items END, \
            CASE sh.name WHEN 'prepare' THEN 1 WHEN 'fan' THEN 56 ELSE 0 END, \
            CASE sh.name WHEN 'prepare' THEN 1 WHEN 'fan' THEN 40 ELSE 0 END, sh.successors, \
            CASE WHEN sh.pos <= 1 THEN now() END, CASE WHEN sh.pos = 0 THEN now() END \
     FROM generate_series($3::int + 1, $3::int + $4::int) g CROSS JOIN shape sh",
    "INSERT INTO executions (id, task_execution_id, workflow_execution_id, item_index, attempt, status, \
         input, worker_id, timeout_ms, queued_at, started_at, finished_at, deadline) \
     SELECT gen_random_uuid(), t.id, t.workflow_execution_id, CASE WHEN t.with_items THEN i END, 1, s.status, \
            jsonb_build_object('v', i), CASE WHEN s.status IN ('running', 'succeeded') THEN 'worker-1' END, 30000, \
            CASE WHEN s.status <> 'pending' THEN now() END, \
            CASE WHEN s.status IN ('running', 'succeeded') THEN now() END, \
            CASE WHEN s.status = 'succeeded' THEN now() END, \
            CASE WHEN s.status = 'running' THEN now() + interval '1 hour' END \
     FROM task_executions t \
     CROSS JOIN LATERAL generate_series(0, CASE WHEN t.task_name = 'fan' THEN 95 ELSE 0 END) i \
     CROSS JOIN LATERAL (SELECT CASE WHEN t.task_name = 'prepare' OR i < 40 THEN 'succeeded' \
                                     WHEN i < 48 THEN 'running' WHEN i < 56 THEN 'queued' \
                                     ELSE 'pending' END AS status) s \
     WHERE t.status IN ('succeeded', 'running') AND t.workflow_execution_id IN \
           (SELECT md5('run' || g)::uuid FROM generate_series($3::int + 1, $3::int + $4::int) g)",
];

/// The indexes of migration 0006, in place of 0007's.
const BEFORE: &[&str] = &[
    "DROP INDEX executions_run_status_idx",
    "DROP INDEX workflow_executions_finished_idx",
    "CREATE INDEX executions_live_by_run_idx ON executions (workflow_execution_id) \
     WHERE status IN ('queued', 'running')",
];

/// This build's indexes (migration 0007), back.
const AFTER: &[&str] = &[
    "DROP INDEX IF EXISTS executions_live_by_run_idx",
    "CREATE INDEX IF NOT EXISTS executions_run_status_idx ON executions (workflow_execution_id, status)",
    "CREATE INDEX IF NOT EXISTS workflow_executions_finished_idx ON workflow_executions (finished_at) \
     WHERE finished_at IS NOT NULL",
];

/// The percentiles reported of query times.
const PERCENTILES: &[(&str, f64)] = &[("p50", 0.50), ("p95", 0.95), ("p99", 0.99)];

/// Ids of generated runs `from..=to`, read back from the database.
async fn ids(pool: &PgPool, from: i64, to: i64) -> anyhow::Result<Vec<WorkflowExecutionId>> {
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT md5('run' || g)::uuid FROM generate_series($1::int, $2::int) g")
            .bind(i32::try_from(from)?)
            .bind(i32::try_from(to)?)
            .fetch_all(pool)
            .await?;
    Ok(ids.into_iter().map(WorkflowExecutionId::from).collect())
}

/// Runs `$body` `$calls` times, each with `$id` the next of `$ids` (round
/// robin); evaluates to the durations in ms.
macro_rules! timed {
    ($ids:expr, $calls:expr, |$id:ident| $body:block) => {{
        let mut ms = Vec::with_capacity($calls);
        for i in 0..$calls {
            let $id = $ids[i % $ids.len()];
            let began = Instant::now();
            $body
            ms.push(began.elapsed().as_secs_f64() * 1000.0);
        }
        ms
    }};
}

/// Every read, `calls` times each, reported under `label`.
async fn measure(
    pool: &PgPool,
    sizes: &Sizes,
    label: &str,
    calls: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    // History spread over all ages, every 97th run (prime: every status).
    let history: Vec<WorkflowExecutionId> = ids(pool, 1, sizes.runs)
        .await?
        .into_iter()
        .step_by(97)
        .collect();
    let live = ids(pool, sizes.runs + 1, sizes.runs + sizes.live).await?;
    let mut conn = pool.acquire().await?;

    let samples = timed!(history, calls, |id| {
        let run = runs::get(&mut conn, id).await?.context("the run exists")?;
        let summaries = tasks::summaries(&mut conn, id).await?;
        runs::definition(&mut conn, run.definition_id).await?;
        ensure!(summaries.len() == 5, "5 tasks, not {}", summaries.len());
    });
    report.percentiles(
        &format!("{label} status (get+summaries+def)"),
        &samples,
        PERCENTILES,
    );

    let samples = timed!(history, calls, |id| {
        let rows = executions::for_run(&mut conn, id).await?;
        ensure!(rows.len() == 100, "100 executions, not {}", rows.len());
    });
    report.percentiles(
        &format!("{label} executions::for_run"),
        &samples,
        PERCENTILES,
    );

    // Each cancel in a transaction rolled back (not timed), so every call
    // finds its run live.
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls {
        let mut tx = pool.begin().await?;
        let began = Instant::now();
        let requested = cancel::request(&mut tx, live[i % live.len()]).await?;
        samples.push(began.elapsed().as_secs_f64() * 1000.0);
        tx.rollback().await?;
        let expected = Requested::Accepted {
            killing: 56,
            settled: false,
        };
        ensure!(requested == expected, "cancel of a live run: {requested:?}");
    }
    report.percentiles(&format!("{label} cancel (live run)"), &samples, PERCENTILES);

    let samples = timed!(history, calls, |id| {
        let violations = audit::audit(&mut conn, Some(id), 60.0).await?;
        ensure!(violations.is_empty(), "audit: {violations:?}");
    });
    report.percentiles(&format!("{label} audit ID"), &samples, PERCENTILES);

    let samples = timed!(history, calls, |_id| {
        let rows = runs::list(&mut conn, None, None, 20).await?;
        ensure!(rows.len() == 20, "20 runs listed, not {}", rows.len());
    });
    report.percentiles(&format!("{label} list"), &samples, PERCENTILES);

    let samples = timed!(history, calls, |_id| {
        let rows = runs::list(&mut conn, Some(WorkflowStatus::Running), None, 20).await?;
        ensure!(!rows.is_empty(), "the live runs are listed");
    });
    report.percentiles(
        &format!("{label} list --status running"),
        &samples,
        PERCENTILES,
    );

    plans(pool, live[0], report).await
}

/// Prints the plans of cancellation's statements on a live run (executed
/// in a transaction rolled back), so a regression to a scan shows.
async fn plans(pool: &PgPool, id: WorkflowExecutionId, report: &Report) -> anyhow::Result<()> {
    let statements = [
        format!(
            "UPDATE executions SET status = 'canceled', finished_at = clock_timestamp() \
             WHERE workflow_execution_id = '{id}' AND status IN ('pending', 'queued')"
        ),
        format!(
            "SELECT id FROM executions WHERE workflow_execution_id = '{id}' AND status = 'running'"
        ),
        format!(
            "SELECT EXISTS (SELECT 1 FROM executions WHERE workflow_execution_id = '{id}' \
             AND status IN ('queued', 'running'))"
        ),
    ];
    let mut tx = pool.begin().await?;
    for sql in statements {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) {sql}"
        )))
        .fetch_all(&mut *tx)
        .await?;
        report.note(&format!("  plan of: {sql}"));
        for line in plan {
            report.note(&format!("    {line}"));
        }
    }
    tx.rollback().await?;
    Ok(())
}

/// The workflow of the wide runs `explain` reads.
const WIDE: &str = r#"
name: wide
tasks:
  fan: { action: echo, with_items: "{{ range(10000) | list }}", concurrency: 16, input: { v: "{{ item }}" }, retry: { attempts: 3 } }
  after: { needs: [fan], action: noop }
"#;

/// The two wide runs: `md5('wide-live')` half-way through its fan-out,
/// `md5('wide-done')` finished. `$1` stands for the definition's id.
const WIDE_FILL: &[&str] = &[
    "INSERT INTO workflow_executions (id, definition_id, workflow_name, status, input, tasks_total, \
         tasks_remaining, created_at, started_at, finished_at) \
     VALUES (md5('wide-live')::uuid, $1, 'wide', 'running', '{}', 2, 2, now(), now(), NULL), \
            (md5('wide-done')::uuid, $1, 'wide', 'succeeded', '{}', 2, 0, now(), now(), now())",
    "INSERT INTO task_executions (id, workflow_execution_id, task_name, status, needs, needs_remaining, \
         with_items, allow_failure, concurrency, items_total, items_dispatched, items_succeeded, successors, \
         decided_at, finished_at) \
     VALUES (md5('wide-live-fan')::uuid, md5('wide-live')::uuid, 'fan', 'running', '{}', 0, true, false, 16, \
             10000, 6016, 6000, '{after}', now(), NULL), \
            (md5('wide-live-after')::uuid, md5('wide-live')::uuid, 'after', 'waiting', '{fan}', 1, false, false, \
             NULL, NULL, 0, 0, '{}', NULL, NULL), \
            (md5('wide-done-fan')::uuid, md5('wide-done')::uuid, 'fan', 'succeeded', '{}', 0, true, false, 16, \
             10000, 10000, 10000, '{after}', now(), now()), \
            (md5('wide-done-after')::uuid, md5('wide-done')::uuid, 'after', 'succeeded', '{fan}', 0, false, false, \
             NULL, 1, 1, 1, '{}', now(), now())",
    // The live fan-out: 6,000 succeeded, 8 running, 7 queued, item 6015
    // failed once with its retry due in an hour, the rest pending.
    "INSERT INTO executions (id, task_execution_id, workflow_execution_id, item_index, attempt, status, \
         input, result, error, worker_id, timeout_ms, queued_at, due_at, started_at, finished_at, deadline) \
     SELECT gen_random_uuid(), md5('wide-live-fan')::uuid, md5('wide-live')::uuid, i, a.attempt, s.status, \
            jsonb_build_object('v', i), CASE WHEN s.status = 'succeeded' THEN jsonb_build_object('v', i) END, \
            CASE WHEN s.status = 'failed' THEN 'connection reset' END, \
            CASE WHEN s.status IN ('running', 'succeeded', 'failed') THEN 'worker-' || (i % 4) END, 30000, \
            CASE WHEN s.status <> 'pending' THEN now() END, \
            CASE WHEN s.status = 'queued' AND a.attempt = 2 THEN now() + interval '1 hour' END, \
            CASE WHEN s.status IN ('running', 'succeeded', 'failed') THEN now() END, \
            CASE WHEN s.status IN ('succeeded', 'failed') THEN now() END, \
            CASE WHEN s.status = 'running' THEN now() + interval '1 hour' END \
     FROM generate_series(0, 9999) i \
     CROSS JOIN LATERAL (VALUES (1), (2)) a(attempt) \
     CROSS JOIN LATERAL (SELECT CASE WHEN i < 6000 THEN 'succeeded' WHEN i < 6008 THEN 'running' \
                                     WHEN i < 6015 THEN 'queued' WHEN i = 6015 AND a.attempt = 1 THEN 'failed' \
                                     WHEN i = 6015 THEN 'queued' ELSE 'pending' END AS status) s \
     WHERE a.attempt = 1 OR i = 6015",
    "INSERT INTO executions (id, task_execution_id, workflow_execution_id, item_index, attempt, status, \
         input, result, worker_id, timeout_ms, queued_at, started_at, finished_at) \
     SELECT gen_random_uuid(), md5('wide-done-fan')::uuid, md5('wide-done')::uuid, i, 1, 'succeeded', \
            jsonb_build_object('v', i), jsonb_build_object('v', i), 'worker-' || (i % 4), 30000, now(), now(), now() \
     FROM generate_series(0, 9999) i \
     UNION ALL \
     SELECT gen_random_uuid(), md5('wide-done-after')::uuid, md5('wide-done')::uuid, NULL, 1, 'succeeded', \
            '{}', 'null', 'worker-1', NULL, now(), now(), now()",
];

/// `weft explain` on a 10,000-item fan-out: the query layer, the
/// sentences, and the `weft explain ID` process.
async fn explain(
    stack: &Stack,
    pool: &PgPool,
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    use weft_store::inspect::explain::run_facts;
    let definition = weft_store::runs::definition_id(WIDE);
    sqlx::query(
        "INSERT INTO workflow_definitions (id, name, source, origin) VALUES ($1, 'wide', $2, 'wide.yaml')",
    )
    .bind(definition)
    .bind(WIDE)
    .execute(pool)
    .await?;
    for sql in WIDE_FILL {
        let sql = sql.replace("$1", &format!("'{definition}'::uuid"));
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
            .with_context(|| format!("filling: {sql}"))?;
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    let wide: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT md5(n)::uuid FROM unnest(ARRAY['wide-live', 'wide-done']) n")
            .fetch_all(pool)
            .await?;
    let grace = weft_store::workers::DEFAULT_HEARTBEAT_GRACE;
    let mut conn = pool.acquire().await?;
    for (label, id) in ["live", "finished"].into_iter().zip(wide) {
        let id = WorkflowExecutionId::from(id);
        let samples = timed!([id], sizes.calls, |id| {
            let facts = run_facts(&mut conn, id, grace)
                .await?
                .context("the run exists")?;
            let explanation = facts.explain();
            ensure!(explanation.tasks.len() == 2, "2 tasks explained");
        });
        report.percentiles(
            &format!("explain 10,000 items, {label} (facts + sentences)"),
            &samples,
            PERCENTILES,
        );
        let facts = run_facts(&mut conn, id, grace)
            .await?
            .context("the run exists")?;
        let explanation = facts.explain();
        report.note(&format!("  {label}: run: {}", explanation.run));
        for line in &explanation.tasks {
            report.note(&format!(
                "  {label}: {} {}: {}",
                line.task, line.status, line.why
            ));
        }
        let binary = weft_tests::process::weft_binary()?;
        let mut process = Vec::new();
        for _ in 0..sizes.calls.min(20) {
            let began = Instant::now();
            let out = std::process::Command::new(&binary)
                .args(["explain", &id.to_string()])
                .env("WEFT_DATABASE_URL", &stack.database_url)
                .env("WEFT_AMQP_URL", &stack.amqp_url)
                .output()?;
            process.push(began.elapsed().as_secs_f64() * 1000.0);
            ensure!(
                out.status.success(),
                "weft explain: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        report.percentiles(
            &format!("explain 10,000 items, {label} (`weft explain ID` process)"),
            &process,
            PERCENTILES,
        );
    }
    Ok(())
}

/// Runs a list of statements (index swaps), then `ANALYZE`.
async fn apply(pool: &PgPool, statements: &[&str]) -> anyhow::Result<()> {
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(*sql)).execute(pool).await?;
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let quick = !args.iter().any(|a| a == "--bench");
    let json = args.iter().any(|a| a == "--json");
    let only: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let wanted = |name: &str| only.is_empty() || only.contains(&name);
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
             VALUES ($1, 'history', $2, 'history.yaml')",
        )
        .bind(definition)
        .bind(WORKFLOW)
        .execute(&pool)
        .await?;
        // One connection: the temp table lives in its session.
        let mut conn = pool.acquire().await?;
        for sql in FILL {
            let sql = sql
                .replace("$1", &format!("'{definition}'::uuid"))
                .replace("$3", &sizes.runs.to_string())
                .replace("$4", &sizes.live.to_string());
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut *conn)
                .await
                .with_context(|| format!("filling: {sql}"))?;
        }
        drop(conn);
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        let executions: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
            .fetch_one(&pool)
            .await?;
        report.add("history fill", "executions", executions as f64, "rows");
        report.add("history fill", "took", began.elapsed().as_secs_f64(), "s");

        if wanted("before") {
            apply(&pool, BEFORE).await?;
            measure(&pool, &sizes, "0006", sizes.calls_before, &mut report).await?;
            apply(&pool, AFTER).await?;
        }
        if wanted("after") {
            measure(&pool, &sizes, "0007", sizes.calls, &mut report).await?;
        }
        if wanted("explain") {
            explain(&stack, &pool, &sizes, &mut report).await?;
        }
        if wanted("prune") {
            // The oldest 10 %: runs are 5 minutes apart, newest now.
            let keep = Duration::from_secs(300) * u32::try_from(sizes.runs * 9 / 10)?;
            let mut conn = pool.acquire().await?;
            let began = Instant::now();
            let pruned = prune::prune(&mut conn, keep, prune::DEFAULT_BATCH, false).await?;
            let took = began.elapsed().as_secs_f64();
            ensure!(
                pruned.runs > 0 && pruned.executions == pruned.runs * 100,
                "{pruned:?}"
            );
            report.add("prune oldest 10 %", "runs", pruned.runs as f64, "runs");
            report.add("prune oldest 10 %", "took", took, "s");
            report.add(
                "prune oldest 10 %",
                "executions/s",
                pruned.executions as f64 / took,
                "rows/s",
            );
        }
        anyhow::Ok(())
    })?;
    report.finish();
    Ok(())
}
