//! Group commit for completions: reports that arrive together are applied in
//! one transaction ([`Engine::apply_completions`]).
//!
//! Every item of a wide fan-out counts down the same task row; one
//! transaction per item serializes them on that row's lock and pays a
//! commit each. Handlers hand their completion to the batcher and wait for
//! its result; the batcher takes whatever queued up meanwhile (at most
//! [`MAX_BATCH`]), ordered by run so that concurrent batches lock rows in
//! the same order, and applies it while the next batch gathers. Each
//! delivery is still acked only after the transaction holding its effect
//! committed.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weft_common::message::ExecutionCompleted;

use crate::engine::{Applied, Engine};
use crate::error::EngineError;

/// Completions applied in one transaction at most.
pub(crate) const MAX_BATCH: usize = 64;

type Request = (
    ExecutionCompleted,
    oneshot::Sender<Result<Applied, EngineError>>,
);

/// Where handlers send completions. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    requests: mpsc::UnboundedSender<Request>,
}

impl Batcher {
    /// Starts a batcher running up to `parallel` batches at once, until
    /// `shutdown`.
    pub(crate) fn start(engine: Engine, parallel: usize, shutdown: CancellationToken) -> Self {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(engine, queue, parallel.max(1), shutdown));
        Self { requests }
    }

    /// Applies one completion together with whatever else is waiting.
    ///
    /// # Errors
    /// As [`Engine::apply`]; a transient error if the batcher stopped.
    pub(crate) async fn apply(
        &self,
        completion: ExecutionCompleted,
    ) -> Result<Applied, EngineError> {
        let (reply, result) = oneshot::channel();
        if self.requests.send((completion, reply)).is_err() {
            return Err(EngineError::ShuttingDown);
        }
        result.await.unwrap_or(Err(EngineError::ShuttingDown))
    }
}

async fn run(
    engine: Engine,
    mut queue: mpsc::UnboundedReceiver<Request>,
    parallel: usize,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(parallel));
    loop {
        // Wait for a free slot first: meanwhile the next batch grows.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            first = queue.recv() => first,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        batch.sort_by_key(|(m, _)| (m.workflow_execution_id, m.execution_id));
        let engine = engine.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let messages: Vec<&ExecutionCompleted> = batch.iter().map(|(m, _)| m).collect();
            let results = engine.apply_completions(&messages).await;
            metrics::histogram!("weft_executor_completion_batch_size").record(batch.len() as f64);
            for ((_, reply), result) in batch.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        });
    }
}
