//! Faults, one at a time: a worker killed mid-action, cancellation of a
//! running action, `weft retry` of a failed run, and the audit catching
//! hand-made corruption. Daemons run as processes so they can be killed.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_store::cancel::{self, Requested};
use weft_store::retry::{self, Reopened, Scope};
use weft_tests::process::Daemon;
use weft_tests::{Stack, StackOptions, wait_for_execution};

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| Stack::start(StackOptions::default()).expect("the test stack starts"))
}

fn env(stack: &Stack) -> Vec<(&'static str, String)> {
    vec![
        ("WEFT_DATABASE_URL", stack.database_url.clone()),
        ("WEFT_AMQP_URL", stack.amqp_url.clone()),
        ("WEFT_HEARTBEAT_INTERVAL", "0.3".into()),
        // The workflows here run `shell`, which a worker runs only when listed.
        ("WEFT_WORKER_ACTIONS", "echo,fail,noop,shell,sleep".into()),
    ]
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_action_is_replaced_and_the_run_succeeds() {
    // Its own stack: one in-process executor with a short heartbeat grace,
    // and workers as processes on a pool of their own.
    let stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");
    let env = env(&stack);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first =
        Daemon::start("worker-a", &["worker", "--queue", "slow"], &env).expect("worker");
    let yaml = r#"
name: long
tasks:
  nap: { action: sleep, input: { seconds: 3 }, queue: slow, retry: { attempts: 3, delay: 10ms } }
"#;
    let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
    // Wait until the first worker has started it.
    wait_for_execution(&pool, id, 1, "running", Duration::from_secs(30))
        .await
        .expect("the action starts");
    let started_by = worker_of(&pool, id, 1).await;
    first.kill();
    let second = Daemon::start("worker-b", &["worker", "--queue", "slow"], &env).expect("worker");
    let second_pid = second.pid().expect("running");
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    // The broker redelivered the dead worker's unacked dispatch to the new
    // one: the same attempt finished there. (A retry would be attempt 2,
    // made by the reaper after the 30 s heartbeat grace; a run that
    // succeeded some other way would not show the second worker here.)
    let attempts: Vec<(i32, String, Option<String>)> = sqlx::query_as(
        "SELECT attempt, status, worker_id FROM executions WHERE workflow_execution_id = $1 ORDER BY attempt",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("attempts");
    let [(1, status, Some(finished_by))] = attempts.as_slice() else {
        panic!("one attempt expected, redelivered: {attempts:?}");
    };
    assert_eq!(status, "succeeded");
    assert_ne!(Some(finished_by), started_by.as_ref(), "not redelivered");
    // Worker ids are `<host>-<pid>-<random>`.
    assert!(
        finished_by.contains(&format!("-{second_pid}-")),
        "{finished_by} is not worker-b (pid {second_pid})"
    );
}

/// The worker that reported attempt `attempt` of a single-task run.
async fn worker_of(pool: &sqlx::PgPool, id: WorkflowExecutionId, attempt: i32) -> Option<String> {
    sqlx::query_scalar(
        "SELECT worker_id FROM executions WHERE workflow_execution_id = $1 AND attempt = $2",
    )
    .bind(id.as_uuid())
    .bind(attempt)
    .fetch_one(pool)
    .await
    .expect("worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_running_action_and_ends_canceled() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let marker = std::env::temp_dir().join(format!("weft-cancel-{}.pid", uuid::Uuid::new_v4()));
    let yaml = r#"
name: cancel-me
input: { pidfile: null }
tasks:
  long:
    action: shell
    input: { command: ["sh", "-c", 'echo $$ > "$1"; exec sleep 60', "long", "{{ input.pidfile }}"] }
  after: { needs: [long], action: noop }
"#;
    let id = stack
        .submit(
            &pool,
            yaml,
            json!({ "pidfile": marker.display().to_string() }),
        )
        .await
        .expect("submit");
    let pid = read_pid(&marker, Duration::from_secs(30)).await;
    assert!(pid_alive(pid));
    let mut tx = pool.begin().await.expect("tx");
    let requested = cancel::request(&mut tx, id).await.expect("cancel");
    tx.commit().await.expect("commit");
    assert!(
        matches!(requested, Requested::Accepted { .. }),
        "{requested:?}"
    );
    let run = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Canceled);
    let gone = Instant::now() + Duration::from_secs(5);
    while pid_alive(pid) {
        assert!(
            Instant::now() < gone,
            "the child process {pid} outlived the cancellation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT task_name, status FROM task_executions WHERE workflow_execution_id = $1 ORDER BY task_name")
            .bind(id.as_uuid())
            .fetch_all(&pool)
            .await
            .expect("tasks");
    assert_eq!(
        statuses,
        [
            ("after".into(), "canceled".into()),
            ("long".into(), "canceled".into())
        ]
    );
    // Cancelling again is a clear no-op.
    let mut conn = pool.acquire().await.expect("conn");
    assert_eq!(
        cancel::request(&mut conn, id).await.expect("cancel"),
        Requested::Finished(WorkflowStatus::Canceled)
    );
    let _ = std::fs::remove_file(marker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_reruns_only_what_failed() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let flag = std::env::temp_dir().join(format!("weft-retry-flag-{}", uuid::Uuid::new_v4()));
    let yaml = r#"
name: fix-and-retry
input: { flag: null }
tasks:
  prepare: { action: echo, input: { ok: true } }
  check: { needs: [prepare], action: shell, input: { command: ["test", "-e", "{{ input.flag }}"] } }
  after: { needs: [check], action: echo, input: { prepared: "{{ tasks.prepare.result.ok }}" } }
  cleanup: { needs: [check], trigger: all_done, action: noop }
"#;
    let id = stack
        .submit(&pool, yaml, json!({ "flag": flag.display().to_string() }))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Failed);

    std::fs::write(&flag, b"fixed").expect("fix the cause");
    let mut tx = pool.begin().await.expect("tx");
    let reopened = retry::reopen(&mut tx, id, Scope::Unfinished)
        .await
        .expect("retry");
    tx.commit().await.expect("commit");
    assert!(
        matches!(&reopened, Reopened::Reopened { tasks, round: 2 } if tasks == &["after", "check", "cleanup"]),
        "{reopened:?}"
    );
    let run = stack
        .wait(&pool, id, Duration::from_secs(30))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let prepare_runs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = 'prepare'",
    )
    .bind(id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(prepare_runs, 1, "a succeeded task must not run again");
    let attempts: Vec<i32> = sqlx::query_scalar(
        "SELECT e.attempt FROM executions e JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = $1 AND t.task_name = 'check' ORDER BY e.attempt",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("attempts");
    assert_eq!(attempts, [1, 2]);
    let mut conn = pool.acquire().await.expect("conn");
    assert!(
        weft_store::audit::audit(&mut conn, Some(id), 60.0)
            .await
            .expect("audit")
            .is_empty()
    );
    // Only failed runs can be retried.
    assert_eq!(
        retry::reopen(&mut conn, id, Scope::Unfinished)
            .await
            .expect("retry"),
        Reopened::NotRetryable(WorkflowStatus::Succeeded)
    );
    let _ = std::fs::remove_file(flag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_each_kind_of_corruption() {
    let stack = stack();
    let pool = stack.pool().await.expect("pool");
    let yaml = r#"
name: audited
tasks:
  a: { action: echo, input: { v: 1 } }
  b: { needs: [a], action: echo, input: { v: 2 } }
  c: { needs: [a], when: "{{ false }}", action: noop }
"#;
    let mut conn = pool.acquire().await.expect("conn");
    let audit = |id, outbox_threshold: f64| {
        let pool = pool.clone();
        async move {
            let mut conn = pool.acquire().await.expect("conn");
            let found = weft_store::audit::audit(&mut conn, Some(id), outbox_threshold)
                .await
                .expect("audit");
            found.into_iter().map(|v| v.check).collect::<Vec<_>>()
        }
    };
    let fresh = || async {
        let id = stack.submit(&pool, yaml, json!({})).await.expect("submit");
        let run = stack
            .wait(&pool, id, Duration::from_secs(30))
            .await
            .expect("finishes");
        assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
        id
    };
    let clean = fresh().await;
    assert!(audit(clean, 60.0).await.is_empty());

    let corruptions: &[(&str, &str)] = &[
        (
            "one_task_execution_per_task",
            "DELETE FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'c'",
        ),
        (
            "item_counters_match_executions",
            "UPDATE task_executions SET items_succeeded = 0 WHERE workflow_execution_id = $1 AND task_name = 'a'",
        ),
        (
            "dispatched_after_needs_terminal",
            "UPDATE task_executions SET finished_at = finished_at + interval '1 hour' \
             WHERE workflow_execution_id = $1 AND task_name = 'a'",
        ),
        (
            "skipped_tasks_never_dispatched",
            "INSERT INTO executions (id, task_execution_id, workflow_execution_id, attempt, status, input, queued_at) \
             SELECT gen_random_uuid(), id, workflow_execution_id, 1, 'succeeded', '{}', finished_at \
             FROM task_executions WHERE workflow_execution_id = $1 AND task_name = 'c'",
        ),
        (
            "terminal_runs_have_terminal_children",
            "UPDATE task_executions SET status = 'running' WHERE workflow_execution_id = $1 AND task_name = 'b'",
        ),
        (
            "one_execution_per_unit",
            "INSERT INTO executions (id, task_execution_id, workflow_execution_id, attempt, status, input) \
             SELECT gen_random_uuid(), task_execution_id, workflow_execution_id, 2, 'succeeded', '{}' \
             FROM executions WHERE workflow_execution_id = $1 AND attempt = 1 LIMIT 1",
        ),
        (
            "outbox_drained",
            // Not yet due, so no relay takes it; the audit below runs with a
            // threshold of -1 h to see it as overdue.
            "INSERT INTO outbox (exchange, routing_key, payload, not_before) \
             VALUES ('weft.events', 'x', jsonb_build_object('type', 'workflow_submitted', 'workflow_execution_id', $1::uuid), \
                     now() + interval '30 minutes')",
        ),
    ];
    for (check, corruption) in corruptions {
        let id = fresh().await;
        sqlx::query(sqlx::AssertSqlSafe(*corruption))
            .bind(id.as_uuid())
            .execute(&mut *conn)
            .await
            .expect(check);
        let threshold = if *check == "outbox_drained" {
            -3600.0
        } else {
            60.0
        };
        let found = audit(id, threshold).await;
        assert!(
            found.iter().any(|c| c == check),
            "{check} not detected; found {found:?}"
        );
    }
    sqlx::query("DELETE FROM outbox WHERE routing_key = 'x'")
        .execute(&mut *conn)
        .await
        .expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_reaped_after_its_heartbeats_stop_and_the_task_retried_elsewhere() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let mut env = env(&stack);
    env.push(("WEFT_HEARTBEAT_GRACE", "2".into()));
    env.push(("WEFT_REAPER_INTERVAL", "0.3".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _executor = Daemon::start("executor", &["executor"], &env).expect("executor");
    let mut hung =
        Daemon::start("worker-hung", &["worker", "--queue", "hang"], &env).expect("worker");
    // The first attempt outlasts any delay before the STOP lands (a
    // 1-second one could finish first on a loaded machine, and the test
    // would see no reaping); the retry finds the marker and is done at once.
    let marker = std::env::temp_dir().join(format!("weft-hang-{}.pid", uuid::Uuid::new_v4()));
    let yaml = r#"
name: hang
input: { marker: null }
tasks:
  nap:
    action: shell
    input: { command: ["sh", "-c", 'if [ -e "$1" ]; then exit 0; fi; echo $$ > "$1"; exec sleep 120', "nap", "{{ input.marker }}"] }
    queue: hang
    retry: { attempts: 2, delay: 10ms }
"#;
    let id = stack
        .submit(
            &pool,
            yaml,
            json!({ "marker": marker.display().to_string() }),
        )
        .await
        .expect("submit");
    wait_for_execution(&pool, id, 1, "running", Duration::from_secs(30))
        .await
        .expect("the action starts");
    // `running` is reported before the action starts: wait for its marker,
    // or a worker frozen before the shell ran would leave the retry to
    // take the long path.
    read_pid(&marker, Duration::from_secs(30)).await;
    // Freeze the worker: its connection stays open, so the broker does not
    // redeliver; only the missing heartbeats tell that it is gone.
    hung.signal("STOP");
    let hung_pid = hung.pid().expect("running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_state(hung_pid) != Some('T') {
        assert!(
            Instant::now() < deadline,
            "worker {hung_pid} is not stopped: {:?}",
            process_state(hung_pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_execution(&pool, id, 1, "timed_out", Duration::from_secs(30))
        .await
        .expect("the reaper reaps the frozen worker's execution");
    // The frozen worker may hold the retry's dispatch too (it still has
    // prefetch room); once it dies for good the broker hands everything it
    // held to the healthy worker.
    let _healthy =
        Daemon::start("worker-ok", &["worker", "--queue", "hang"], &env).expect("worker");
    hung.kill();
    let run = stack
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    let attempts: Vec<(i32, String, Option<String>)> = sqlx::query_as(
        "SELECT attempt, status, error FROM executions WHERE workflow_execution_id = $1 ORDER BY attempt",
    )
    .bind(id.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("attempts");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].1, "timed_out");
    assert!(
        attempts[0]
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("lost"),
        "{attempts:?}"
    );
    assert_eq!(attempts[1].1, "succeeded");
    // The first attempt's `sleep` outlives its frozen worker (SIGSTOP and
    // SIGKILL reach the worker, not its children): end it.
    if let Some(pid) = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.starts_with("sleep\0"))
    {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let _ = std::fs::remove_file(marker);
}

/// Waits (at most `timeout`) until an action wrote its pid to `file`.
async fn read_pid(file: &std::path::Path, timeout: Duration) -> u32 {
    let deadline = Instant::now() + timeout;
    loop {
        // The shell may have created the file and not yet written it.
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the action wrote no pid to {} within {timeout:?}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state letter of a process (`R`, `S`, `T` for stopped, `Z`, …).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S …`: the state follows the last `)`.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}
