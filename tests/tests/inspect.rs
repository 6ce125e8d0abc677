//! Seeing inside a run with the `weft` binary: a flaky item's three
//! attempts in `status --task` and `logs`, a `weft retry` round as round 2,
//! `logs --follow` printing attempts as they end and returning when the run
//! does, and the 64 KiB tail of a long stream.
//!
//! The daemons run in process (`Stack`); the CLI is this build's binary,
//! run as a user runs it.

use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_tests::process::weft_binary;
use weft_tests::{Stack, StackOptions};

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        Stack::start(StackOptions {
            worker_concurrency: 4,
            ..StackOptions::default()
        })
        .expect("stack")
    })
}

fn weft(args: &[&str]) -> Command {
    let mut command = Command::new(weft_binary().expect("weft binary"));
    command
        .args(args)
        .env("WEFT_DATABASE_URL", &stack().database_url)
        .env("WEFT_AMQP_URL", &stack().amqp_url)
        .env("RUST_LOG", "error");
    command
}

fn run(args: &[&str]) -> Output {
    let out = weft(args).output().expect("weft runs");
    assert!(
        out.status.success(),
        "weft {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(args: &[&str]) -> String {
    String::from_utf8(run(args).stdout).expect("utf-8")
}

fn json_of(args: &[&str]) -> Value {
    let out = run(args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "weft {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Submits `yaml` and waits for the run to end in `expected`.
async fn submit_and_wait(
    yaml: &str,
    input: Value,
    expected: WorkflowStatus,
) -> WorkflowExecutionId {
    let pool = stack().pool().await.expect("pool");
    let id = stack().submit(&pool, yaml, input).await.expect("submit");
    let run = stack()
        .wait(&pool, id, Duration::from_secs(60))
        .await
        .expect("the run ends");
    assert_eq!(run.status, expected, "run {id}: {:?}", run.error);
    id
}

fn scratch_dir() -> String {
    let dir = std::env::temp_dir().join(format!("weft-inspect-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.display().to_string()
}

/// Item `b` fails twice, then succeeds: it counts its tries in a file.
const FLAKY: &str = r#"
name: flaky
input: { dir: null }
tasks:
  fan:
    with_items: ["a", "b", "c"]
    action: shell
    retry: { attempts: 3, delay: 10ms }
    input:
      script: |
        echo "out $ITEM"
        echo "err $ITEM" >&2
        if [ "$ITEM" = b ]; then
          n=$(( $(cat "$DIR/tries" 2>/dev/null || echo 0) + 1 ))
          echo "$n" > "$DIR/tries"
          echo "try $n"
          [ "$n" -ge 3 ] || exit 7
        fi
      env: { ITEM: "{{ item }}", DIR: "{{ input.dir }}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_items_three_attempts_appear_in_status_and_logs() {
    let dir = scratch_dir();
    let id = submit_and_wait(FLAKY, json!({ "dir": dir }), WorkflowStatus::Succeeded).await;
    let id = id.to_string();

    let history = json_of(&["status", &id, "--task", "fan", "--json"]);
    let rows = history.as_array().expect("an array");
    let b: Vec<&Value> = rows.iter().filter(|r| r["item_index"] == 1).collect();
    let seen: Vec<(&Value, &Value, &Value)> = b
        .iter()
        .map(|r| (&r["attempt"], &r["status"], &r["round"]))
        .collect();
    assert_eq!(
        seen,
        [
            (&json!(1), &json!("failed"), &json!(1)),
            (&json!(2), &json!("failed"), &json!(1)),
            (&json!(3), &json!("succeeded"), &json!(1)),
        ]
    );
    for row in &b {
        assert_eq!(row["item"], "\"b\"", "{row}");
        assert!(row["worker"].is_string(), "{row}");
        assert!(row["duration_ms"].is_i64(), "{row}");
    }
    assert!(
        b[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("exit code 7")),
        "{}",
        b[0]
    );
    // The other items ran once each.
    assert_eq!(rows.len(), 5, "{history:#}");

    // The table: one line per attempt, the item's value next to its index.
    let table = text(&["status", &id, "--task", "fan"]);
    assert_eq!(table.lines().count(), 1 + 5, "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("1 (\"b\")")).count(),
        3,
        "{table}"
    );

    // logs --json: each attempt's own stdout, stderr and exit code.
    let logs = json_of(&["logs", &id, "fan", "--item", "1", "--json"]);
    let logs = logs.as_array().expect("an array");
    assert_eq!(logs.len(), 3, "{logs:#?}");
    for (n, log) in logs.iter().enumerate() {
        let n = n + 1;
        assert_eq!(log["attempt"], n, "{log}");
        assert_eq!(
            log["logs"]["stdout"]["text"],
            format!("out b\ntry {n}\n"),
            "{log}"
        );
        assert_eq!(log["logs"]["stderr"]["text"], "err b\n", "{log}");
        let code = if n < 3 { 7 } else { 0 };
        assert_eq!(log["logs"]["exit_code"], code, "{log}");
    }

    // The text form: a headed block per attempt, failed ones included.
    let blocks = text(&["logs", &id, "fan", "--item", "1"]);
    for n in 1..=3 {
        let exit = if n < 3 {
            "failed (exit code 7)"
        } else {
            "succeeded (exit code 0)"
        };
        let header = format!("==> fan · item 1 (\"b\") · round 1 attempt {n} · {exit} · worker ");
        assert!(blocks.contains(&header), "no `{header}` in:\n{blocks}");
        assert!(
            blocks.contains(&format!("--- stdout ---\nout b\ntry {n}\n")),
            "{blocks}"
        );
    }
    assert_eq!(
        blocks.matches("--- stderr ---\nerr b\n").count(),
        3,
        "{blocks}"
    );
    // --attempt picks one attempt of the round.
    let second = json_of(&[
        "logs",
        &id,
        "fan",
        "--item",
        "1",
        "--attempt",
        "2",
        "--json",
    ]);
    assert_eq!(second.as_array().map(Vec::len), Some(1), "{second:#}");
    assert_eq!(second[0]["logs"]["stdout"]["text"], "out b\ntry 2\n");
}

/// Fails until its marker file exists.
const GATED: &str = r#"
name: gated
input: { dir: null }
tasks:
  gate:
    action: shell
    input:
      script: 'echo "checking"; test -e "$DIR/open" || { echo "closed" >&2; exit 1; }'
      env: { DIR: "{{ input.dir }}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_round_appears_as_round_two() {
    let dir = scratch_dir();
    let id = submit_and_wait(GATED, json!({ "dir": dir }), WorkflowStatus::Failed).await;
    std::fs::write(format!("{dir}/open"), "").expect("marker");
    let id_text = id.to_string();
    run(&["retry", &id_text]);
    let pool = stack().pool().await.expect("pool");
    let mut status = WorkflowStatus::Failed;
    for _ in 0..600 {
        let mut conn = pool.acquire().await.expect("conn");
        let run = weft_store::runs::get(&mut conn, id)
            .await
            .expect("read")
            .expect("run");
        status = run.status;
        if run.run_attempt == 2 && status.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, WorkflowStatus::Succeeded);

    let history = json_of(&["status", &id_text, "--task", "gate", "--json"]);
    let seen: Vec<(&Value, &Value, &Value, &Value)> = history
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| {
            (
                &r["round"],
                &r["attempt"],
                &r["attempt_number"],
                &r["status"],
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (&json!(1), &json!(1), &json!(1), &json!("failed")),
            (&json!(2), &json!(1), &json!(2), &json!("succeeded")),
        ]
    );
    // `weft status`: the current round's figures, and a marker of the
    // earlier one.
    let run = json_of(&["status", &id_text, "--json"]);
    let task = &run["tasks"][0];
    assert_eq!(
        (&task["attempts"], &task["round"], &task["earlier_rounds"]),
        (&json!(1), &json!(2), &json!(1)),
        "{task}"
    );
    let table = text(&["status", &id_text]);
    assert!(table.contains("1 · round 2 (1 earlier)"), "{table}");
    let blocks = text(&["logs", &id_text]);
    assert!(
        blocks.contains("==> gate · round 1 attempt 1 · failed (exit code 1)"),
        "{blocks}"
    );
    assert!(blocks.contains("--- stderr ---\nclosed\n"), "{blocks}");
    assert!(
        blocks.contains("==> gate · round 2 attempt 1 · succeeded (exit code 0)"),
        "{blocks}"
    );
}

/// Three items one after the other, each a fraction of a second.
const SLOW: &str = r#"
name: slow
tasks:
  fan:
    with_items: [1, 2, 3]
    concurrency: 1
    action: shell
    input:
      script: 'sleep 0.4; echo "item $ITEM done"'
      env: { ITEM: "{{ item }}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_prints_attempts_as_they_end_and_returns_with_the_run() {
    let pool = stack().pool().await.expect("pool");
    let id = stack()
        .submit(&pool, SLOW, json!({}))
        .await
        .expect("submit");
    let id_text = id.to_string();
    let followed_at: DateTime<Utc> = Utc::now();
    let follower = weft(&["logs", &id_text, "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft logs --follow");
    let out = tokio::task::spawn_blocking(move || follower.wait_with_output())
        .await
        .expect("join")
        .expect("the follower ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It returned because the run ended, not because it gave up.
    let mut conn = pool.acquire().await.expect("conn");
    let run = weft_store::runs::get(&mut conn, id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(run.status, WorkflowStatus::Succeeded);

    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let items: Vec<&Value> = lines.iter().map(|l| &l["item_index"]).collect();
    assert_eq!(items, [&json!(0), &json!(1), &json!(2)], "{lines:#?}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["status"], "succeeded");
        assert_eq!(
            line["logs"]["stdout"]["text"],
            format!("item {} done\n", i + 1)
        );
    }
    // The last attempts ended after the follower started: it printed
    // what happened while it waited, not only what was there.
    let last: DateTime<Utc> =
        serde_json::from_value(lines[2]["finished_at"].clone()).expect("a time");
    assert!(last > followed_at, "{last} <= {followed_at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_keeps_its_last_64_kib() {
    // 200,000 bytes of "0123456789" lines, then "END": over the tail.
    let yaml = r#"
name: chatty
tasks:
  talk:
    action: shell
    input:
      script: 'yes 012345678 | head -c 200000; echo END; echo "short" >&2'
"#;
    let id = submit_and_wait(yaml, json!({}), WorkflowStatus::Succeeded).await;
    let logs = json_of(&["logs", &id.to_string(), "talk", "--json"]);
    let stdout = &logs[0]["logs"]["stdout"];
    let text = stdout["text"].as_str().expect("text");
    assert_eq!(text.len(), 64 * 1024);
    assert!(
        text.ends_with("012345678\nEND\n"),
        "{}",
        &text[text.len() - 30..]
    );
    assert_eq!(stdout["dropped"], 200_004 - 64 * 1024);
    assert_eq!(logs[0]["logs"]["stderr"]["text"], "short\n");
    // The text form says how much was dropped.
    let blocks = text_of_logs(&id.to_string());
    assert!(
        blocks
            .contains("--- stdout (the last 65,536 bytes; 134,468 bytes before them dropped) ---"),
        "{}",
        &blocks[..300.min(blocks.len())]
    );
}

fn text_of_logs(id: &str) -> String {
    text(&["logs", id, "talk"])
}
