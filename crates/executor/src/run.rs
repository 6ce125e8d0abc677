//! What a step knows of the runs it advances: their stored facts and
//! definition ([`RunInfo`]), the context their expressions see, and the
//! tasks' results those contexts share ([`Results`]).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sqlx::PgConnection;
use weft_common::{
    Context, ItemState, Keyring, Secrets, Task, TaskView, Workflow, WorkflowExecutionId,
    WorkflowRef, WorkflowStatus,
};
use weft_store::attempts;
use weft_store::tasks::TaskRow;

use crate::error::EngineError;

/// What a step knows about a run.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    pub(crate) id: WorkflowExecutionId,
    pub(crate) status: WorkflowStatus,
    /// Its current round (`run_attempt`; `weft retry` adds one).
    pub(crate) round: i32,
    /// Its input, secret inputs opened (see [`weft_common::secret`]).
    pub(crate) input: serde_json::Map<String, Value>,
    /// The plaintexts of its secret inputs, kept out of what is stored.
    pub(crate) secrets: Secrets,
    /// The keys that opened them, which seal the task inputs rendered
    /// from them.
    pub(crate) keyring: Option<Arc<Keyring>>,
    /// Why its secret inputs could not be opened (no key, another key,
    /// altered): every task it would run fails with it.
    pub(crate) secret_error: Option<String>,
    pub(crate) workflow: Arc<Workflow>,
    /// The tick a schedule started it for (`workflow.scheduled_at`).
    pub(crate) scheduled_at: Option<String>,
}

impl RunInfo {
    /// What a step needs of a stored run.
    pub(crate) fn of(
        run: &weft_store::runs::RunRow,
        workflow: Arc<Workflow>,
        keyring: Option<&Arc<Keyring>>,
    ) -> Self {
        Self::new(
            run.id,
            (run.status, run.run_attempt),
            &run.input,
            workflow,
            run.scheduled_at.map(weft_common::schedule::tick_text),
            keyring,
        )
    }

    /// A run of this status and round, from its stored input: its secret
    /// inputs are opened with `keyring` here, and only here.
    pub(crate) fn new(
        id: WorkflowExecutionId,
        (status, round): (WorkflowStatus, i32),
        stored_input: &Value,
        workflow: Arc<Workflow>,
        scheduled_at: Option<String>,
        keyring: Option<&Arc<Keyring>>,
    ) -> Self {
        let stored = stored_input.as_object().cloned().unwrap_or_default();
        let (input, secrets, secret_error) = match weft_common::secret::open_input(
            keyring.map(AsRef::as_ref),
            &stored,
        ) {
            Ok((input, secrets)) => (input, secrets, None),
            Err(e) => {
                tracing::error!(workflow_execution_id = %id, error = %e, "the run's secret inputs do not open");
                (stored, Secrets::default(), Some(e.to_string()))
            }
        };
        Self {
            id,
            status,
            round,
            input,
            secrets,
            keyring: keyring.cloned(),
            secret_error,
            workflow,
            scheduled_at,
        }
    }

    /// Whether a task of this run may be dispatched: while it runs, and
    /// for exit handlers also while it is canceling (they run to the end).
    pub(crate) fn dispatches_for(&self, exit_handler: bool) -> bool {
        self.status.dispatches() || (exit_handler && self.status == WorkflowStatus::Canceling)
    }

    pub(crate) fn spec(&self, name: &str) -> Result<&Task, EngineError> {
        self.workflow.task(name).ok_or_else(|| {
            EngineError::Inconsistent(format!(
                "run {} has a task `{name}` its workflow does not define",
                self.id
            ))
        })
    }

    /// What expressions of this run see of `rows`: each result from
    /// `results` (shared, not copied) when it is there, else the row's;
    /// a failed task's error; a fan-out's items when they were read.
    pub(crate) fn context(&self, rows: &[&TaskRow], results: &Results) -> Context {
        Context {
            input: self.input.clone(),
            tasks: rows
                .iter()
                .map(|r| {
                    let key = (r.workflow_execution_id, r.task_name.clone());
                    let result = results
                        .values
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(r.result.clone().unwrap_or_default()));
                    let view = TaskView {
                        error: r.error.clone(),
                        items: results.items.get(&key).cloned(),
                        ..TaskView::new(r.status, result)
                    };
                    (r.task_name.clone(), view)
                })
                .collect(),
            item: None,
            item_index: None,
            workflow: WorkflowRef {
                id: self.id.to_string(),
                name: self.workflow.name().to_owned(),
                scheduled_at: self.scheduled_at.clone(),
                exit: None,
            },
        }
    }
}

/// Tasks' results, by run and task name, shared by the contexts that read
/// them: a fan-out's result can be large, and is read once.
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// Results moved out of their rows.
    values: HashMap<(WorkflowExecutionId, String), Arc<Value>>,
    /// How fan-outs' items ended, for those whose `tasks.X.items` an
    /// expression reads.
    items: HashMap<(WorkflowExecutionId, String), Arc<[ItemState]>>,
}

impl Results {
    /// Moves the results out of `rows` (to be shared), and reads how the
    /// items ended of the fan-outs among them whose items `runs`' workflows
    /// read.
    pub(crate) async fn take(
        conn: &mut PgConnection,
        runs: &HashMap<WorkflowExecutionId, RunInfo>,
        rows: &mut [TaskRow],
    ) -> Result<Self, EngineError> {
        let mut results = Self::default();
        let mut fan_outs = Vec::new();
        for row in rows.iter_mut() {
            let key = (row.workflow_execution_id, row.task_name.clone());
            if let Some(result) = row.result.take() {
                results.values.insert(key.clone(), Arc::new(result));
            }
            let reads_items = runs
                .get(&row.workflow_execution_id)
                .is_some_and(|run| run.workflow.reads_items(&row.task_name));
            if row.with_items && row.status.is_terminal() && reads_items {
                fan_outs.push(((row.id, row.attempt_base, row.items_total), key));
            }
        }
        if fan_outs.is_empty() {
            return Ok(results);
        }
        let ids: Vec<_> = fan_outs.iter().map(|(task, _)| *task).collect();
        let mut states = attempts::item_states(conn, &ids).await?;
        for ((task, _, _), key) in fan_outs {
            if let Some(items) = states.remove(&task) {
                results.items.insert(key, items);
            }
        }
        Ok(results)
    }
}
