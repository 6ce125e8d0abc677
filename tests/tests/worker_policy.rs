//! Worker policies, through the real `weft worker` daemon: a stock worker
//! never runs `shell` — the attempt fails naming the pool and the policy,
//! and `validate` and `workers` say so before — while a worker that lists
//! `shell` runs its commands with nothing of its own environment but what
//! it passes, in a directory of their own.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_tests::cli::{Cli, failed};
use weft_tests::process::Daemon;
use weft_tests::{Stack, StackOptions};

const TIMEOUT: Duration = Duration::from_secs(60);

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    // An in-process executor; the workers are `weft worker` processes.
    STACK.get_or_init(|| {
        Stack::start(StackOptions {
            workers: 0,
            ..StackOptions::default()
        })
        .expect("the test stack starts")
    })
}

/// A `weft worker` on pool `name` with extra flags and environment, once
/// the executors have its heartbeat (it is then live and its policy known).
async fn worker(pool: &PgPool, name: &str, flags: &[&str], env: &[(&str, &str)]) -> Daemon {
    let stack = stack();
    let mut all_env = vec![
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
        ("WEFT_HEARTBEAT_INTERVAL", "0.3"),
    ];
    all_env.extend_from_slice(env);
    let mut args = vec!["worker", "--queue", name];
    args.extend_from_slice(flags);
    let daemon = Daemon::start(name, &args, &all_env).expect("the worker starts");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let seen: i64 =
            sqlx::query_scalar("SELECT count(*) FROM workers WHERE $1 = ANY(queues) AND pid = $2")
                .bind(name)
                .bind(i32::try_from(daemon.pid().expect("a pid")).expect("a pid"))
                .fetch_one(pool)
                .await
                .expect("workers");
        if seen > 0 {
            return daemon;
        }
        assert!(
            Instant::now() < deadline,
            "worker `{name}` never heard from"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(pool: &PgPool, yaml: &str) -> (WorkflowExecutionId, weft_store::runs::RunRow) {
    let stack = stack();
    let id = stack.submit(pool, yaml, json!({})).await.expect("submit");
    let run = stack.wait(pool, id, TIMEOUT).await.expect("the run ends");
    (id, run)
}

/// (task, status, result, error) of every execution of a run.
async fn executions(
    pool: &PgPool,
    id: WorkflowExecutionId,
) -> Vec<(String, String, Option<Value>, Option<String>)> {
    sqlx::query_as(
        "SELECT t.task_name, e.status, e.result, e.error FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE e.workflow_execution_id = $1 ORDER BY t.task_name, e.attempt",
    )
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await
    .expect("executions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_worker_never_runs_shell_and_says_it_is_refused_by_policy() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let _worker = worker(&pool, "stock", &[], &[]).await;
    let marker = std::env::temp_dir().join(format!("weft-policy-{}", uuid::Uuid::now_v7()));
    let yaml = format!(
        "name: refused\ntasks:\n  \
           run: {{ action: shell, queue: stock, input: {{ command: [touch, \"{}\"] }} }}\n  \
           say: {{ action: echo, queue: stock, input: {{ ok: true }} }}\n",
        marker.display()
    );
    let expected = weft_common::policy::refused_by_policy(
        "stock",
        "shell",
        &["echo", "fail", "noop", "sleep"].map(str::to_owned),
    );

    // Told before: `validate` warns, `workers` lists what it refuses.
    let file = std::env::temp_dir().join(format!("weft-policy-{}.yaml", uuid::Uuid::now_v7()));
    std::fs::write(&file, &yaml).expect("write the workflow");
    let cli = Cli::new(stack);
    let validated = cli.run(&["validate", file.to_str().expect("utf-8")]);
    let said = weft_tests::cli::stderr(&validated) + &weft_tests::cli::stdout(&validated);
    assert!(said.contains(&format!("task `run`: {expected}")), "{said}");
    let workers = cli.ok(&["workers"]);
    assert!(workers.contains("(refuses shell)"), "{workers}");

    let (id, run) = run(&pool, &yaml).await;
    assert_eq!(run.status, WorkflowStatus::Failed, "{:?}", run.error);
    assert_eq!(
        executions(&pool, id).await,
        vec![
            ("run".to_owned(), "failed".to_owned(), None, Some(expected)),
            (
                "say".to_owned(),
                "succeeded".to_owned(),
                Some(json!({"ok": true})),
                None
            ),
        ]
    );
    assert!(!marker.exists(), "the refused command ran");
    std::fs::remove_file(file).ok();
}

/// A pool that mixes a stock worker and one that lists `shell`: every
/// `shell` item runs, once, on the one that lists it, wherever the broker
/// first delivered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dispatch_goes_to_the_worker_of_the_pool_that_runs_it() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let _stock = worker(&pool, "mixed", &[], &[]).await;
    let _trusted = worker(&pool, "mixed", &["--actions", "shell,echo"], &[]).await;
    let ran = std::env::temp_dir().join(format!("weft-mixed-{}", uuid::Uuid::now_v7()));
    let yaml = format!(
        "name: mixed
tasks:
             each:
                 queue: mixed
                 with_items: \"{{{{ range(12) | list }}}}\"
                 action: shell
                 input: {{ command: [sh, -c, 'echo \"$1\" >> \"$2\"', sh, \"{{{{ item }}}}\", \"{}\"] }}
",
        ran.display()
    );
    let (id, run) = run(&pool, &yaml).await;
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let mut items: Vec<u32> = std::fs::read_to_string(&ran)
        .expect("the items ran")
        .lines()
        .map(|l| l.parse().expect("an item"))
        .collect();
    items.sort_unstable();
    assert_eq!(items, (0..12).collect::<Vec<_>>(), "each item once");
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempt FROM executions WHERE workflow_execution_id = $1")
            .bind(id.as_uuid())
            .fetch_all(&pool)
            .await
            .expect("attempts");
    assert!(attempts.iter().all(|a| *a == 1), "{attempts:?}");
    std::fs::remove_file(ran).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_listing_shell_runs_it_clean_in_a_directory_of_its_own() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let _worker = worker(
        &pool,
        "room",
        &["--actions", "shell,echo", "--pass-env", "WEFT_TEST_PASSED"],
        &[
            ("WEFT_TEST_PASSED", "passed"),
            ("WEFT_TEST_PRIVATE", "private"),
        ],
    )
    .await;
    let yaml = r#"
name: clean-room
tasks:
  look: { action: shell, queue: room, input: { script: "pwd; env", env: { FROM_TASK: "task" } } }
  elsewhere: { action: shell, queue: room, input: { command: ["true"], cwd: "/" } }
"#;
    let (id, run) = run(&pool, yaml).await;
    assert_eq!(run.status, WorkflowStatus::Failed, "{:?}", run.error);
    let executions = executions(&pool, id).await;
    let (_, status, _, error) = &executions[0];
    assert_eq!(status, "failed", "{executions:?}");
    assert!(
        error.as_deref().is_some_and(
            |e| e.contains("`cwd` (/) is not allowed") && e.contains("--shell-cwd-root")
        ),
        "{error:?}"
    );
    let (task, status, result, _) = &executions[1];
    assert_eq!((task.as_str(), status.as_str()), ("look", "succeeded"));
    let lines: Vec<&str> = result.as_ref().expect("a result")["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let dir = std::path::Path::new(lines[0]);
    assert!(
        dir.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("weft-shell-")),
        "{lines:?}"
    );
    assert!(!dir.exists(), "{dir:?} outlived its command");
    // `sh` adds PWD, OLDPWD, SHLVL and `_` of its own.
    let mut names: Vec<&str> = lines[1..]
        .iter()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| !["PATH", "HOME", "LANG", "PWD", "OLDPWD", "SHLVL", "_"].contains(k))
        .collect();
    names.sort_unstable();
    // Nothing of the worker's own: not its broker URL, not its private
    // variable; only what it passes and what the task sets.
    assert_eq!(names, ["FROM_TASK", "WEFT_TEST_PASSED"], "{lines:?}");
    assert!(lines.contains(&"WEFT_TEST_PASSED=passed"), "{lines:?}");
}

#[test]
fn a_worker_listing_an_action_it_lacks_stops_naming_it() {
    let out = Cli::new(stack()).run(&["worker", "--actions", "echo,shel"]);
    let said = failed(&out);
    assert!(
        said.contains("--actions lists `shel`, which this worker does not have")
            && said.contains("shell"),
        "{said}"
    );
}
