//! Streaming a fan-out's items: a `with_items` task without `concurrency`
//! dispatches its first window when it starts (see
//! [`decide::STREAM_WINDOW`]); the engine dispatches the rest right after
//! that commit, a window per transaction, each committed only once the
//! flusher is done with the window before the last: a fan-out of any size
//! keeps at most two windows of dispatches in memory, and the broker's
//! confirms set its pace.

use tokio::sync::oneshot;
use weft_common::{TaskExecutionId, TaskStatus, WorkflowExecutionId, WorkflowStatus};
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
        // Held until the window commits: a cancellation waits for it (see
        // `runs::RunLock`).
        let status = runs::status(&mut tx, run, runs::RunLock::Dispatch).await?;
        if !(status.dispatches() || (row.exit_handler && status == WorkflowStatus::Canceling)) {
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
            step.add_run(RunInfo::of(
                &stored,
                workflow,
                self.inner.config.secrets.as_ref(),
            ));
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

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::time::Duration;

    use serde_json::json;
    use sqlx::PgPool;
    use weft_common::message::WorkflowSubmitted;
    use weft_common::{Envelope, Workflow, WorkflowExecutionId};
    use weft_store::DbConfig;
    use weft_store::runs::NewRun;

    use tokio::sync::mpsc;

    use crate::decide::STREAM_WINDOW;
    use crate::flush::Committed;
    use crate::{Engine, EngineConfig};

    const ITEMS: i32 = 10 * STREAM_WINDOW;

    async fn next(flusher: &mut mpsc::Receiver<Committed>) -> Committed {
        tokio::time::timeout(Duration::from_secs(30), flusher.recv())
            .await
            .expect("a commit within 30 s")
            .expect("the engine is alive")
    }

    async fn dispatched(pool: &PgPool, run: WorkflowExecutionId) -> i32 {
        sqlx::query_scalar(
            "SELECT items_dispatched FROM task_executions WHERE workflow_execution_id = $1",
        )
        .bind(run.as_uuid())
        .fetch_one(pool)
        .await
        .expect("the fan-out's counter")
    }

    /// A flusher that holds what it received, unpublished, stalls the
    /// stream two windows past the start; each window it finishes lets one
    /// more be committed. Without back-pressure the stream committed all
    /// ten windows at once, queueing them all in memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_commits_no_further_than_a_window_ahead_of_the_flusher() {
        let base = std::env::var("WEFT_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/weft".into());
        let server = base
            .rsplit_once('/')
            .map_or(base.as_str(), |(server, _)| server);
        let name = format!("weft_stream_test_{}", uuid::Uuid::new_v4().simple());
        let pool = weft_store::migrate(&DbConfig {
            url: format!("{server}/{name}"),
            ..DbConfig::default()
        })
        .await
        .expect("a database of the test's own");
        let engine = Engine::new(
            pool.clone(),
            EngineConfig {
                flush_queue: NonZeroUsize::MIN,
                ..EngineConfig::default()
            },
        );
        let mut flusher = engine
            .attach_flusher(Duration::from_secs(60))
            .expect("the first flusher");
        let yaml = format!(
            "name: wide\ntasks:\n  each: {{ with_items: \"{{{{ range({ITEMS}) | list }}}}\", action: echo, input: {{ i: \"{{{{ item }}}}\" }} }}\n"
        );
        let workflow = Workflow::parse(&yaml, "wide.yaml").expect("a valid workflow");
        let id = WorkflowExecutionId::new();
        let input = json!({});
        let run = NewRun {
            id,
            workflow_name: workflow.name(),
            source: &yaml,
            origin: "wide.yaml",
            input: &input,
            tasks_total: 1,
            idempotency_key: None,
        };
        crate::submit(&pool, None, &run).await.expect("submit");
        engine
            .apply(&Envelope::new(WorkflowSubmitted {
                workflow_execution_id: id,
            }))
            .await
            .expect("the run starts");

        // Received and held, never published: the start's window, then the
        // stream's first two (the second waits for the first's flush).
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(next(&mut flusher).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(dispatched(&pool, id).await, 3 * STREAM_WINDOW);
        assert!(flusher.try_recv().is_err(), "a window past the stall");

        // Each window flushed lets one more through, until all are. (The
        // start's commit is not waited for: the stream starts after it.)
        let mut received = 3;
        while received < ITEMS / STREAM_WINDOW {
            let Some(flushed) = held.remove(0).flushed else {
                continue;
            };
            let _ = flushed.send(());
            held.push(next(&mut flusher).await);
            received += 1;
        }
        assert_eq!(dispatched(&pool, id).await, ITEMS);
        drop((held, flusher, engine));
        pool.close().await;
        // The maintenance database: the base URL's may not exist.
        let admin = PgPool::connect(&format!("{server}/postgres"))
            .await
            .expect("the server");
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
    }
}
