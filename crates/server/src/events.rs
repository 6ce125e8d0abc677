//! What the server-sent event streams follow: one shared `LISTEN`
//! connection per server (never one per client), fanned out over a
//! [`broadcast`] channel, and one shared reader per run being watched.
//!
//! - The **listener** task holds the only `LISTEN` connection (on
//!   [`weft_store::inspect::RUNS_CHANNEL`] and the channel of finished
//!   runs) and broadcasts each notification as a [`Notice`]. After a lost
//!   connection it broadcasts [`Notice::All`]: what it missed meanwhile is
//!   read again.
//! - A **run feed** ([`Events::watch_run`]) reads one run's status when a
//!   notice names it — at most every [`MIN_READ_INTERVAL`], so a burst of
//!   completions is one read — and at least every [`RECHECK`] (a
//!   notification is a hint, and not every change sends one). It
//!   publishes the status on a [`watch`] channel, which keeps only the
//!   latest value: however many clients follow the run (200 cost one read
//!   per change) and however slow one of them is, each sees the newest
//!   status. The feed ends when the run does, or when its last client
//!   leaves.
//! - The **list feed** ([`Events::subscribe_list`]) does the same for the
//!   runs list: the runs notices name, and the newest page on the timer,
//!   broadcasting the items that changed — only while someone listens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_common::WorkflowExecutionId;
use weft_store::PgPool;
use weft_store::inspect::runs::{RunFilter, RunListItem};
use weft_store::inspect::status::RunStatus;

/// The longest a feed waits for a notification before it reads again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// The shortest time between two reads of one feed: notifications in
/// between are taken together.
pub const MIN_READ_INTERVAL: Duration = Duration::from_millis(100);

/// How many runs the list feed reads on its timer (the newest).
const LIST_WINDOW: i64 = 100;

/// How many notices the broadcast keeps for a slow feed before it skips
/// them (then it reads everything again).
const NOTICE_BUFFER: usize = 1024;

/// How many list changes are kept for a slow list client.
const LIST_BUFFER: usize = 256;

/// A change announced by PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// These runs changed (their ids as text).
    Runs(Arc<[String]>),
    /// Any run may have changed.
    All,
}

impl Notice {
    /// The notice a payload of the runs' channels makes.
    #[must_use]
    pub fn of_payload(payload: &str) -> Self {
        match weft_store::inspect::runs_in_payload(payload) {
            None => Self::All,
            Some(ids) => Self::Runs(ids.into_iter().map(str::to_owned).collect()),
        }
    }

    /// Whether it may concern run `id`.
    #[must_use]
    pub fn concerns(&self, id: &str) -> bool {
        match self {
            Self::All => true,
            Self::Runs(ids) => ids.iter().any(|r| r == id),
        }
    }
}

/// The latest status of a watched run; `None` until it is first read.
pub type Snapshot = Option<Arc<RunStatus>>;

/// The shared followers of runs.
#[derive(Debug)]
pub struct Events {
    pool: PgPool,
    notices: broadcast::Sender<Notice>,
    runs: Mutex<HashMap<WorkflowExecutionId, Arc<watch::Sender<Snapshot>>>>,
    list: broadcast::Sender<Arc<Vec<RunListItem>>>,
    shutdown: CancellationToken,
}

impl Events {
    /// Starts the listener and the list feed; they stop with `shutdown`.
    #[must_use]
    pub fn start(pool: PgPool, shutdown: CancellationToken) -> Arc<Self> {
        let (notices, _) = broadcast::channel(NOTICE_BUFFER);
        let (list, _) = broadcast::channel(LIST_BUFFER);
        let events = Arc::new(Self {
            pool,
            notices,
            runs: Mutex::new(HashMap::new()),
            list,
            shutdown,
        });
        tokio::spawn(Arc::clone(&events).listen());
        tokio::spawn(Arc::clone(&events).list_feed());
        events
    }

    /// Announces that run `id` changed (the server's own submits, cancels
    /// and retries: the feeds need not wait for PostgreSQL to say so).
    pub fn touch(&self, id: WorkflowExecutionId) {
        let _ = self.notices.send(Notice::Runs(Arc::from([id.to_string()])));
    }

    /// The latest status of run `id`, kept up to date while the receiver
    /// lives. A new receiver sees the current status as unseen; the
    /// channel closes once the run is terminal (its last value) or gone.
    pub fn watch_run(self: &Arc<Self>, id: WorkflowExecutionId) -> watch::Receiver<Snapshot> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rx = if let Some(tx) = runs.get(&id) {
            tx.subscribe()
        } else {
            let (tx, rx) = watch::channel(None);
            let tx = Arc::new(tx);
            runs.insert(id, Arc::clone(&tx));
            tokio::spawn(Arc::clone(self).run_feed(id, tx));
            rx
        };
        rx.mark_changed();
        rx
    }

    /// Canceled when the server stops: event streams end then (a graceful
    /// shutdown waits for every open response).
    #[must_use]
    pub fn stopping(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The runs list's changes: each message the items that changed.
    #[must_use]
    pub fn subscribe_list(&self) -> broadcast::Receiver<Arc<Vec<RunListItem>>> {
        self.list.subscribe()
    }

    /// The one `LISTEN` connection, broadcasting what it hears.
    async fn listen(self: Arc<Self>) {
        loop {
            match weft_store::inspect::listen(&self.pool).await {
                Ok(mut listener) => {
                    // What changed while there was no listener.
                    let _ = self.notices.send(Notice::All);
                    loop {
                        tokio::select! {
                            () = self.shutdown.cancelled() => return,
                            n = listener.recv() => match n {
                                Ok(n) => {
                                    let _ = self.notices.send(Notice::of_payload(n.payload()));
                                }
                                Err(e) => {
                                    // The listener reconnects on its next `recv`.
                                    tracing::warn!(error = %e, "the events listener lost its connection");
                                    let _ = self.notices.send(Notice::All);
                                    tokio::select! {
                                        () = self.shutdown.cancelled() => return,
                                        () = tokio::time::sleep(RECHECK) => {}
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the events listener cannot connect; feeds re-read on their timer");
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// Reads run `id` as notices name it, publishing on `tx`, until it is
    /// terminal or gone or nobody watches it.
    async fn run_feed(self: Arc<Self>, id: WorkflowExecutionId, tx: Arc<watch::Sender<Snapshot>>) {
        let mut notices = self.notices.subscribe();
        let key = id.to_string();
        loop {
            let read_at = Instant::now();
            drain(&mut notices);
            match self.read_status(id).await {
                Ok(Some(status)) => {
                    let terminal = status.status.is_terminal();
                    tx.send_if_modified(|current| {
                        if current.as_deref() == Some(&status) {
                            return false;
                        }
                        *current = Some(Arc::new(status));
                        true
                    });
                    if terminal {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, workflow_execution_id = %id, "reading a watched run failed; trying again")
                }
            }
            let deadline = Instant::now() + RECHECK;
            loop {
                tokio::select! {
                    () = self.shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(deadline) => break,
                    n = notices.recv() => match n {
                        Ok(n) if n.concerns(&key) => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
            if self.shutdown.is_cancelled() || self.release_if_unwatched(id, &tx) {
                return;
            }
            tokio::time::sleep_until(read_at + MIN_READ_INTERVAL).await;
        }
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if runs.get(&id).is_some_and(|t| Arc::ptr_eq(t, &tx)) {
            runs.remove(&id);
        }
    }

    /// Forgets run `id`'s feed if no client watches it any more (under the
    /// lock new watchers take, so none is left behind).
    fn release_if_unwatched(
        &self,
        id: WorkflowExecutionId,
        tx: &Arc<watch::Sender<Snapshot>>,
    ) -> bool {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if tx.receiver_count() > 0 {
            return false;
        }
        if runs.get(&id).is_some_and(|t| Arc::ptr_eq(t, tx)) {
            runs.remove(&id);
        }
        true
    }

    async fn read_status(&self, id: WorkflowExecutionId) -> Result<Option<RunStatus>, String> {
        let mut conn = self.pool.acquire().await.map_err(|e| e.to_string())?;
        weft_store::inspect::status::load(&mut conn, id)
            .await
            .map_err(|e| e.to_string())
    }

    /// Broadcasts the runs list's changes while anyone listens.
    async fn list_feed(self: Arc<Self>) {
        let mut notices = self.notices.subscribe();
        let mut seen: HashMap<WorkflowExecutionId, RunListItem> = HashMap::new();
        loop {
            let read_at = Instant::now();
            let mut named: Vec<WorkflowExecutionId> = Vec::new();
            let mut all = false;
            let deadline = read_at + RECHECK;
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => all = true,
                n = notices.recv() => take(n, &mut named, &mut all),
            }
            tokio::time::sleep_until(read_at + MIN_READ_INTERVAL).await;
            loop {
                match notices.try_recv() {
                    Ok(n) => take(Ok(n), &mut named, &mut all),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => all = true,
                    Err(_) => break,
                }
            }
            if self.list.receiver_count() == 0 {
                seen.clear();
                continue;
            }
            match self.read_list(&named, all).await {
                Ok(items) => {
                    let changed: Vec<RunListItem> = items
                        .into_iter()
                        .filter(|item| seen.get(&item.id) != Some(item))
                        .collect();
                    if seen.len() > 10 * usize::try_from(LIST_WINDOW).unwrap_or(100) {
                        seen.clear();
                    }
                    for item in &changed {
                        seen.insert(item.id, item.clone());
                    }
                    if !changed.is_empty() {
                        let _ = self.list.send(Arc::new(changed));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the runs list for its event stream failed")
                }
            }
        }
    }

    async fn read_list(
        &self,
        named: &[WorkflowExecutionId],
        all: bool,
    ) -> Result<Vec<RunListItem>, String> {
        let mut conn = self.pool.acquire().await.map_err(|e| e.to_string())?;
        let mut items = if named.is_empty() {
            Vec::new()
        } else {
            weft_store::inspect::runs::items(&mut conn, named)
                .await
                .map_err(|e| e.to_string())?
        };
        if all {
            let page = weft_store::inspect::runs::page(
                &mut conn,
                &RunFilter::default(),
                LIST_WINDOW,
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
            items.extend(page.items.into_iter().filter(|i| !named.contains(&i.id)));
        }
        Ok(items)
    }
}

/// Adds a received notice to what the list feed reads.
fn take(
    n: Result<Notice, broadcast::error::RecvError>,
    named: &mut Vec<WorkflowExecutionId>,
    all: &mut bool,
) {
    match n {
        Ok(Notice::Runs(ids)) => {
            named.extend(
                ids.iter()
                    .filter_map(|id| id.parse::<WorkflowExecutionId>().ok()),
            );
        }
        Ok(Notice::All) | Err(_) => *all = true,
    }
}

/// Discards the notices waiting: the read about to happen covers them.
fn drain(notices: &mut broadcast::Receiver<Notice>) {
    loop {
        match notices.try_recv() {
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_concerns_the_runs_it_names_or_all() {
        let n = Notice::of_payload("a,b");
        assert!(n.concerns("a") && n.concerns("b") && !n.concerns("c"));
        assert_eq!(Notice::of_payload("*"), Notice::All);
        assert!(Notice::All.concerns("x"));
    }
}
