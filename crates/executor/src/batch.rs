//! Group commit: completions (and run starts) that arrive together are
//! applied in one transaction ([`Engine::apply_completions`],
//! [`Engine::apply_starts`]).
//!
//! Every item of a wide fan-out counts down the same task row; one
//! transaction per item serializes them on that row's lock and pays a
//! commit each. Handlers hand their completion to the batcher and wait for
//! its result; the batcher takes whatever queued up meanwhile (at most
//! [`MAX_BATCH`]), ordered by run so that concurrent batches lock rows in
//! the same order, and applies it while the next batch gathers. Each
//! delivery is still acked only after the transaction holding its effect
//! committed.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use weft_common::message::{ExecutionCompleted, WorkflowSubmitted};

use crate::engine::{Applied, Engine};
use crate::error::EngineError;

/// Messages applied in one transaction at most.
pub(crate) const MAX_BATCH: usize = 64;

/// A message the engine can apply several at a time.
pub(crate) trait Batched: Send + Sync + 'static {
    /// Where it goes in a batch: by run, so that concurrent batches lock
    /// runs in the same order.
    fn order(&self) -> (Uuid, Uuid);

    /// Applies a batch in one transaction (or one by one if that fails):
    /// one result per message, in order.
    fn apply_all<'a>(
        engine: &'a Engine,
        batch: &'a [&'a Self],
    ) -> impl Future<Output = Vec<Result<Applied, EngineError>>> + Send + 'a;

    /// The metric recording batch sizes.
    const METRIC: &'static str;
}

impl Batched for ExecutionCompleted {
    fn order(&self) -> (Uuid, Uuid) {
        (
            self.workflow_execution_id.as_uuid(),
            self.execution_id.as_uuid(),
        )
    }

    fn apply_all<'a>(
        engine: &'a Engine,
        batch: &'a [&'a Self],
    ) -> impl Future<Output = Vec<Result<Applied, EngineError>>> + Send + 'a {
        engine.apply_completions(batch)
    }

    const METRIC: &'static str = "weft_executor_completion_batch_size";
}

impl Batched for WorkflowSubmitted {
    fn order(&self) -> (Uuid, Uuid) {
        (self.workflow_execution_id.as_uuid(), Uuid::nil())
    }

    fn apply_all<'a>(
        engine: &'a Engine,
        batch: &'a [&'a Self],
    ) -> impl Future<Output = Vec<Result<Applied, EngineError>>> + Send + 'a {
        engine.apply_starts(batch)
    }

    const METRIC: &'static str = "weft_executor_start_batch_size";
}

type Request<M> = (M, oneshot::Sender<Result<Applied, EngineError>>);

/// Where handlers send their messages. Cheap to clone.
#[derive(Debug)]
pub(crate) struct Batcher<M> {
    requests: mpsc::Sender<Request<M>>,
}

impl<M> Clone for Batcher<M> {
    fn clone(&self) -> Self {
        Self {
            requests: self.requests.clone(),
        }
    }
}

impl<M: Batched> Batcher<M> {
    /// Starts a batcher running up to `parallel` batches at once, until
    /// `shutdown`. Its queue holds the next batch of each slot at most:
    /// past that, handlers wait to hand their message over (each waits
    /// for its result anyway, so this bounds memory, not throughput).
    pub(crate) fn start(engine: Engine, parallel: usize, shutdown: CancellationToken) -> Self {
        let parallel = parallel.max(1);
        let (requests, queue) = mpsc::channel(MAX_BATCH * parallel);
        tokio::spawn(run(engine, queue, parallel, shutdown));
        Self { requests }
    }

    /// Applies one message together with whatever else is waiting.
    ///
    /// # Errors
    /// As [`Engine::apply`]; a transient error if the batcher stopped.
    pub(crate) async fn apply(&self, message: M) -> Result<Applied, EngineError> {
        let (reply, result) = oneshot::channel();
        if self.requests.send((message, reply)).await.is_err() {
            return Err(EngineError::ShuttingDown);
        }
        result.await.unwrap_or(Err(EngineError::ShuttingDown))
    }
}

async fn run<M: Batched>(
    engine: Engine,
    mut queue: mpsc::Receiver<Request<M>>,
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
        batch.sort_by_key(|(m, _)| m.order());
        let engine = engine.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let messages: Vec<&M> = batch.iter().map(|(m, _)| m).collect();
            let results = M::apply_all(&engine, &messages).await;
            metrics::histogram!(M::METRIC).record(batch.len() as f64);
            for ((_, reply), result) in batch.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        });
    }
}
