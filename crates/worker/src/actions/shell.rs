//! `shell`: run a command (argv list, no shell) or a script (`sh -c`).
//!
//! Templated values arrive as whole argv elements, never spliced into a
//! shell string. The child runs in its own process group, which is killed
//! (SIGKILL) when the action is cancelled or times out.
//!
//! The worker's policy ([`ShellPolicy`]) bounds what a command sees: a
//! clean environment (only [`BASE_ENV`] and the `--pass-env` names from
//! the worker's own, then the task's `env`), and a fresh working
//! directory of its own, removed when the command ends, unless the task
//! gives a `cwd` under the worker's `--shell-cwd-root`. A worker runs
//! `shell` at all only when its `--actions` lists it.
//!
//! Output is captured up to [`OUTPUT_CAP`] bytes per stream; the rest is
//! read and discarded so a chatty child never blocks or exhausts memory.
//! A stream over the cap fails the attempt, naming the stream and the cap:
//! a result that silently lacks the end of its output would be taken for
//! the whole of it. With `truncate: true` the task accepts the cut
//! instead: each stream keeps its whole lines within the cap, the result
//! says `truncated: true`, and `json` is left out (half a JSON document is
//! not one), so an expression reading it fails by name rather than see
//! `null`.
//!
//! Apart from the result, every chunk of both streams goes to the
//! attempt's logs as it is read ([`ActionLogs`](crate::ActionLogs), the
//! last 64 KiB of each), with the exit code: `weft logs` shows them for
//! every attempt, including one killed by its timeout.
//!
//! The cap is fixed rather than derived from `--max-result-bytes`: the
//! action cannot see that setting, and a cap that moved with it would
//! change what a workflow's `lines` hold from one worker to the next.
//! stdout appears in the result up to three times (`stdout`, `lines`,
//! `json`), so output near the cap can still make a result over the limit;
//! the worker then fails the attempt with the size error.

use std::process::Stdio;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use weft_common::limits::{grouped, human_bytes};

use crate::action::{ActionContext, ActionError, ActionResult};
use crate::policy::{BASE_ENV, ShellPolicy};

/// Bytes kept of stdout and of stderr (1 MiB).
pub(crate) const OUTPUT_CAP: usize = 1024 * 1024;

/// What was read of one stream.
struct Captured {
    /// Up to [`OUTPUT_CAP`] bytes.
    kept: Vec<u8>,
    /// The stream's whole length.
    total: usize,
}

impl Captured {
    fn cut(&self) -> bool {
        self.total > self.kept.len()
    }

    /// Drops a partial last line of a cut stream, so what is kept ends at
    /// a line boundary (and, a newline being ASCII, at a character one).
    fn cut_at_line_end(mut self) -> Self {
        if self.cut() {
            let end = self
                .kept
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            self.kept.truncate(end);
        }
        self
    }
}

fn string_list(field: &str, value: &Value) -> Result<Vec<String>, ActionError> {
    let Value::Array(items) = value else {
        return Err(ActionError::bad_input(
            "shell",
            field,
            "must be a list of strings (argv)",
        ));
    };
    if items.is_empty() {
        return Err(ActionError::bad_input("shell", field, "must not be empty"));
    }
    Ok(items
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect())
}

/// Reads a stream (none: nothing) to its end, keeping up to the cap, and
/// hands every chunk to `log` as it arrives (so what was printed before a
/// timeout or a cancellation is still reported).
async fn read_capped(
    stream: Option<impl AsyncRead + Unpin>,
    log: impl Fn(&[u8]),
) -> std::io::Result<Captured> {
    let mut kept = Vec::new();
    let mut total = 0usize;
    let Some(mut stream) = stream else {
        return Ok(Captured { kept, total });
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Captured { kept, total });
        }
        log(&chunk[..n]);
        let room = OUTPUT_CAP.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
        total = total.saturating_add(n);
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        // The child leads its own process group: kill the whole group.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs the command; see the module docs.
pub(crate) async fn shell(ctx: ActionContext) -> ActionResult {
    let input = ctx.input.as_object().cloned().unwrap_or_default();
    let argv = match (input.get("command"), input.get("script")) {
        (Some(command), None) => string_list("command", command)?,
        (None, Some(Value::String(script))) => {
            vec!["sh".to_owned(), "-c".to_owned(), script.clone()]
        }
        (None, Some(_)) => {
            return Err(ActionError::bad_input(
                "shell",
                "script",
                "must be a string",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ActionError::new(
                "shell: give either `command` (argv list) or `script`, not both",
            ));
        }
        (None, None) => {
            return Err(ActionError::new(
                "shell: input needs `command` (an argv list) or `script` (a string)",
            ));
        }
    };
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    clean_env(&mut command, &ctx.shell);
    match input.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(env)) => {
            for (k, v) in env {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                command.env(k, v);
            }
        }
        Some(_) => {
            return Err(ActionError::bad_input(
                "shell",
                "env",
                "must be a map of names to values",
            ));
        }
    }
    // Held to the end: dropping it removes the command's own directory.
    let _workdir = match input.get("cwd") {
        None | Some(Value::Null) => {
            let dir = tempfile::Builder::new()
                .prefix("weft-shell-")
                .tempdir()
                .map_err(|e| {
                    ActionError::new(format!("shell: cannot make a working directory: {e}"))
                })?;
            command.current_dir(dir.path());
            Some(dir)
        }
        Some(Value::String(dir)) => {
            let dir = ctx
                .shell
                .allowed_cwd(dir)
                .map_err(|problem| ActionError::new(format!("shell: {problem}")))?;
            command.current_dir(dir);
            None
        }
        Some(_) => return Err(ActionError::bad_input("shell", "cwd", "must be a string")),
    };
    let truncate = match input.get("truncate") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ActionError::bad_input(
                "shell",
                "truncate",
                format!("must be true or false, not {other}"),
            ));
        }
    };
    let stdin = match input.get("stdin") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = command
        .spawn()
        .map_err(|e| ActionError::new(format!("shell: cannot run `{}`: {e}", argv[0])))?;
    let pid = child.id();
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = pipe.write_all(text.as_bytes()).await;
        });
    }
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // Both streams at once: read one after the other, a child that fills
    // the pipe of the second (64 KiB) while the first is still open would
    // block on it forever, and so would the action.
    let logs = &ctx.logs;
    let output = async {
        tokio::join!(
            read_capped(stdout, |bytes| logs.stdout(bytes)),
            read_capped(stderr, |bytes| logs.stderr(bytes))
        )
    };
    let waited = async {
        let (out, err) = tokio::join!(output, child.wait());
        (out, err)
    };
    let ((out, err), status) = tokio::select! {
        () = ctx.cancel.cancelled() => {
            kill_group(pid);
            return Err(ActionError::new(format!("shell: `{}` was killed (cancelled or timed out)", argv[0])));
        }
        r = waited => r,
    };
    let (out, err) = (
        out.map_err(|e| ActionError::new(format!("shell: reading stdout: {e}")))?,
        err.map_err(|e| ActionError::new(format!("shell: reading stderr: {e}")))?,
    );
    let status =
        status.map_err(|e| ActionError::new(format!("shell: waiting for `{}`: {e}", argv[0])))?;
    // Stray grandchildren of a finished script do not outlive the action.
    kill_group(pid);
    if let Some(code) = status.code() {
        ctx.logs.exit_code(code);
    }
    let truncated = out.cut() || err.cut();
    if truncated && !truncate {
        return Err(over_cap(&argv[0], &[("stdout", &out), ("stderr", &err)]));
    }
    let (out, err) = (out.cut_at_line_end(), err.cut_at_line_end());
    let stdout = String::from_utf8_lossy(&out.kept).into_owned();
    let stderr = String::from_utf8_lossy(&err.kept).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    let mut result = Map::new();
    result.insert(
        "exit_code".into(),
        status.code().map_or(Value::Null, Value::from),
    );
    result.insert("stdout".into(), json!(stdout));
    result.insert("stderr".into(), json!(stderr));
    result.insert("lines".into(), json!(lines));
    if truncated {
        result.insert("truncated".into(), json!(true));
    } else {
        let parsed = serde_json::from_str::<Value>(stdout.trim()).unwrap_or(Value::Null);
        result.insert("json".into(), parsed);
    }
    if status.success() {
        return Ok(Value::Object(result));
    }
    let code = status
        .code()
        .map_or_else(|| "a signal".to_owned(), |c| format!("exit code {c}"));
    let tail: String = {
        let trimmed = stderr.trim_end();
        let start = trimmed.char_indices().rev().nth(499).map_or(0, |(i, _)| i);
        trimmed[start..].to_owned()
    };
    let message = if tail.is_empty() {
        format!("`{}` failed with {code}", argv[0])
    } else {
        format!("`{}` failed with {code}: {tail}", argv[0])
    };
    Err(ActionError::new(message).with_details(Value::Object(result)))
}

/// Starts the command from an empty environment, then gives it the
/// policy's names ([`BASE_ENV`], `--pass-env`) from the worker's own,
/// where set: the worker's credentials and settings stay with it.
fn clean_env(command: &mut Command, policy: &ShellPolicy) {
    command.env_clear();
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(policy.pass_env.iter().map(String::as_str))
    {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
}

/// The failure of a command whose output went over the cap without
/// `truncate: true`.
fn over_cap(program: &str, streams: &[(&str, &Captured)]) -> ActionError {
    let over = streams
        .iter()
        .filter(|(_, c)| c.cut())
        .map(|(name, c)| format!("{name} was {} bytes", grouped(c.total)))
        .collect::<Vec<_>>()
        .join(" and ");
    ActionError::new(format!(
        "shell: `{program}` wrote more than the output cap of {} ({} bytes) per stream: {over}; \
         set `truncate: true` in the task's input to keep the first whole lines within the cap",
        human_bytes(OUTPUT_CAP),
        grouped(OUTPUT_CAP),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::tests::ctx;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn argv_is_passed_verbatim_without_a_shell() {
        let out = shell(ctx(
            json!({"command": ["printf", "%s|", "a b", "c; rm -rf /", "$HOME"]}),
        ))
        .await
        .unwrap();
        assert_eq!(out["stdout"], "a b|c; rm -rf /|$HOME|");
        assert_eq!(out["exit_code"], 0);
    }

    fn with_policy(input: Value, policy: ShellPolicy) -> ActionContext {
        ActionContext {
            shell: std::sync::Arc::new(policy),
            ..ctx(input)
        }
    }

    #[tokio::test]
    async fn scripts_env_cwd_under_the_root_lines_and_json() {
        let root = std::env::temp_dir().canonicalize().unwrap();
        let policy = ShellPolicy {
            cwd_root: Some(root.clone()),
            ..ShellPolicy::default()
        };
        let input =
            json!({"script": "echo \"$GREETING\"; pwd", "env": {"GREETING": "hi"}, "cwd": root});
        let out = shell(with_policy(input, policy)).await.unwrap();
        assert_eq!(out["lines"], json!(["hi", root]));
        let out = shell(ctx(json!({"command": ["echo", "{\"n\": 3}"]})))
            .await
            .unwrap();
        assert_eq!(out["json"], json!({"n": 3}));
    }

    #[tokio::test]
    async fn a_command_runs_in_a_fresh_directory_of_its_own_removed_after() {
        let out = shell(ctx(
            json!({"script": "pwd; ls -A | wc -l; touch made-here"}),
        ))
        .await
        .unwrap();
        let lines = out["lines"].as_array().unwrap();
        let dir = std::path::PathBuf::from(lines[0].as_str().unwrap());
        assert!(
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("weft-shell-"),
            "{dir:?}"
        );
        assert_eq!(
            lines[1].as_str().unwrap().trim(),
            "0",
            "not empty at the start"
        );
        assert!(!dir.exists(), "{dir:?} outlived its command");
        // Without --shell-cwd-root a `cwd` is refused, naming the flag.
        let err = shell(ctx(json!({"script": "true", "cwd": "/"})))
            .await
            .unwrap_err()
            .message;
        assert!(err.contains("--shell-cwd-root"), "{err}");
    }

    #[tokio::test]
    async fn a_cancelled_commands_directory_is_removed_too() {
        let said = std::env::temp_dir().join(format!("weft-pwd-{}", uuid::Uuid::new_v4()));
        let c = ctx(json!({"command": ["sh", "-c", "pwd > \"$1\"; sleep 30", "sh", said]}));
        let cancel = c.cancel.clone();
        let run = tokio::spawn(shell(c));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&said)
            .unwrap_or_default()
            .is_empty()
        {
            assert!(Instant::now() < deadline, "the command never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        assert!(run.await.unwrap().is_err());
        let dir = std::fs::read_to_string(&said).unwrap();
        assert!(
            !std::path::Path::new(dir.trim()).exists(),
            "{dir} outlived its command"
        );
        std::fs::remove_file(said).unwrap();
    }

    #[tokio::test]
    async fn the_environment_is_clean_but_for_path_home_lang_pass_env_and_the_tasks() {
        // Any variable of this process beyond the base set stands for the
        // worker's secrets: `cargo test` sets several (CARGO_*).
        let (name, value) = std::env::vars()
            .find(|(k, v)| !BASE_ENV.contains(&k.as_str()) && !v.contains('\n'))
            .expect("the test process has some environment");
        let out = shell(ctx(json!({"command": ["env"], "env": {"TASK_VAR": "t"}})))
            .await
            .unwrap();
        let mut names: Vec<&str> = out["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str()?.split_once('=').map(|(k, _)| k))
            .collect();
        names.sort_unstable();
        let mut expected: Vec<&str> = BASE_ENV
            .iter()
            .copied()
            .filter(|k| std::env::var_os(k).is_some())
            .chain(["TASK_VAR"])
            .collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
        let policy = ShellPolicy {
            pass_env: vec![name.clone()],
            ..ShellPolicy::default()
        };
        let out = shell(with_policy(json!({"command": ["env"]}), policy))
            .await
            .unwrap();
        assert!(
            out["lines"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("{name}={value}"))),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_non_zero_exit_fails_naming_the_code_and_stderr() {
        let err = shell(ctx(json!({"script": "echo oops >&2; exit 3"})))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("exit code 3") && err.message.contains("oops"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn both_streams_and_the_exit_code_go_to_the_logs_on_failure_too() {
        let c = ctx(json!({"script": "echo out; echo err >&2; exit 4"}));
        let logs = c.logs.clone();
        assert!(shell(c).await.is_err());
        let logs = logs.snapshot().unwrap();
        assert_eq!(
            (
                logs.stdout.text.as_str(),
                logs.stderr.text.as_str(),
                logs.exit_code
            ),
            ("out\n", "err\n", Some(4))
        );
    }

    #[tokio::test]
    async fn the_logs_keep_the_end_of_a_long_stream() {
        let c = ctx(json!({"script": CHATTY, "truncate": true}));
        let logs = c.logs.clone();
        shell(c).await.unwrap();
        let stdout = logs.snapshot().unwrap().stdout;
        assert_eq!(stdout.text.len(), weft_common::logs::LOG_TAIL_BYTES);
        assert!(
            stdout.text.ends_with("12345678\n123tail"),
            "{}",
            &stdout.text[stdout.text.len() - 20..]
        );
        assert_eq!(stdout.dropped, 3_000_004 - 64 * 1024);
    }

    #[tokio::test]
    async fn bad_input_names_the_field() {
        assert!(
            shell(ctx(json!({})))
                .await
                .unwrap_err()
                .message
                .contains("command")
        );
        assert!(
            shell(ctx(json!({"command": "ls"})))
                .await
                .unwrap_err()
                .message
                .contains("`command`")
        );
        assert!(
            shell(ctx(json!({"script": "true", "env": [1]})))
                .await
                .unwrap_err()
                .message
                .contains("`env`")
        );
    }

    #[tokio::test]
    async fn cancelling_kills_the_child() {
        let pidfile = std::env::temp_dir().join(format!("weft-shell-{}.pid", uuid::Uuid::new_v4()));
        let c = ctx(
            json!({"command": ["sh", "-c", "echo $$ > \"$1\"; exec sleep 30", "sh", pidfile.display().to_string()]}),
        );
        let cancel = c.cancel.clone();
        let task = tokio::spawn(shell(c));
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                break pid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let started = Instant::now();
        cancel.cancel();
        assert!(task.await.unwrap().is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
        // The child (sleep, via exec) is gone, not just detached.
        let alive = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "))
        };
        for _ in 0..100 {
            if !alive(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!alive(pid), "process {pid} survived the cancellation");
        let _ = std::fs::remove_file(pidfile);
    }

    /// 3,000,000 bytes of 9-byte lines ("12345678\n"), then "tail" with no
    /// newline: over the cap, and the cap falls inside a line.
    const CHATTY: &str = "yes 12345678 | head -c 3000000; printf tail";

    #[tokio::test]
    async fn output_over_the_cap_fails_naming_the_stream_and_the_cap() {
        let err = shell(ctx(json!({"script": CHATTY}))).await.unwrap_err();
        assert_eq!(
            err.message,
            "shell: `sh` wrote more than the output cap of 1 MiB (1,048,576 bytes) per stream: \
             stdout was 3,000,004 bytes; set `truncate: true` in the task's input to keep the \
             first whole lines within the cap"
        );
        let err = shell(ctx(json!({"script": "head -c 2000000 /dev/zero >&2"})))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("stderr was 2,000,000 bytes"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn truncate_keeps_whole_lines_within_the_cap_and_leaves_json_out() {
        let out = shell(ctx(json!({"script": CHATTY, "truncate": true})))
            .await
            .unwrap();
        let stdout = out["stdout"].as_str().unwrap();
        // The last whole line within the cap: 1,048,576 = 116,508 × 9 + 4.
        assert_eq!(stdout.len(), 116_508 * 9);
        assert!(stdout.ends_with("12345678\n"));
        let lines = out["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 116_508);
        assert!(lines.iter().all(|l| l == "12345678"));
        assert_eq!(out["truncated"], true);
        assert!(
            out.get("json").is_none(),
            "json of cut output: {:?}",
            out.get("json")
        );
        // Output within the cap is whole: no `truncated`, `json` as ever.
        let out = shell(ctx(json!({"command": ["echo", "[1]"], "truncate": true})))
            .await
            .unwrap();
        assert_eq!((out.get("truncated"), &out["json"]), (None, &json!([1])));
    }

    #[tokio::test]
    async fn truncate_must_be_a_boolean() {
        let err = shell(ctx(json!({"script": "true", "truncate": "yes"})))
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "shell: input `truncate` must be true or false, not \"yes\""
        );
    }
}
