//! The output of a run that a cancellation ends: rendered here, from the
//! stored definition and tasks, because a cancellation is settled by
//! whoever finds the run's last execution stopped — `weft cancel` itself
//! when nothing ran — and a canceled run reports what it did like any
//! other ([`Workflow::render_output`], the rule the executor's run end
//! applies too).

use std::sync::Arc;

use serde_json::Value;
use sqlx::PgConnection;
use weft_common::{Context, Evaluator, TaskView, Workflow, WorkflowExecutionId, WorkflowRef};

use crate::error::StoreError;
use crate::{attempts, runs, tasks};

/// The output of run `id` rendered from its tasks as they are, and the
/// reasons of the parts left `null` (`None`, `None` when the workflow has
/// no `output:`). A definition that no longer parses renders nothing.
///
/// # Errors
/// A database error.
pub async fn render_now(
    conn: &mut PgConnection,
    id: WorkflowExecutionId,
) -> Result<(Option<Value>, Option<String>), StoreError> {
    let Some(run) = runs::get(&mut *conn, id).await? else {
        return Ok((None, None));
    };
    let (source, origin) = runs::definition(&mut *conn, run.definition_id).await?;
    if !source.contains("output") {
        return Ok((None, None));
    }
    let workflow = match Workflow::parse_stored(&source, &origin) {
        Ok(workflow) => workflow,
        Err(e) => {
            tracing::warn!(workflow_execution_id = %id, error = %e, "a canceled run's definition no longer parses: no output");
            return Ok((None, None));
        }
    };
    if workflow.output().is_none() {
        return Ok((None, None));
    }
    let rows = tasks::for_runs(&mut *conn, &[(id, true)]).await?;
    let fan_outs: Vec<_> = rows
        .iter()
        .filter(|r| r.with_items && workflow.reads_items(&r.task_name))
        .map(|r| (r.id, r.attempt_base, r.items_total))
        .collect();
    let mut items = attempts::item_states(&mut *conn, &fan_outs).await?;
    let ctx = Context {
        input: run.input.as_object().cloned().unwrap_or_default(),
        tasks: rows
            .iter()
            .map(|r| {
                let view = TaskView {
                    error: r.error.clone(),
                    items: items.remove(&r.id),
                    ..TaskView::new(r.status, Arc::new(r.result.clone().unwrap_or_default()))
                };
                (r.task_name.clone(), view)
            })
            .collect(),
        item: None,
        item_index: None,
        workflow: WorkflowRef {
            id: id.to_string(),
            name: workflow.name().to_owned(),
            scheduled_at: run.scheduled_at.map(weft_common::schedule::tick_text),
            // `workflow.status` and the like are exit handlers' alone.
            exit: None,
        },
    };
    let status_of = |name: &str| rows.iter().find(|t| t.task_name == name).map(|t| t.status);
    let Some(rendered) = workflow.render_output(&Evaluator::new(), &ctx, status_of) else {
        return Ok((None, None));
    };
    let notes = (!rendered.problems.is_empty()).then(|| rendered.problems.join("; "));
    Ok((Some(rendered.value), notes))
}
