//! Clients that submit runs and wait for their ends, as programs using
//! Weft would: shared by the benchmarks that time runs one at a time.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use weft_bus::Publisher;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_store::runs;

use crate::Stack;

/// A warm client, as a program using Weft would hold one: a pool and a
/// publisher to submit the way `weft submit` does (store the run, publish
/// its start), and a connection `LISTEN`ing on `weft_run_finished`, the
/// channel the statement that finishes a run notifies (what `weft submit
/// --wait` wakes on). Waking on the notification rather than polling is
/// the cheapest honest way to learn the end: no poll interval is added to
/// the client's figure, and nothing else loads the database meanwhile.
pub struct Client {
    /// Its pool.
    pub pool: PgPool,
    /// Its publisher, warm.
    pub publisher: Publisher,
    listener: PgListener,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `stack`, listening for runs' ends.
    ///
    /// # Errors
    /// If PostgreSQL or RabbitMQ cannot be reached.
    pub async fn connect(stack: &Stack, pool: &PgPool) -> anyhow::Result<Self> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(runs::FINISHED_CHANNEL).await?;
        Ok(Self {
            pool: pool.clone(),
            publisher: stack.publisher().await?,
            listener,
        })
    }

    /// Waits for `id` to finish and reads its answer; returns the answer and
    /// the engine's own record of the run's duration in ms (`created_at` →
    /// `finished_at`, both stamped by the database).
    ///
    /// # Errors
    /// If the run does not finish in time, or fails.
    pub async fn answer(
        &mut self,
        id: WorkflowExecutionId,
        task: &str,
        timeout: Duration,
    ) -> anyhow::Result<(Option<Value>, f64)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let ours = id.as_uuid().to_string();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(notified) = tokio::time::timeout(left, self.listener.try_recv()).await else {
                anyhow::bail!("run {id} not finished after {timeout:?}");
            };
            // `None`: the listening connection was lost (and is re-made by
            // the next call), so a notification may be gone — read anyway.
            if notified?.is_some_and(|n| n.payload() != ours) {
                continue;
            }
            let (status, error, answer, engine_ms): (
                String,
                Option<String>,
                Option<Value>,
                Option<f64>,
            ) = sqlx::query_as(
                "SELECT r.status, r.error, t.result, \
                            (extract(epoch FROM r.finished_at - r.created_at) * 1000)::float8 \
                     FROM workflow_executions r \
                     JOIN task_executions t ON t.workflow_execution_id = r.id AND t.task_name = $2 \
                     WHERE r.id = $1",
            )
            .bind(id.as_uuid())
            .bind(task)
            .fetch_one(&self.pool)
            .await?;
            let status = WorkflowStatus::try_from(status).map_err(|e| anyhow::anyhow!("{e}"))?;
            if !status.is_terminal() {
                continue;
            }
            ensure!(
                status == WorkflowStatus::Succeeded,
                "run {id} ended {status}: {error:?}"
            );
            let engine_ms = engine_ms.context("a finished run has finished_at")?;
            return Ok((answer, engine_ms));
        }
    }
}

/// `weft submit FILE` on a stack: the workflow written to a file once.
#[derive(Debug)]
pub struct CliSubmit {
    file: std::path::PathBuf,
    env: Vec<(&'static str, String)>,
}

impl CliSubmit {
    /// Writes `yaml` to a file for `weft submit` on `stack`.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn new(stack: &Stack, yaml: &str) -> anyhow::Result<Self> {
        Self::with_env(
            yaml,
            vec![
                ("WEFT_DATABASE_URL", stack.database_url.clone()),
                ("WEFT_AMQP_URL", stack.amqp_url.clone()),
            ],
        )
    }

    /// Writes `yaml` to a file for `weft submit` through the server at
    /// `server` (its base URL) with `token`: no database credentials.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn through_server(yaml: &str, server: &str, token: &str) -> anyhow::Result<Self> {
        Self::with_env(
            yaml,
            vec![
                ("WEFT_SERVER_URL", server.to_owned()),
                ("WEFT_TOKEN", token.to_owned()),
            ],
        )
    }

    fn with_env(yaml: &str, env: Vec<(&'static str, String)>) -> anyhow::Result<Self> {
        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = std::env::temp_dir().join(format!("weft-bench-{}-{n}.yaml", std::process::id()));
        std::fs::write(&file, yaml)?;
        Ok(Self { file, env })
    }

    /// Submits one run and returns its id.
    ///
    /// # Errors
    /// If `weft submit` fails or prints no run id.
    pub async fn submit(&self) -> anyhow::Result<WorkflowExecutionId> {
        let out = tokio::process::Command::new(crate::process::weft_binary()?)
            .arg("submit")
            .arg(&self.file)
            .env_remove("WEFT_DATABASE_URL")
            .env_remove("WEFT_SERVER_URL")
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "weft submit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8(out.stdout)?;
        id.trim()
            .parse::<uuid::Uuid>()
            .map(WorkflowExecutionId::from)
            .with_context(|| format!("weft submit printed {id:?}, not a run id"))
    }
}

impl Drop for CliSubmit {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}
