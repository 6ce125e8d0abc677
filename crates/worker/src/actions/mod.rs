//! The built-in actions.

mod shell;

use std::time::Duration;

use serde_json::{Value, json};

use crate::action::{ActionContext, ActionError, ActionRegistry, ActionResult};

pub(crate) use shell::shell;

/// Registers `noop`, `echo`, `sleep`, `fail` and `shell`.
pub(crate) fn register_builtins(registry: &mut ActionRegistry) {
    registry
        .register("noop", |_| async { Ok(Value::Null) })
        .register("echo", |ctx: ActionContext| async move { Ok(ctx.input) })
        .register("sleep", sleep)
        .register("fail", |ctx: ActionContext| async move {
            let message = match ctx.input.get("message") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "failed on purpose (the `fail` action)".to_owned(),
            };
            Err(ActionError::new(message))
        })
        .register("shell", shell);
}

/// `sleep {seconds}`: waits, or stops early when cancelled.
async fn sleep(ctx: ActionContext) -> ActionResult {
    let seconds = match ctx.input.get("seconds") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(-1.0),
        Some(other) => {
            return Err(ActionError::bad_input(
                "sleep",
                "seconds",
                format!("must be a number, not {other}"),
            ));
        }
        None => return Err(ActionError::bad_input("sleep", "seconds", "is required")),
    };
    let duration = Duration::try_from_secs_f64(seconds).map_err(|_| {
        ActionError::bad_input(
            "sleep",
            "seconds",
            format!("must be 0 or more, not {seconds}"),
        )
    })?;
    tokio::select! {
        () = ctx.cancel.cancelled() => Err(ActionError::new("sleep interrupted")),
        () = tokio::time::sleep(duration) => Ok(json!({ "slept": seconds })),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;
    use weft_common::{ExecutionId, WorkflowExecutionId};

    pub(crate) fn ctx(input: Value) -> ActionContext {
        ActionContext {
            input,
            execution_id: ExecutionId::new(),
            workflow_execution_id: WorkflowExecutionId::new(),
            task_name: "t".into(),
            item_index: None,
            attempt: 1,
            cancel: CancellationToken::new(),
            logs: crate::ActionLogs::new(),
            shell: std::sync::Arc::default(),
        }
    }

    #[tokio::test]
    async fn echo_returns_its_input_and_noop_null() {
        let r = ActionRegistry::with_builtins();
        assert_eq!(
            r.run("echo", ctx(json!({"a": [1, 2]}))).await,
            Ok(json!({"a": [1, 2]}))
        );
        assert_eq!(r.run("noop", ctx(json!({}))).await, Ok(Value::Null));
    }

    #[tokio::test]
    async fn fail_fails_with_its_message_and_unknown_actions_name_the_known() {
        let r = ActionRegistry::with_builtins();
        assert_eq!(
            r.run("fail", ctx(json!({"message": "boom"})))
                .await
                .unwrap_err()
                .message,
            "boom"
        );
        let err = r.run("nope", ctx(json!({}))).await.unwrap_err().message;
        assert!(
            err.contains("unknown action `nope`") && err.contains("echo"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn sleep_validates_and_can_be_cancelled() {
        let r = ActionRegistry::with_builtins();
        let err = r
            .run("sleep", ctx(json!({"seconds": "x"})))
            .await
            .unwrap_err()
            .message;
        assert!(err.contains("seconds"), "{err}");
        let c = ctx(json!({"seconds": 30}));
        c.cancel.cancel();
        let started = std::time::Instant::now();
        assert!(r.run("sleep", c).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            r.run("sleep", ctx(json!({"seconds": 0.01}))).await,
            Ok(json!({"slept": 0.01}))
        );
    }
}
