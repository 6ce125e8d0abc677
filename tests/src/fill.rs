//! Generated history for benchmarks: finished runs written in SQL, many
//! at a time, as the engine would have left them.

use anyhow::Context as _;
use sqlx::PgPool;
use weft_common::WorkflowExecutionId;

/// The workflow every generated run runs (its definition row).
pub const WORKFLOW: &str = r#"
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

/// Stores the definition `source` of workflow `name` (once); its id.
async fn definition(pool: &PgPool, name: &str, source: &str) -> anyhow::Result<uuid::Uuid> {
    let id = weft_store::runs::definition_id(source);
    sqlx::query(
        "INSERT INTO workflow_definitions (id, name, source, origin) \
         VALUES ($1, $2, $3, $2 || '.yaml') ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(name)
    .bind(source)
    .execute(pool)
    .await
    .with_context(|| format!("storing the definition of {name}"))?;
    Ok(id)
}

/// Writes `runs` finished runs of [`WORKFLOW`], each a plain task and an
/// `items`-item shell fan-out whose every item has an item label and logs
/// (every 100th item failed twice before it succeeded). Run `g` (from 1)
/// is [`fan_out_run_id`]`(g)`.
///
/// # Errors
/// A database error.
pub async fn fan_out_runs(pool: &PgPool, runs: i64, items: i64) -> anyhow::Result<()> {
    let definition = definition(pool, "inspect", WORKFLOW).await?;
    for sql in FILL {
        let sql = sql
            .replace("$1", &format!("'{definition}'::uuid"))
            .replace("$2", &runs.to_string())
            .replace("$3", &items.to_string());
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
            .with_context(|| format!("filling: {sql}"))?;
    }
    Ok(())
}

/// The id of the `g`th run [`fan_out_runs`] wrote (from 1).
///
/// # Errors
/// A database error.
pub async fn fan_out_run_id(pool: &PgPool, g: i64) -> anyhow::Result<WorkflowExecutionId> {
    let id: uuid::Uuid = sqlx::query_scalar("SELECT md5('run' || $1::int)::uuid")
        .bind(i32::try_from(g)?)
        .fetch_one(pool)
        .await?;
    Ok(WorkflowExecutionId::from(id))
}

/// The workflow of the runs [`listed_runs`] writes (one definition for
/// every name: the list reads no definition).
const LISTED: &str = "name: listed\ntasks:\n  only: { action: noop }\n";

/// Writes `runs` finished runs with no tasks, as a runs list sees them:
/// ten workflows (`listed-0` … `listed-9`, in turn), one run a second
/// back from now, newest last; every 50th `canceled`, every 12th (of the
/// rest) `failed`, the others `succeeded`. Run `g`'s id is
/// `md5('listed' || g)`.
///
/// # Errors
/// A database error.
pub async fn listed_runs(pool: &PgPool, runs: i64) -> anyhow::Result<()> {
    let definition = definition(pool, "listed", LISTED).await?;
    sqlx::query(
        "INSERT INTO workflow_executions (id, definition_id, workflow_name, status, input, error, \
             tasks_total, tasks_remaining, created_at, started_at, finished_at) \
         SELECT md5('listed' || g)::uuid, $1, 'listed-' || (g % 10), s.status, '{}', \
                CASE WHEN s.status = 'failed' THEN 'task `only` failed' END, 1, 0, \
                c.at, c.at + interval '20 ms', c.at + interval '900 ms' \
         FROM generate_series(1, $2::int) g \
         CROSS JOIN LATERAL (SELECT now() - ($2::int - g + 1) * interval '1 s' AS at) c \
         CROSS JOIN LATERAL (SELECT CASE WHEN g % 50 = 0 THEN 'canceled' WHEN g % 12 = 0 THEN 'failed' \
                                         ELSE 'succeeded' END AS status) s",
    )
    .bind(definition)
    .bind(i32::try_from(runs)?)
    .execute(pool)
    .await
    .context("filling the runs list")?;
    Ok(())
}
