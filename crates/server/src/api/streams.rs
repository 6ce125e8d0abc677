//! Server-sent event streams: one run's status as it changes, and the runs
//! list's changes. Both send `Authorization: Bearer` like every request
//! (read them with `fetch()` streaming or `curl -N`; `EventSource` cannot
//! set the header). A comment line every [`KEEP_ALIVE`] keeps proxies from
//! closing a quiet stream. They are not bounded by the request timeout.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use weft_common::auth::Role;
use weft_common::{WorkflowExecutionId, WorkflowStatus};
use weft_store::inspect::runs::RunListItem;
use weft_store::inspect::status::RunStatus;

use super::RunPath;
use super::runs::resolve;
use crate::AppState;
use crate::auth::Caller;
use crate::events::Snapshot;
use crate::problem::ApiResult;

/// How often a quiet stream sends a comment line.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The data of an `end` event: the run is terminal (or gone).
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct End {
    /// The run.
    pub id: WorkflowExecutionId,
    /// How it ended; `None` if it no longer exists (pruned).
    pub status: Option<WorkflowStatus>,
}

/// Follows one run: an event `status` (data: the run as
/// `GET /api/v1/runs/{run}` shows it) at once and whenever it changes —
/// changes close together are sent as one — then an event `end` (data:
/// `{id, status}`) once it is terminal, and the stream closes.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run}/events",
    tag = "events",
    params(RunPath),
    responses(
        (status = 200, description = "A stream of `status` events (RunStatus) ending with one `end` event (End)", content_type = "text/event-stream", body = String)
    )
)]
pub async fn run_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { run }): Path<RunPath>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Role::Viewer)?;
    let id = resolve(&state, &run).await?;
    let rx = state.events.watch_run(id);
    Ok(Sse::new(run_stream(id, rx, state.events.stopping()))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The events of one run's [`watch`] channel.
fn run_stream(
    id: WorkflowExecutionId,
    rx: watch::Receiver<Snapshot>,
    stopping: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(
        (rx, VecDeque::<Event>::new(), false),
        move |(mut rx, mut queue, mut ended)| {
            let stopping = stopping.clone();
            async move {
                loop {
                    if let Some(event) = queue.pop_front() {
                        return Some((Ok(event), (rx, queue, ended)));
                    }
                    if ended {
                        return None;
                    }
                    let open = tokio::select! {
                        changed = rx.changed() => changed.is_ok(),
                        () = stopping.cancelled() => return None,
                    };
                    let snapshot = rx.borrow_and_update().clone();
                    match snapshot {
                        Some(status) => {
                            queue.push_back(status_event(&status));
                            if status.status.is_terminal() || !open {
                                queue.push_back(end_event(id, Some(status.status)));
                                ended = true;
                            }
                        }
                        None if open => {}
                        None => {
                            queue.push_back(end_event(id, None));
                            ended = true;
                        }
                    }
                }
            }
        },
    )
}

fn status_event(status: &RunStatus) -> Event {
    json_event("status", status)
}

fn end_event(id: WorkflowExecutionId, status: Option<WorkflowStatus>) -> Event {
    json_event("end", &End { id, status })
}

/// An event of `kind` whose data is `value` as JSON.
fn json_event(kind: &str, value: &impl Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "an event's data did not serialize");
        "null".to_owned()
    });
    Event::default().event(kind).data(data)
}

/// Follows every run: an event `run` (data: the run as `GET /api/v1/runs`
/// lists it) for each run that changed — started, ended, or newly
/// submitted (those within a couple of seconds). A client too slow to keep
/// up gets an event `lagged` and should reload the list.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    responses(
        (status = 200, description = "A stream of `run` events (RunListItem)", content_type = "text/event-stream", body = String)
    )
)]
pub async fn all_events(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Role::Viewer)?;
    let rx = state.events.subscribe_list();
    Ok(Sse::new(list_stream(rx, state.events.stopping()))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The events of the runs list's broadcast.
fn list_stream(
    rx: broadcast::Receiver<Arc<Vec<RunListItem>>>,
    stopping: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(
        (rx, VecDeque::<Event>::new()),
        move |(mut rx, mut queue)| {
            let stopping = stopping.clone();
            async move {
                loop {
                    if let Some(event) = queue.pop_front() {
                        return Some((Ok(event), (rx, queue)));
                    }
                    let received = tokio::select! {
                        received = rx.recv() => received,
                        () = stopping.cancelled() => return None,
                    };
                    match received {
                        Ok(items) => queue.extend(items.iter().map(|item| json_event("run", item))),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            queue.push_back(Event::default().event("lagged").data(n.to_string()));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        },
    )
}
