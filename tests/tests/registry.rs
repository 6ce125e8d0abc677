//! Registered workflows (issue 16, item 1): `weft workflow apply` stores
//! versions (identical content is a no-op, concurrent applies never share
//! a number), `weft submit NAME[@VERSION]` runs the text of that version,
//! and a run keeps its version whatever is applied after it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use weft_common::{Bundle, WorkflowExecutionId, WorkflowStatus};
use weft_store::registry::{self, Applied};
use weft_tests::cli::{Cli, failed, ok};
use weft_tests::{Stack, StackOptions};

/// `weft ARGS` on the stack.
fn weft(stack: &Stack, args: &[&str]) -> Output {
    Cli::new(stack).run(args)
}

fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write");
    path
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-registry-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// A workflow whose output says which text ran.
fn says(name: &str, word: &str) -> String {
    format!(
        "name: {name}\ninput: {{ who: world }}\ntasks:\n  say: {{ action: echo, input: {{ word: {word}, who: \"{{{{ input.who }}}}\" }} }}\noutput: {{ word: \"{{{{ tasks.say.result.word }}}}\", who: \"{{{{ tasks.say.result.who }}}}\" }}\n"
    )
}

fn bundle(text: &str) -> Bundle {
    Bundle::load(
        PathBuf::from("mem.yaml"),
        "mem.yaml",
        text.to_owned(),
        |p| Err(format!("{} is not readable here", p.display())),
    )
    .expect("valid")
}

#[test]
fn apply_stores_versions_and_identical_content_is_a_no_op() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let dir = temp_dir();
    let file = write(&dir, "greet.yaml", &says("greet", "one"));
    let file = file.to_str().expect("utf-8");
    let out = ok(&weft(&stack, &["workflow", "apply", file]));
    assert!(out.contains("greet@1 applied"), "{out}");
    let out = ok(&weft(&stack, &["workflow", "apply", file]));
    assert!(out.contains("greet@1 unchanged"), "{out}");
    write(&dir, "greet.yaml", &says("greet", "two"));
    let out = ok(&weft(&stack, &["workflow", "apply", file, "--json"]));
    let applied: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(applied[0]["version"], 2);
    assert_eq!(applied[0]["created"], true);

    let list: Value =
        serde_json::from_str(&ok(&weft(&stack, &["workflow", "list", "--json"]))).expect("json");
    assert_eq!(list[0]["name"], "greet");
    assert_eq!(list[0]["version"], 2);
    assert_eq!(list[0]["versions"], 2);
    let show: Value = serde_json::from_str(&ok(&weft(
        &stack,
        &["workflow", "show", "greet@1", "--json"],
    )))
    .expect("json");
    assert_eq!(show["version"], 1);
    assert!(
        show["source"]
            .as_str()
            .expect("source")
            .contains("word: one")
    );

    // An invalid file stores nothing, and says where the problem is.
    let bad = write(
        &dir,
        "bad.yaml",
        "name: bad\ntasks:\n  a: { action: echo, neeeds: [] }\n",
    );
    let err = failed(&weft(
        &stack,
        &["workflow", "apply", bad.to_str().expect("utf-8")],
    ));
    assert!(
        err.contains("bad.yaml") && err.contains("nothing applied"),
        "{err}"
    );

    // rm: gone from the list and from submit; numbers are not reused.
    ok(&weft(&stack, &["workflow", "rm", "greet"]));
    let err = failed(&weft(&stack, &["workflow", "show", "greet"]));
    assert!(err.contains("no workflow named `greet`"), "{err}");
    let out = ok(&weft(&stack, &["workflow", "apply", file]));
    assert!(out.contains("greet@3 applied"), "{out}");
    let err = failed(&weft(&stack, &["workflow", "rm", "gret"]));
    assert!(err.contains("did you mean `greet`?"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_never_share_a_version_number() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    // Eight different texts of one name at once: eight versions, 1 to 8.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            registry::apply(&pool, &bundle(&says("race", &format!("w{i}"))), "race.yaml").await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        match t.await.expect("task").expect("apply") {
            Applied::Created { version } => versions.push(version),
            Applied::Unchanged { version } => {
                panic!("different content was unchanged at {version}")
            }
        }
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
    // Eight identical texts at once: one version, the others no-ops.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            registry::apply(&pool, &bundle(&says("same", "w")), "same.yaml").await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let applied = t.await.expect("task").expect("apply");
        assert_eq!(applied.version(), 1);
        created += usize::from(matches!(applied, Applied::Created { .. }));
    }
    assert_eq!(created, 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM registered_workflows")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_by_name_runs_that_version_and_runs_keep_theirs() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let dir = temp_dir();
    let file = write(&dir, "greet.yaml", &says("greet", "one"));
    let file = file.to_str().expect("utf-8");
    ok(&weft(&stack, &["workflow", "apply", file]));

    let submit = |args: &[&str]| -> WorkflowExecutionId {
        let mut all = vec!["submit"];
        all.extend_from_slice(args);
        ok(&weft(&stack, &all)).trim().parse().expect("a run id")
    };
    let first = submit(&["greet", "--input", "who=ada"]);
    write(&dir, "greet.yaml", &says("greet", "two"));
    ok(&weft(&stack, &["workflow", "apply", file]));
    let newest = submit(&["greet"]);
    let pinned = submit(&["greet@1"]);

    for (run, word, version, who) in [
        (first, "one", 1, "ada"),
        (newest, "two", 2, "world"),
        (pinned, "one", 1, "world"),
    ] {
        let row = stack
            .wait(&pool, run, Duration::from_secs(30))
            .await
            .expect("finishes");
        assert_eq!(row.status, WorkflowStatus::Succeeded, "{:?}", row.error);
        assert_eq!(
            row.output,
            Some(json!({ "word": word, "who": who })),
            "{run}"
        );
        let status: Value =
            serde_json::from_str(&ok(&weft(&stack, &["status", &run.to_string(), "--json"])))
                .expect("json");
        assert_eq!(status["workflow_version"], version, "{run}");
        assert!(weft_tests::violations(&pool, run).await.is_empty());
    }
    let text = ok(&weft(&stack, &["status", &first.to_string()]));
    assert!(text.contains("greet@1"), "{text}");
    let list: Value = serde_json::from_str(&ok(&weft(&stack, &["list", "--json"]))).expect("json");
    assert!(
        list.as_array()
            .expect("runs")
            .iter()
            .any(|r| r["id"] == first.to_string() && r["workflow_version"] == 1),
        "{list}"
    );

    // Neither a file nor a registered name; a version that does not exist.
    let err = failed(&weft(&stack, &["submit", "gret"]));
    assert!(
        err.contains("`gret` is neither a file nor a registered workflow")
            && err.contains("did you mean `greet`?"),
        "{err}"
    );
    let err = failed(&weft(&stack, &["submit", "greet@9"]));
    assert!(err.contains("has no version 9"), "{err}");
    let err = failed(&weft(&stack, &["submit", "greet", "--input", "nobody=1"]));
    assert!(err.contains("greet@2") && err.contains("nobody"), "{err}");
    let err = failed(&weft(&stack, &["submit", "missing/file.yaml"]));
    assert!(err.contains("missing/file.yaml"), "{err}");
}

#[test]
fn a_sub_workflow_task_may_start_a_registered_workflow() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let env = [
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
    ];
    let _dev = weft_tests::process::Daemon::start("dev", &["dev"], &env).expect("weft dev");
    let dir = temp_dir();
    let child = write(
        &dir,
        "double.yaml",
        "name: double\ninput: { n: { type: integer } }\ntasks:\n  x: { action: echo, input: { v: \"{{ input.n * 2 }}\" } }\noutput: { v: \"{{ tasks.x.result.v }}\" }\n",
    );
    ok(&weft(
        &stack,
        &["workflow", "apply", child.to_str().expect("utf-8")],
    ));
    let parent = write(
        &dir,
        "parent.yaml",
        "name: parent\ntasks:\n  call: { workflow: \"registered:double@1\", input: { n: 21 } }\noutput: { v: \"{{ tasks.call.result.v }}\" }\n",
    );
    let parent = parent.to_str().expect("utf-8");
    let out = ok(&weft(&stack, &["submit", parent, "--wait", "--json"]));
    let status: Value = serde_json::from_str(
        out.lines()
            .skip_while(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    )
    .expect("json");
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["output"], json!({ "v": 42 }));
    // The parent may itself be registered, and run by name.
    ok(&weft(&stack, &["workflow", "apply", parent]));
    let out = ok(&weft(&stack, &["submit", "parent", "--wait", "--json"]));
    assert!(out.contains("\"succeeded\""), "{out}");
    // A name that is not registered, or a wrong input, is a validation
    // error at submit, in the calling file.
    let bad = write(
        &dir,
        "bad.yaml",
        "name: bad\ntasks:\n  call: { workflow: \"registered:doubel\", input: { n: 1 } }\n  other: { workflow: \"registered:double\", input: { m: 1 } }\n",
    );
    let err = failed(&weft(&stack, &["submit", bad.to_str().expect("utf-8")]));
    assert!(
        err.contains("bad.yaml") && err.contains("did you mean `double`?"),
        "{err}"
    );
    assert!(err.contains("`m`"), "{err}");
}
