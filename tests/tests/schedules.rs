//! Cron schedules (issue 16, item 2): each tick starts exactly one run
//! whatever the executors do, missed ticks follow `--catch-up`, `--overlap`
//! and pause/resume hold, bad flags are named, and the audit sees a tick
//! fired twice or a cursor moved back. Executors run as processes where a
//! test kills them; schedules are made with the `weft` binary, as a user
//! would.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use weft_tests::cli::{Cli, failed, ok};
use weft_tests::process::Daemon;
use weft_tests::{Stack, StackOptions};

/// `weft ARGS` on the stack.
fn weft(stack: &Stack, args: &[&str]) -> Output {
    Cli::new(stack).run(args)
}

/// Registers `yaml` (from a file, as `weft workflow apply` reads it).
fn apply(stack: &Stack, yaml: &str) {
    let dir: PathBuf = std::env::temp_dir().join(format!("weft-sched-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("workflow.yaml");
    std::fs::write(&path, yaml).expect("write");
    ok(&weft(
        stack,
        &["workflow", "apply", path.to_str().expect("utf-8")],
    ));
}

/// Echoes its tick: the run's output proves `workflow.scheduled_at`.
const TICKER: &str = "name: ticker\ntasks:\n  at: { action: echo, input: { tick: \"{{ workflow.scheduled_at }}\" } }\noutput: { tick: \"{{ tasks.at.result.tick }}\" }\n";

fn env(stack: &Stack, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("WEFT_DATABASE_URL", stack.database_url.clone()),
        ("WEFT_AMQP_URL", stack.amqp_url.clone()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

fn start(name: &str, args: &[&str], env: &[(&'static str, String)]) -> Daemon {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Daemon::start(name, args, &env).expect(name)
}

/// One run of a schedule: its tick, status, output and creation time.
type RunFacts = (DateTime<Utc>, String, Option<Value>, DateTime<Utc>);

/// A schedule's runs, by tick.
async fn runs_of(pool: &PgPool, schedule: &str) -> Vec<RunFacts> {
    sqlx::query_as(
        "SELECT scheduled_at, status, output, created_at FROM workflow_executions \
         WHERE schedule_name = $1 ORDER BY scheduled_at",
    )
    .bind(schedule)
    .fetch_all(pool)
    .await
    .expect("runs")
}

/// Waits until every run of the schedule has ended.
async fn settle(pool: &PgPool, schedule: &str) {
    for _ in 0..600 {
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workflow_executions WHERE schedule_name = $1 \
             AND status NOT IN ('succeeded', 'failed', 'canceled')",
        )
        .bind(schedule)
        .fetch_one(pool)
        .await
        .expect("count");
        if live == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("runs of {schedule} did not end");
}

/// Sleeps until `offset` past the next whole second (by this clock; the
/// database's is the same machine's).
async fn at_second_plus(offset: Duration) {
    let now = Utc::now();
    let into = Duration::from_nanos(u64::from(now.timestamp_subsec_nanos()));
    let wait = if into < offset {
        offset - into
    } else {
        Duration::from_secs(1) - into + offset
    };
    tokio::time::sleep(wait).await;
}

async fn audit_all(pool: &PgPool) -> Vec<String> {
    let mut conn = pool.acquire().await.expect("conn");
    weft_store::audit::audit(&mut conn, None, 60.0)
        .await
        .expect("audit")
        .into_iter()
        .map(|v| format!("{}: {}", v.check, v.detail))
        .collect()
}

fn seconds(ticks: &[DateTime<Utc>]) -> Vec<i64> {
    ticks.iter().map(DateTime::timestamp).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_starts_one_run_across_three_executors_and_a_kill() {
    const SECONDS: u64 = 60;
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let env = env(&stack, &[]);
    let mut executors: Vec<Daemon> = (0..3)
        .map(|i| start(&format!("executor-{i}"), &["executor"], &env))
        .collect();
    let _worker = start("worker", &["worker"], &env);
    apply(&stack, TICKER);
    ok(&weft(
        &stack,
        &[
            "schedule",
            "create",
            "every-second",
            "--workflow",
            "ticker",
            "--cron",
            "@every 1s",
            "--catch-up",
            "all",
        ],
    ));
    let began = Utc::now();
    tokio::time::sleep(Duration::from_secs(SECONDS / 2)).await;
    executors[0].kill();
    tokio::time::sleep(Duration::from_secs(SECONDS / 2)).await;
    ok(&weft(&stack, &["schedule", "pause", "every-second"]));
    let ended = Utc::now();
    settle(&pool, "every-second").await;

    let runs = runs_of(&pool, "every-second").await;
    let ticks: Vec<DateTime<Utc>> = runs.iter().map(|r| r.0).collect();
    let distinct: BTreeSet<i64> = seconds(&ticks).into_iter().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick ran twice");
    // None missed: every whole second from the first tick to the last.
    let (first, last) = (ticks[0].timestamp(), ticks[ticks.len() - 1].timestamp());
    assert_eq!(
        distinct,
        (first..=last).collect::<BTreeSet<_>>(),
        "ticks missing between the first and the last"
    );
    // One run a second over the window, give or take the edges.
    let window = (ended - began).num_milliseconds() as f64 / 1000.0;
    assert!(
        (ticks.len() as f64 - window).abs() <= 1.5,
        "{} runs over {window:.1} s",
        ticks.len()
    );
    assert!((60..=62).contains(&ticks.len()), "{} runs", ticks.len());
    // Each ran, and saw its own tick.
    for (tick, status, output, created) in &runs {
        assert_eq!(status, "succeeded", "tick {tick}");
        let expected = weft_common::schedule::tick_text(*tick);
        assert_eq!(
            output.as_ref().and_then(|o| o["tick"].as_str()),
            Some(expected.as_str())
        );
        assert!(created >= tick, "run of {tick} created early, at {created}");
    }
    assert_eq!(audit_all(&pool).await, Vec::<String>::new());
    let show: Value = serde_json::from_str(&ok(&weft(
        &stack,
        &["schedule", "show", "every-second", "--json"],
    )))
    .expect("json");
    assert_eq!(show["schedule"]["runs_started"], ticks.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_missed_ticks_follow_the_catch_up_policy() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    // A tick more than 50 ms late counts as missed under `none`.
    let env = env(&stack, &[("WEFT_SCHEDULE_GRACE", "0.05")]);
    let mut executor = start("executor", &["executor"], &env);
    let _worker = start("worker", &["worker"], &env);
    apply(&stack, TICKER);
    for policy in ["none", "latest", "all"] {
        ok(&weft(
            &stack,
            &[
                "schedule",
                "create",
                policy,
                "--workflow",
                "ticker",
                "--cron",
                "@every 1s",
                "--catch-up",
                policy,
            ],
        ));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Down from x.5 to (x+5).15: ticks x+1 … x+5 come while none runs.
    at_second_plus(Duration::from_millis(500)).await;
    executor.kill();
    let down = Utc::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    at_second_plus(Duration::from_millis(150)).await;
    executor.restart().expect("restart");
    let up = Utc::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for policy in ["none", "latest", "all"] {
        ok(&weft(&stack, &["schedule", "pause", policy]));
        settle(&pool, policy).await;
    }
    let outage = |runs: &[RunFacts]| -> Vec<i64> {
        runs.iter()
            .filter(|r| r.0 > down && r.0 < up)
            .map(|r| r.0.timestamp())
            .collect()
    };
    let expected: Vec<i64> = (down.timestamp() + 1..=up.timestamp()).collect();
    assert_eq!(expected.len(), 5);

    let all = runs_of(&pool, "all").await;
    assert_eq!(
        outage(&all),
        expected,
        "catch-up all runs every missed tick"
    );
    let latest = runs_of(&pool, "latest").await;
    assert_eq!(
        outage(&latest),
        vec![up.timestamp()],
        "catch-up latest runs the newest missed tick only"
    );
    let none = runs_of(&pool, "none").await;
    assert_eq!(
        outage(&none),
        Vec::<i64>::new(),
        "catch-up none runs no missed tick"
    );
    for runs in [&all, &latest, &none] {
        assert!(runs.iter().all(|r| r.1 == "succeeded"));
        // Ticks after the outage run on time again.
        assert!(runs.iter().any(|r| r.0 > up), "nothing after the outage");
    }
    // The missed ticks are recorded where `schedule show` shows them.
    // (`none` may also miss a tick outside the outage that started over
    // 50 ms late on this busy machine: at least the five.)
    for (policy, missed) in [("none", 5), ("latest", 4)] {
        let show: Value =
            serde_json::from_str(&ok(&weft(&stack, &["schedule", "show", policy, "--json"])))
                .expect("json");
        let counted = show["schedule"]["ticks_missed"].as_i64().unwrap_or(0);
        if policy == "none" {
            assert!(counted >= missed, "{policy}: {show}");
        } else {
            assert_eq!(counted, missed, "{policy}: {show}");
        }
        let skipped = show["skipped"].as_array().expect("skipped");
        assert!(
            skipped.iter().any(|s| s["reason"] == "missed"),
            "{policy}: {show}"
        );
    }
    assert_eq!(audit_all(&pool).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_and_cancel_previous_and_pause_resume() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    apply(
        &stack,
        "name: slow\ninput: { seconds: 2.5 }\ntasks:\n  nap: { action: sleep, input: { seconds: \"{{ input.seconds }}\" } }\n",
    );
    ok(&weft(
        &stack,
        &[
            "schedule",
            "create",
            "skipper",
            "--workflow",
            "slow",
            "--cron",
            "@every 1s",
            "--overlap",
            "skip",
        ],
    ));
    ok(&weft(
        &stack,
        &[
            "schedule",
            "create",
            "replacer",
            "--workflow",
            "slow@1",
            "--cron",
            "* * * * * *",
            "--overlap",
            "cancel_previous",
            "--input",
            "seconds=30",
        ],
    ));
    tokio::time::sleep(Duration::from_secs(7)).await;
    ok(&weft(&stack, &["schedule", "pause", "skipper"]));
    ok(&weft(&stack, &["schedule", "pause", "replacer"]));
    // skip: runs never overlap, and the ticks between are recorded.
    settle(&pool, "skipper").await;
    let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT created_at, finished_at FROM workflow_executions WHERE schedule_name = 'skipper' \
         ORDER BY scheduled_at",
    )
    .fetch_all(&pool)
    .await
    .expect("spans");
    assert!(spans.len() >= 2, "{spans:?}");
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs overlap: {pair:?}");
    }
    let show: Value = serde_json::from_str(&ok(&weft(
        &stack,
        &["schedule", "show", "skipper", "--json"],
    )))
    .expect("json");
    let skipped = show["skipped"].as_array().expect("skipped");
    assert!(
        skipped.len() >= 3
            && skipped.iter().all(|s| s["reason"] == "overlap"
                && s["detail"].as_str().is_some_and(|d| d.contains("still"))),
        "{show}"
    );
    // cancel_previous: every run but the newest was canceled by the next tick.
    let replaced: Vec<(String,)> = sqlx::query_as(
        "SELECT status FROM workflow_executions WHERE schedule_name = 'replacer' ORDER BY scheduled_at",
    )
    .fetch_all(&pool)
    .await
    .expect("runs");
    assert!(replaced.len() >= 4, "{replaced:?}");
    for (status,) in &replaced[..replaced.len() - 1] {
        assert!(
            status == "canceled" || status == "canceling",
            "{replaced:?}"
        );
    }
    let newest = &replaced[replaced.len() - 1].0;
    assert!(newest == "running" || newest == "pending", "{replaced:?}");

    // pause/resume: no tick fires while paused, none is owed after.
    let count = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM workflow_executions WHERE schedule_name = 'skipper'",
        )
        .fetch_one(&pool)
        .await
        .expect("count")
    };
    let paused_with = count().await;
    let paused_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count().await, paused_with, "a paused schedule fired");
    let out = ok(&weft(&stack, &["schedule", "resume", "skipper"]));
    assert!(out.contains("resumed"), "{out}");
    let resumed_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        count().await > paused_with,
        "a resumed schedule did not fire"
    );
    let during: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM workflow_executions WHERE schedule_name = 'skipper' \
         AND scheduled_at > $1 AND scheduled_at < $2",
    )
    .bind(paused_at)
    .bind(resumed_at - chrono::Duration::milliseconds(1000))
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(during, 0, "ticks of the pause were run");
    ok(&weft(&stack, &["schedule", "delete", "skipper"]));
    ok(&weft(&stack, &["schedule", "delete", "replacer"]));
    let err = failed(&weft(&stack, &["schedule", "show", "skiper"]));
    assert!(err.contains("no schedule named `skiper`"), "{err}");
    // The runs are kept, still naming their schedule.
    let text = ok(&weft(&stack, &["list"]));
    assert!(text.contains("skipper"), "{text}");
}

#[test]
fn bad_flags_are_refused_naming_the_flag() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    apply(
        &stack,
        "name: needs-input\ninput: { n: { type: integer } }\ntasks:\n  a: { action: noop }\n",
    );
    let create = |extra: &[&str]| -> String {
        let mut args = vec!["schedule", "create", "s"];
        args.extend_from_slice(extra);
        failed(&weft(&stack, &args))
    };
    let err = create(&[
        "--workflow",
        "needs-input",
        "--cron",
        "* * *",
        "--input",
        "n=1",
    ]);
    assert!(
        err.contains("--cron `* * *`") && err.contains("3 fields"),
        "{err}"
    );
    let err = create(&[
        "--workflow",
        "needs-input",
        "--cron",
        "99 * * * *",
        "--input",
        "n=1",
    ]);
    assert!(err.contains("--cron `99 * * * *`"), "{err}");
    let err = create(&[
        "--workflow",
        "needs-input",
        "--cron",
        "@hourly",
        "--timezone",
        "Europe/Pari",
        "--input",
        "n=1",
    ]);
    assert!(
        err.contains("--timezone `Europe/Pari`") && err.contains("Europe/Paris"),
        "{err}"
    );
    let err = create(&["--workflow", "needs-inptu", "--cron", "@hourly"]);
    assert!(
        err.contains("--workflow `needs-inptu`") && err.contains("did you mean `needs-input`?"),
        "{err}"
    );
    let err = create(&["--workflow", "needs-input@7", "--cron", "@hourly"]);
    assert!(
        err.contains("--workflow") && err.contains("no version 7"),
        "{err}"
    );
    let err = create(&[
        "--workflow",
        "needs-input",
        "--cron",
        "@hourly",
        "--input",
        "n=ten",
    ]);
    assert!(err.contains("--input") && err.contains('n'), "{err}");
    let err = create(&["--workflow", "needs-input", "--cron", "@hourly"]);
    assert!(
        err.contains("--input") && err.contains("required input(s): n"),
        "{err}"
    );
    let err = create(&[
        "--workflow",
        "needs-input",
        "--cron",
        "@hourly",
        "--input",
        "n=1",
        "--overlap",
        "sometimes",
    ]);
    assert!(
        err.contains("--overlap") && err.contains("cancel_previous"),
        "{err}"
    );
    // A valid one; the name is then taken; its workflow cannot be removed.
    ok(&weft(
        &stack,
        &[
            "schedule",
            "create",
            "s",
            "--workflow",
            "needs-input",
            "--cron",
            "@hourly",
            "--input",
            "n=1",
        ],
    ));
    let err = create(&[
        "--workflow",
        "needs-input",
        "--cron",
        "@hourly",
        "--input",
        "n=1",
    ]);
    assert!(err.contains("already exists"), "{err}");
    let err = failed(&weft(&stack, &["workflow", "rm", "needs-input"]));
    assert!(err.contains("schedule `s`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_a_tick_both_run_and_skipped_and_a_cursor_moved_back() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    apply(&stack, TICKER);
    ok(&weft(
        &stack,
        &[
            "schedule",
            "create",
            "audited",
            "--workflow",
            "ticker",
            "--cron",
            "@every 1s",
        ],
    ));
    for _ in 0..100 {
        if !runs_of(&pool, "audited").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ok(&weft(&stack, &["schedule", "pause", "audited"]));
    settle(&pool, "audited").await;
    assert_eq!(audit_all(&pool).await, Vec::<String>::new());
    let runs = runs_of(&pool, "audited").await;
    let tick = runs[0].0;
    // Corruptions: the tick also recorded as skipped; the cursor moved
    // back onto a tick that ran; a run created before its tick.
    sqlx::query(
        "INSERT INTO schedule_skips (schedule_id, tick, reason, detail) \
         SELECT id, $1, 'overlap', 'forged' FROM schedules WHERE name = 'audited'",
    )
    .bind(tick)
    .execute(&pool)
    .await
    .expect("forge a skip");
    sqlx::query("UPDATE schedules SET next_tick = $1, next_fire_at = $1 WHERE name = 'audited'")
        .bind(tick)
        .execute(&pool)
        .await
        .expect("move the cursor back");
    sqlx::query(
        "UPDATE workflow_executions SET created_at = scheduled_at - interval '5 seconds' \
         WHERE schedule_name = 'audited' AND scheduled_at = $1",
    )
    .bind(tick)
    .execute(&pool)
    .await
    .expect("backdate a run");
    let found = audit_all(&pool).await;
    for expected in [
        "schedule_tick_fired_once: tick",
        "schedule_cursor_after_fired_ticks: schedule `audited` will next fire tick",
        "before its tick",
    ] {
        assert!(
            found.iter().any(|v| v.contains(expected)),
            "{expected}: {found:?}"
        );
    }
    // `weft audit` exits non-zero on them.
    let out = weft(&stack, &["audit"]);
    assert!(!out.status.success());
}
