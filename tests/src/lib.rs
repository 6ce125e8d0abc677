//! # weft-tests — the end-to-end harness
//!
//! A [`Stack`] is a private Weft installation for one test binary: its own
//! PostgreSQL database and RabbitMQ vhost, migrated, with executors and
//! workers running as tasks on a runtime of their own (so they outlive any
//! single `#[tokio::test]`). Tests submit runs and wait for them through
//! the same store functions the CLI uses, then assert on the tables.
//!
//! A stack runs on the machine's PostgreSQL and RabbitMQ unless its
//! options name others: tests that restart a server run their stack on a
//! [`private`] one, so the restart cuts no one else's connections.
//!
//! Set `WEFT_TEST_LOG=debug` to see the daemons' logs.

pub mod cli;
pub mod client;
pub mod counted;
pub mod fill;
pub mod fleet;
pub mod netns;
pub mod private;
pub mod process;
pub mod report;
pub mod scrape;
pub mod server;
mod wire;

pub use wire::{
    WireBodies, WireDispatches, WireMessages, duplicate_completions, queue_messages, spy,
    spy_dispatches, spy_events, wait_for_queue_messages,
};

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use weft_bus::BusConfig;
use weft_common::{ResultLimit, Workflow, WorkflowExecutionId};
use weft_executor::{EngineConfig, ExecutorConfig};
use weft_store::DbConfig;
use weft_store::runs::{self, NewRun, RunRow};
use weft_worker::{ActionRegistry, WorkerConfig, WorkerPolicy};

/// The machine's PostgreSQL, overridable like the CLI's.
fn base_database_url() -> String {
    std::env::var("WEFT_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/weft".into())
}

/// Which servers a stack uses and how many daemons it runs.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// A PostgreSQL server of the test's own (any database name: the stack
    /// creates one of its own on that server); `None` is the machine's,
    /// `WEFT_DATABASE_URL`.
    pub database_url: Option<String>,
    /// A RabbitMQ vhost of the test's own, used as it is; `None` creates a
    /// fresh vhost on the machine's broker (`WEFT_AMQP_URL`'s host) and
    /// deletes it with the stack. `rabbitmqctl`, which makes vhosts, talks
    /// to the machine's node only: a private node's default vhost is
    /// already private.
    pub amqp_url: Option<String>,
    /// Executors to start.
    pub executors: usize,
    /// Workers to start.
    pub workers: usize,
    /// Actions run at once per worker.
    pub worker_concurrency: usize,
    /// Builds each worker's actions (built-ins are a good start).
    pub actions: fn() -> ActionRegistry,
    /// `--max-result-bytes` of every executor and worker (small ones keep
    /// the limits' tests fast).
    pub max_result_bytes: ResultLimit,
    /// The secret keys of every executor and worker (`WEFT_SECRET_KEY`);
    /// `None`: none.
    pub secrets: Option<Arc<weft_common::Keyring>>,
}

impl StackOptions {
    /// A database and vhost with no daemons: the test starts its own (as
    /// processes, to kill them).
    #[must_use]
    pub fn bare() -> Self {
        Self {
            executors: 0,
            workers: 0,
            ..Self::default()
        }
    }
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            database_url: None,
            amqp_url: None,
            executors: 1,
            workers: 1,
            worker_concurrency: 8,
            actions: ActionRegistry::with_builtins,
            max_result_bytes: ResultLimit::DEFAULT,
            secrets: None,
        }
    }
}

/// A private Weft installation; see the crate docs.
#[derive(Debug)]
pub struct Stack {
    /// The database's URL.
    pub database_url: String,
    /// The vhost's AMQP URL.
    pub amqp_url: String,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    max_result_bytes: ResultLimit,
    secrets: Option<Arc<weft_common::Keyring>>,
    /// The vhost made for the stack on the machine's broker, if it made one.
    _vhost: Option<weft_bus::testing::VhostGuard>,
}

impl Stack {
    /// Creates the database and vhost and starts the daemons. Blocking: call
    /// it once per test binary, e.g. from a `OnceLock`.
    ///
    /// # Errors
    /// If a service is unreachable.
    pub fn start(options: StackOptions) -> anyhow::Result<Self> {
        init_logging();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("weft-stack")
            .build()
            .context("building the stack's runtime")?;
        let base_db = options
            .database_url
            .clone()
            .unwrap_or_else(base_database_url);
        // The creating process's id in the name: leftovers of processes
        // that are gone are dropped, a running test binary's are not.
        let name = format!(
            "weft_test_{}_{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let database_url = replace_database(&base_db, &name);
        // Set up on a thread of our own: the caller may be inside a runtime,
        // where blocking on another one is not allowed.
        let (amqp_url, vhost) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    runtime.block_on(async {
                        let db = DbConfig {
                            url: database_url.clone(),
                            ..DbConfig::default()
                        };
                        drop_leftover_databases(&base_db).await;
                        weft_store::migrate(&db)
                            .await
                            .context("migrating the test database")?
                            .close()
                            .await;
                        match &options.amqp_url {
                            Some(url) => Ok((url.clone(), None)),
                            None => weft_bus::testing::fresh_vhost()
                                .await
                                .map(|(url, guard)| (url, Some(guard)))
                                .context("creating a RabbitMQ vhost"),
                        }
                    })
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the set-up thread panicked"))?
        })?;
        let shutdown = CancellationToken::new();
        let stack = Self {
            database_url,
            amqp_url,
            runtime: Some(runtime),
            shutdown,
            max_result_bytes: options.max_result_bytes,
            secrets: options.secrets.clone(),
            _vhost: vhost,
        };
        for _ in 0..options.executors {
            stack.spawn_executor();
        }
        for _ in 0..options.workers {
            stack.spawn_worker(options.worker_concurrency, options.actions);
        }
        Ok(stack)
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.runtime {
            Some(runtime) => runtime.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }

    /// Settings for the tests' own pools (small: tests only read).
    fn db(&self) -> DbConfig {
        DbConfig {
            url: self.database_url.clone(),
            max_connections: 4,
            ..DbConfig::default()
        }
    }

    /// The settings of a connection to the stack's vhost named `name`.
    #[must_use]
    pub fn bus(&self, name: &str) -> BusConfig {
        BusConfig {
            url: self.amqp_url.clone(),
            connection_name: name.to_owned(),
            ..BusConfig::default()
        }
    }

    /// A publisher on the stack's vhost, for submits that publish their
    /// run's start themselves (see [`submit_via`]).
    ///
    /// # Errors
    /// If RabbitMQ cannot be reached.
    pub async fn publisher(&self) -> anyhow::Result<weft_bus::Publisher> {
        let bus = weft_bus::Bus::try_connect(self.bus("weft-test-submit")).await?;
        Ok(bus.publisher().await?)
    }

    /// Starts one more executor; returns the token that stops it.
    pub fn spawn_executor(&self) -> CancellationToken {
        let token = self.shutdown.child_token();
        let config = ExecutorConfig {
            // Daemons get the production pool size.
            db: DbConfig {
                url: self.database_url.clone(),
                ..DbConfig::default()
            },
            bus: self.bus("test-executor"),
            engine: EngineConfig {
                max_result_bytes: self.max_result_bytes,
                secrets: self.secrets.clone(),
                ..EngineConfig::default()
            },
            ..ExecutorConfig::default()
        };
        let stop = token.clone();
        self.handle().spawn(async move {
            if let Err(e) = weft_executor::run(config, stop).await {
                tracing::error!(error = %format!("{e:#}"), "test executor stopped");
            }
        });
        token
    }

    /// Starts one more worker; returns the token that stops it.
    pub fn spawn_worker(
        &self,
        concurrency: usize,
        actions: fn() -> ActionRegistry,
    ) -> CancellationToken {
        let token = self.shutdown.child_token();
        let actions = actions();
        let config = WorkerConfig {
            bus: self.bus("test-worker"),
            concurrency,
            shutdown_grace: Duration::from_secs(5),
            max_result_bytes: self.max_result_bytes,
            policy: WorkerPolicy::every_action_of(&actions),
            secrets: self.secrets.clone(),
            ..WorkerConfig::default()
        };
        let stop = token.clone();
        self.handle().spawn(async move {
            if let Err(e) = weft_worker::run(config, actions, stop).await {
                tracing::error!(error = %format!("{e:#}"), "test worker stopped");
            }
        });
        token
    }

    /// Starts one more worker consuming `pools`; returns its id and the
    /// token that stops it.
    pub fn spawn_worker_on(
        &self,
        pools: &[&str],
        actions: fn() -> ActionRegistry,
    ) -> (String, CancellationToken) {
        self.spawn_worker_with(pools, actions, |_| {})
    }

    /// Starts one more worker consuming `pools`, its settings adjusted by
    /// `tune`; returns its id and the token that stops it.
    pub fn spawn_worker_with(
        &self,
        pools: &[&str],
        actions: fn() -> ActionRegistry,
        tune: impl FnOnce(&mut WorkerConfig),
    ) -> (String, CancellationToken) {
        let token = self.shutdown.child_token();
        let actions = actions();
        let mut config = WorkerConfig {
            bus: self.bus("test-worker"),
            queues: pools.iter().map(|p| (*p).to_owned()).collect(),
            shutdown_grace: Duration::from_secs(5),
            max_result_bytes: self.max_result_bytes,
            policy: WorkerPolicy::every_action_of(&actions),
            secrets: self.secrets.clone(),
            ..WorkerConfig::default()
        };
        tune(&mut config);
        let id = config.worker_id.clone();
        let stop = token.clone();
        self.handle().spawn(async move {
            if let Err(e) = weft_worker::run(config, actions, stop).await {
                tracing::error!(error = %format!("{e:#}"), "test worker stopped");
            }
        });
        (id, token)
    }

    /// The environment of a daemon process on this stack that a test
    /// kills on purpose: the stack's URLs, and liveness tuned so lost work
    /// is reaped within seconds (heartbeats and reaping every 0.5 s, a
    /// 3 s grace).
    #[must_use]
    pub fn fast_liveness_env(&self) -> [(&'static str, &str); 5] {
        [
            ("WEFT_DATABASE_URL", self.database_url.as_str()),
            ("WEFT_AMQP_URL", self.amqp_url.as_str()),
            ("WEFT_REAPER_INTERVAL", "0.5"),
            ("WEFT_HEARTBEAT_GRACE", "3"),
            ("WEFT_HEARTBEAT_INTERVAL", "0.5"),
        ]
    }

    /// A connection pool for the calling test's runtime.
    ///
    /// # Errors
    /// If PostgreSQL is unreachable.
    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(weft_store::connect(&self.db()).await?)
    }

    /// Validates and submits a workflow, as `weft submit` does.
    ///
    /// # Errors
    /// If the workflow or its input is invalid, or the database fails.
    pub async fn submit(
        &self,
        pool: &PgPool,
        yaml: &str,
        input: Value,
    ) -> anyhow::Result<WorkflowExecutionId> {
        submit(pool, yaml, "test.yaml", input).await
    }

    /// Waits until a run is terminal (at most `timeout`) and returns it.
    ///
    /// # Errors
    /// On timeout, naming the run's status.
    pub async fn wait(
        &self,
        pool: &PgPool,
        id: WorkflowExecutionId,
        timeout: Duration,
    ) -> anyhow::Result<RunRow> {
        wait_terminal(pool, id, timeout).await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime inside another one would panic.
            runtime.shutdown_background();
        }
    }
}

/// Validates and submits a workflow from its YAML; a relay publishes its
/// start.
///
/// # Errors
/// If the workflow or its input is invalid, or the database fails.
pub async fn submit(
    pool: &PgPool,
    yaml: &str,
    origin: &str,
    input: Value,
) -> anyhow::Result<WorkflowExecutionId> {
    submit_via(pool, None, yaml, origin, input).await
}

/// [`submit`], publishing the run's start itself with a `publisher`, as
/// `weft submit` does.
///
/// # Errors
/// If the workflow or its input is invalid, or the database fails.
pub async fn submit_via(
    pool: &PgPool,
    publisher: Option<&weft_bus::Publisher>,
    yaml: &str,
    origin: &str,
    input: Value,
) -> anyhow::Result<WorkflowExecutionId> {
    let workflow = Workflow::parse(yaml, origin).map_err(|d| anyhow::anyhow!("{d}"))?;
    let given = match input {
        Value::Object(map) => map,
        Value::Null => serde_json::Map::new(),
        other => bail!("input must be an object, not {other}"),
    };
    let input = Value::Object(
        workflow
            .resolve_input(given)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let new = NewRun {
        id: WorkflowExecutionId::new(),
        workflow_name: workflow.name(),
        source: yaml,
        origin,
        input: &input,
        tasks_total: i32::try_from(workflow.tasks().count())?,
        idempotency_key: None,
    };
    Ok(weft_executor::submit(pool, publisher, &new).await?.id())
}

/// Reads, validates and submits a workflow file with the sub-workflows
/// its `workflow:` tasks start, as `weft submit FILE` does.
///
/// # Errors
/// If a file or the input is invalid, or the database fails.
pub async fn submit_file(
    pool: &PgPool,
    path: &std::path::Path,
    input: Value,
) -> anyhow::Result<WorkflowExecutionId> {
    let bundle = load_bundle(path)?;
    let workflow = &bundle.root().workflow;
    let given = match input {
        Value::Object(map) => map,
        Value::Null => serde_json::Map::new(),
        other => bail!("input must be an object, not {other}"),
    };
    let input = Value::Object(
        workflow
            .resolve_input(given)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let origin = path.display().to_string();
    let new = NewRun {
        id: WorkflowExecutionId::new(),
        workflow_name: workflow.name(),
        source: &bundle.root().source,
        origin: &origin,
        input: &input,
        tasks_total: i32::try_from(workflow.tasks().count())?,
        idempotency_key: None,
    };
    Ok(weft_store::children::submit_bundle(pool, &new, &bundle)
        .await?
        .id())
}

/// Reads a workflow file and the files its `workflow:` tasks reach.
///
/// # Errors
/// If a file cannot be read or is invalid (every diagnostic in the error).
pub fn load_bundle(path: &std::path::Path) -> anyhow::Result<weft_common::Bundle> {
    let source = std::fs::read_to_string(path)?;
    let key = std::fs::canonicalize(path)?;
    weft_common::Bundle::load(key, &path.display().to_string(), source, |p| {
        let key = std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let text = std::fs::read_to_string(&key).map_err(|e| e.to_string())?;
        Ok((key, text))
    })
    .map_err(|all| {
        anyhow::anyhow!(
            "{}",
            all.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Polls a run until it is terminal.
///
/// # Errors
/// On timeout, naming the run's status.
pub async fn wait_terminal(
    pool: &PgPool,
    id: WorkflowExecutionId,
    timeout: Duration,
) -> anyhow::Result<RunRow> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut conn = pool.acquire().await?;
    loop {
        let run = runs::get(&mut conn, id)
            .await?
            .with_context(|| format!("run {id} does not exist"))?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "run {id} still `{}` after {timeout:?} ({} tasks remaining)",
                run.status,
                run.tasks_remaining
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The same URL with another database name.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(head, _)| head);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

fn init_logging() {
    let Ok(filter) = std::env::var("WEFT_TEST_LOG") else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

/// Waits until attempt `attempt` of the run's execution has `status`
/// (for single-task runs), e.g. until an action is `running`.
///
/// # Errors
/// On timeout, naming the status it had.
pub async fn wait_for_execution(
    pool: &PgPool,
    run: WorkflowExecutionId,
    attempt: i32,
    status: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now: Option<String> = sqlx::query_scalar(
            "SELECT status FROM executions WHERE workflow_execution_id = $1 AND attempt = $2",
        )
        .bind(run.as_uuid())
        .bind(attempt)
        .fetch_optional(pool)
        .await?;
        if now.as_deref() == Some(status) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("attempt {attempt} of run {run} is {now:?}, not `{status}`, after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `task` of the run has at least `n` succeeded items.
///
/// # Errors
/// On timeout.
pub async fn wait_for_items(
    pool: &PgPool,
    run: WorkflowExecutionId,
    task: &str,
    n: i32,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let done: Option<i32> = sqlx::query_scalar(
            "SELECT items_succeeded FROM task_executions WHERE workflow_execution_id = $1 AND task_name = $2",
        )
        .bind(run.as_uuid())
        .bind(task)
        .fetch_optional(pool)
        .await?;
        if done.unwrap_or(0) >= n {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("task `{task}` of run {run} has {done:?} items done, not {n}, after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `n` executions of a run are queued (dispatched, not yet
/// taken), at most `timeout`: an unbounded fan-out's items are streamed
/// after the commit that started it.
///
/// # Errors
/// On timeout, with the count reached.
pub async fn wait_for_queued(
    pool: &PgPool,
    run: WorkflowExecutionId,
    n: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let queued: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM executions WHERE workflow_execution_id = $1 AND status = 'queued'",
        )
        .bind(run.as_uuid())
        .fetch_one(pool)
        .await?;
        if queued >= n {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("run {run} has {queued} executions queued, not {n}, after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drops the databases of test processes that are gone (`weft_test_<pid>_*`,
/// and any of the older unnumbered ones). Best effort: a database still in
/// use refuses, and is left alone; so is every database of a live process,
/// even one its stack has created but not connected to yet.
async fn drop_leftover_databases(base_url: &str) {
    use sqlx::Connection as _;
    let Ok(mut admin) = sqlx::PgConnection::connect(&replace_database(base_url, "postgres")).await
    else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'weft\\_test\\_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    for name in names {
        let creator = name
            .strip_prefix("weft_test_")
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if creator.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            // Another stack of a live test process (maybe this one): it may
            // not have connected yet.
            continue;
        }
        let drop = format!("DROP DATABASE IF EXISTS \"{name}\"");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&mut admin)
            .await;
    }
    let _ = admin.close().await;
}

/// `weft audit` of one run, each violation as `check: detail` (empty when
/// the run's state is sound).
///
/// # Panics
/// If the database fails: this is a test's assertion helper.
pub async fn violations(pool: &PgPool, id: WorkflowExecutionId) -> Vec<String> {
    let mut conn = pool.acquire().await.expect("conn");
    weft_store::audit::audit(&mut conn, Some(id), 60.0)
        .await
        .expect("audit")
        .into_iter()
        .map(|v| format!("{}: {}", v.check, v.detail))
        .collect()
}
