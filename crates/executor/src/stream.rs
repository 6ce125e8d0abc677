//! Streaming a fan-out's items: a `with_items` task without `concurrency`
//! dispatches its first window when it starts (see
//! [`decide::STREAM_WINDOW`]); the engine dispatches the rest right after
//! that commit, a window per transaction.

use weft_common::{TaskExecutionId, TaskStatus, WorkflowExecutionId};
use weft_store::{runs, tasks};

use crate::decide;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::step::RunInfo;

impl Engine {
    /// Dispatches the items a fan-out without `concurrency` did not
    /// dispatch when it started, a window per transaction (see
    /// [`decide::STREAM_WINDOW`]), until none is left, the task stopped
    /// running, an item failed or the run stopped dispatching. Each claim
    /// of items is atomic, so this races the task's own completions (which
    /// claim the next items too) safely; if it stops early, they dispatch
    /// the rest.
    pub(crate) async fn stream_items(self, run: WorkflowExecutionId, task: TaskExecutionId) {
        loop {
            match self.dispatch_window(run, task).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %weft_common::error_chain(&e), "dispatching a fan-out's next items failed; its finished items dispatch the rest");
                    return;
                }
            }
        }
    }

    /// One window of [`Engine::stream_items`]; `false` when nothing was
    /// left to dispatch.
    async fn dispatch_window(
        &self,
        run: WorkflowExecutionId,
        task: TaskExecutionId,
    ) -> Result<bool, EngineError> {
        let mut tx = self.begin().await?;
        let row = tasks::get(&mut tx, task).await?;
        let undispatched = row.items_total.unwrap_or_default() - row.items_dispatched;
        if row.status != TaskStatus::Running || row.items_failed > 0 || undispatched <= 0 {
            return Ok(false);
        }
        // Held until the window commits: a cancellation waits for it (see
        // `runs::RunLock`).
        if !runs::status(&mut tx, run, runs::RunLock::Dispatch)
            .await?
            .dispatches()
        {
            return Ok(false);
        }
        let Some(stored) = runs::get(&mut tx, run).await? else {
            return Ok(false);
        };
        let workflow = self
            .inner
            .catalog
            .get(&mut tx, stored.definition_id)
            .await?;
        let outgoing = {
            let mut step = self.step(&mut tx);
            step.add_run(RunInfo::of(&stored, workflow));
            step.dispatch_next_items(&row, decide::STREAM_WINDOW)
                .await?;
            std::mem::take(&mut step.out)
        };
        if outgoing.queued.is_empty() {
            return Ok(false);
        }
        self.commit_messages(tx, outgoing).await?;
        Ok(true)
    }
}
