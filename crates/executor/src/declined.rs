//! A worker declined a dispatch: it does not know the action.
//!
//! The execution stays `queued` at the same attempt, and the dispatch goes
//! — through the outbox, after the commit that records the decline — to
//! the private queue of a live worker of the pool that advertises the
//! action and has not declined it. When there is none, the attempt fails
//! naming the pool and the actions its workers know, and the task's retry
//! policy applies as to any failure. See `weft_store::declines`.

use weft_common::message::ActionUnknown;
use weft_common::{Envelope, ExecutionStatus};
use weft_store::declines::{self, Declined};
use weft_store::executions::Completion;

use crate::engine::{Applied, Engine};
use crate::error::EngineError;
use crate::step::Outgoing;

impl Engine {
    /// Applies an [`ActionUnknown`] report in one transaction.
    #[tracing::instrument(
        skip_all,
        fields(workflow_execution_id = %m.dispatch.workflow_execution_id, execution_id = %m.dispatch.execution_id, action = %m.dispatch.action, worker_id = %m.worker_id),
        err
    )]
    pub(crate) async fn action_unknown(&self, m: &ActionUnknown) -> Result<Applied, EngineError> {
        let mut tx = self.begin().await?;
        let grace = self.inner.config.heartbeat_grace;
        let d = &m.dispatch;
        match declines::decline(&mut tx, d, &m.worker_id, &m.known, &m.refused, grace).await? {
            Declined::Duplicate => Ok(Applied::Duplicate),
            Declined::HandTo(worker) => {
                tracing::info!(to = %worker, pool = %d.queue, "a worker does not know the action: handing the dispatch to one that does");
                let mut handed = d.clone();
                handed.worker = Some(worker);
                let outgoing = Outgoing {
                    queued: vec![(Envelope::new(handed), None)],
                    ..Outgoing::default()
                };
                self.commit_messages(tx, outgoing).await?;
                Ok(Applied::Changed)
            }
            Declined::Fail(error) => {
                tracing::warn!(pool = %d.queue, error = %error, "no live worker knows the action: failing the attempt");
                let completion = Completion {
                    id: d.execution_id,
                    run: d.workflow_execution_id,
                    attempt: i32::try_from(d.attempt).unwrap_or(i32::MAX),
                    status: ExecutionStatus::Failed,
                    result: None,
                    error: Some(&error),
                    worker_id: Some(&m.worker_id),
                    started_at: None,
                    finished_at: None,
                    logs: None,
                };
                self.complete(tx, &completion).await
            }
        }
    }
}
