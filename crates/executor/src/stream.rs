//! Streaming a fan-out's items: a `with_items` task without `concurrency`
//! dispatches its first window when it starts (see
//! [`decide::STREAM_WINDOW`]); the engine dispatches the rest right after
//! that commit, a window per transaction, each committed only once the
//! flusher is done with the window before the last: a fan-out of any size
//! keeps at most two windows of dispatches in memory, and the broker's
//! confirms set its pace.

use tokio::sync::oneshot;
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
    ///
    /// Back-pressure: a window is committed only once the flusher is done
    /// with the window before the previous one (published with confirms,
    /// or left to the relays), so one window is published while the next
    /// is committed, and no more. Without it a stream commits windows as
    /// fast as the database takes them, and a 100,000-item fan-out queues
    /// a hundred windows of dispatches in memory ahead of the broker.
    pub(crate) async fn stream_items(self, run: WorkflowExecutionId, task: TaskExecutionId) {
        let mut previous: Option<oneshot::Receiver<()>> = None;
        loop {
            match self.dispatch_window(run, task).await {
                Ok(Some(flushed)) => {
                    if let Some(previous) = previous.replace(flushed) {
                        // Resolves with an error when there is no flusher,
                        // or when it stopped: nothing more to wait for.
                        let _ = previous.await;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %weft_common::error_chain(&e), "dispatching a fan-out's next items failed; its finished items dispatch the rest");
                    return;
                }
            }
        }
    }

    /// One window of [`Engine::stream_items`]: `None` when nothing was left
    /// to dispatch, else what resolves once the flusher is done with it.
    async fn dispatch_window(
        &self,
        run: WorkflowExecutionId,
        task: TaskExecutionId,
    ) -> Result<Option<oneshot::Receiver<()>>, EngineError> {
        let mut tx = self.begin().await?;
        let row = tasks::get(&mut tx, task).await?;
        let undispatched = row.items_total.unwrap_or_default() - row.items_dispatched;
        if row.status != TaskStatus::Running || row.items_failed > 0 || undispatched <= 0 {
            return Ok(None);
        }
        let Some(stored) = runs::get(&mut tx, run).await? else {
            return Ok(None);
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
            return Ok(None);
        }
        self.commit_tracked(tx, outgoing).await.map(Some)
    }
}
