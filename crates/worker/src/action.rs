//! The action API: what a custom action receives and returns, and the
//! registry that maps action names to handlers.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use weft_common::{ExecutionId, WorkflowExecutionId};

use crate::logs::ActionLogs;
use crate::policy::{Allowed, PolicyError, ShellPolicy, WorkerPolicy};

/// Everything an action gets for one execution.
#[derive(Debug, Clone)]
pub struct ActionContext {
    /// The rendered input.
    pub input: Value,
    /// The execution being run.
    pub execution_id: ExecutionId,
    /// Its run.
    pub workflow_execution_id: WorkflowExecutionId,
    /// Its task's name.
    pub task_name: String,
    /// The item's position for a `with_items` task.
    pub item_index: Option<u32>,
    /// 1 for the first try.
    pub attempt: u32,
    /// Fires on timeout, cancellation of the run, or worker shutdown; a
    /// long action should stop promptly when it does.
    pub cancel: CancellationToken,
    /// Where the action writes what it prints (log lines, a child's
    /// output): reported with the attempt however it ends, shown by
    /// `weft logs`.
    pub logs: ActionLogs,
    /// How this worker lets programs run (`--pass-env`,
    /// `--shell-cwd-root`): followed by `shell`, and by any custom action
    /// that starts processes.
    pub shell: Arc<ShellPolicy>,
}

/// Why an action failed.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionError {
    /// What went wrong.
    pub message: String,
    /// Structured details kept with the execution, if any.
    pub details: Option<Value>,
}

impl ActionError {
    /// A failure with a message.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            details: None,
        }
    }

    /// Adds structured details (e.g. a command's output).
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// An error about one field of the input.
    #[must_use]
    pub fn bad_input(action: &str, field: &str, problem: impl fmt::Display) -> Self {
        Self::new(format!("{action}: input `{field}` {problem}"))
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ActionError {}

/// What an action returns.
pub type ActionResult = Result<Value, ActionError>;

type BoxedAction =
    Arc<dyn Fn(ActionContext) -> Pin<Box<dyn Future<Output = ActionResult> + Send>> + Send + Sync>;

/// Action names → handlers.
#[derive(Clone, Default)]
pub struct ActionRegistry {
    actions: BTreeMap<String, BoxedAction>,
}

impl fmt::Debug for ActionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionRegistry")
            .field("actions", &self.names())
            .finish()
    }
}

impl ActionRegistry {
    /// No actions.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-ins: `noop`, `echo`, `sleep`, `fail`, `shell`.
    #[must_use]
    pub fn with_builtins() -> Self {
        let mut registry = Self::empty();
        crate::actions::register_builtins(&mut registry);
        registry
    }

    /// Registers (or replaces) an action.
    pub fn register<F, Fut>(&mut self, name: &str, action: F) -> &mut Self
    where
        F: Fn(ActionContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ActionResult> + Send + 'static,
    {
        let boxed: BoxedAction = Arc::new(move |ctx| Box::pin(action(ctx)));
        self.actions.insert(name.to_owned(), boxed);
        self
    }

    /// The registered names, sorted.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.actions.keys().map(String::as_str).collect()
    }

    /// Keeps only the actions `policy` accepts; returns the split.
    ///
    /// # Errors
    /// When the policy lists an action this registry does not have.
    pub fn restrict(&mut self, policy: &WorkerPolicy) -> Result<Allowed, PolicyError> {
        let allowed = policy.split(self.names())?;
        self.actions
            .retain(|name, _| allowed.accepted.binary_search(name).is_ok());
        Ok(allowed)
    }

    /// Whether an action of this name is registered.
    #[must_use]
    pub fn knows(&self, name: &str) -> bool {
        self.actions.contains_key(name)
    }

    /// Runs the named action; an unknown name is a failure naming the known ones.
    pub async fn run(&self, name: &str, ctx: ActionContext) -> ActionResult {
        match self.actions.get(name) {
            Some(action) => action(ctx).await,
            None => Err(ActionError::new(format!(
                "unknown action `{name}` (this worker knows: {})",
                self.names().join(", ")
            ))),
        }
    }
}
