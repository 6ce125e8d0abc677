//! `shell`: run a command (argv list, no shell) or a script (`sh -c`).
//!
//! Templated values arrive as whole argv elements, never spliced into a
//! shell string. The child runs in its own process group, which is killed
//! (SIGKILL) when the action is cancelled or times out. Output is captured
//! up to [`OUTPUT_CAP`] bytes per stream; the rest is read and discarded so
//! a chatty child never blocks or exhausts memory.

use std::process::Stdio;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::action::{ActionContext, ActionError, ActionResult};

/// Bytes kept of stdout and of stderr.
pub(crate) const OUTPUT_CAP: usize = 1024 * 1024;

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

async fn read_capped(mut stream: impl AsyncRead + Unpin) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = OUTPUT_CAP.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
        truncated |= n > room;
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
    match input.get("cwd") {
        None | Some(Value::Null) => {}
        Some(Value::String(dir)) => {
            command.current_dir(dir);
        }
        Some(_) => return Err(ActionError::bad_input("shell", "cwd", "must be a string")),
    }
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
    let stdout = child.stdout.take().map(read_capped);
    let stderr = child.stderr.take().map(read_capped);
    let output = async {
        let out = match stdout {
            Some(f) => f.await,
            None => Ok((Vec::new(), false)),
        };
        let err = match stderr {
            Some(f) => f.await,
            None => Ok((Vec::new(), false)),
        };
        (out, err)
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
    let ((stdout, out_cut), (stderr, err_cut)) = (
        out.map_err(|e| ActionError::new(format!("shell: reading stdout: {e}")))?,
        err.map_err(|e| ActionError::new(format!("shell: reading stderr: {e}")))?,
    );
    let status =
        status.map_err(|e| ActionError::new(format!("shell: waiting for `{}`: {e}", argv[0])))?;
    // Stray grandchildren of a finished script do not outlive the action.
    kill_group(pid);
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    let parsed = serde_json::from_str::<Value>(stdout.trim()).unwrap_or(Value::Null);
    let mut result = Map::new();
    result.insert(
        "exit_code".into(),
        status.code().map_or(Value::Null, Value::from),
    );
    result.insert("stdout".into(), json!(stdout));
    result.insert("stderr".into(), json!(stderr));
    result.insert("lines".into(), json!(lines));
    result.insert("json".into(), parsed);
    if out_cut || err_cut {
        result.insert("truncated".into(), json!(true));
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

    #[tokio::test]
    async fn scripts_env_cwd_lines_and_json() {
        let out = shell(ctx(
            json!({"script": "echo \"$GREETING\"; pwd", "env": {"GREETING": "hi"}, "cwd": "/tmp"}),
        ))
        .await
        .unwrap();
        assert_eq!(out["lines"], json!(["hi", "/tmp"]));
        let out = shell(ctx(json!({"command": ["echo", "{\"n\": 3}"]})))
            .await
            .unwrap();
        assert_eq!(out["json"], json!({"n": 3}));
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

    #[tokio::test]
    async fn output_is_capped() {
        let out = shell(ctx(
            json!({"script": "head -c 3000000 /dev/zero | tr '\\\\0' a"}),
        ))
        .await
        .unwrap();
        assert_eq!(out["stdout"].as_str().map(str::len), Some(OUTPUT_CAP));
        assert_eq!(out["truncated"], true);
    }
}
