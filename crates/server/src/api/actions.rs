//! Changing a run: cancel it, retry it, signal a waiting task (operator).

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;
use weft_common::Given;
use weft_common::auth::Role;
use weft_common::wait::Delivery;
use weft_store::cancel::Canceled;
use weft_store::retry::{Reopened, Retried, Scope};
use weft_store::waits::Signaled;

use super::OptionalBody;
use super::RunPath;
use super::runs::resolve;
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};

/// Cancels a run: no new dispatches, running actions are killed, the run
/// ends `canceled` once nothing of it runs (its exit handlers first). The
/// answer says what happened in `weft cancel`'s words; canceling a run
/// that already finished is not an error (`outcome: already_finished`).
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run}/cancel",
    tag = "runs",
    params(RunPath),
    responses(
        (status = 200, description = "What the request did", body = Canceled),
        (status = 403, description = "The token may not cancel", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { run }): Path<RunPath>,
) -> ApiResult<Json<Canceled>> {
    caller.require(Role::Operator)?;
    let id = resolve(&state, &run).await?;
    let requested = weft_store::cancel::request_committed(&state.pool, id).await?;
    let outcome = requested
        .outcome(id)
        .ok_or_else(|| Problem::not_found(format!("no run with id {id}")))?;
    tracing::info!(workflow_execution_id = %id, by = caller.name, outcome = outcome.outcome, "run cancel requested over the API");
    state.events.touch(id);
    Ok(Json(outcome))
}

/// What `POST /api/v1/runs/{run}/retry` takes (the body may be left out).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Re-run this task and everything downstream of it, on any finished
    /// run (`weft retry --task`).
    pub task: Option<String>,
    /// Re-run these tasks and everything downstream of them.
    #[serde(default)]
    pub tasks: Vec<String>,
}

/// Re-opens a finished run as a new round: without tasks, those that did
/// not succeed (of a failed or canceled run); with tasks, those and
/// everything downstream of them.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run}/retry",
    tag = "runs",
    params(RunPath),
    request_body(content = Option<RetryRequest>, description = "Which tasks to run again (optional)"),
    responses(
        (status = 200, description = "The run runs again", body = Retried),
        (status = 400, description = "Not a run reference, or a body that is not the JSON expected", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not retry", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run is not finished, or nothing of it failed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A task the run does not have", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { run }): Path<RunPath>,
    OptionalBody(request): OptionalBody<RetryRequest>,
) -> ApiResult<Json<Retried>> {
    caller.require(Role::Operator)?;
    let id = resolve(&state, &run).await?;
    let mut tasks = request.tasks;
    tasks.extend(request.task);
    let scope = if tasks.is_empty() {
        Scope::Unfinished
    } else {
        Scope::Tasks(&tasks)
    };
    let reopened = weft_store::retry::reopen_committed(&state.pool, id, scope).await?;
    // The kind of refusal decides the status; the store words it.
    let refusal: fn(String) -> Problem = match &reopened {
        Reopened::NotRetryable(_) | Reopened::LimitFull(_) | Reopened::Reopened { .. } => {
            Problem::conflict
        }
        Reopened::UnknownTasks { .. } => Problem::invalid,
        Reopened::NotFound => Problem::not_found,
    };
    match reopened.outcome(id) {
        Ok(retried) => {
            tracing::info!(workflow_execution_id = %id, by = caller.name, round = retried.round, "run retried over the API");
            state.events.touch(id);
            Ok(Json(retried))
        }
        Err(why) => Err(refusal(
            why.unwrap_or_else(|| format!("no run with id {id}")),
        )),
    }
}

/// What a delivery to a waiting task is.
#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// A signal with a payload (`wait: {signal: …}`).
    #[default]
    Signal,
    /// An approval (`wait: {approval: true}`).
    Approve,
    /// A rejection: the task's attempt fails.
    Reject,
}

/// What `POST /api/v1/runs/{run}/tasks/{task}/signal` takes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// `signal` (the default), `approve` or `reject`.
    #[serde(default)]
    pub kind: SignalKind,
    /// A signal's payload, by field, as JSON values (checked against the
    /// declared fields' types).
    #[serde(default)]
    pub input: serde_json::Map<String, serde_json::Value>,
    /// A signal's payload, by field, as text read by each field's declared
    /// type (what `weft signal --input K=V` sends). Wins over `input`.
    #[serde(default)]
    pub input_text: std::collections::BTreeMap<String, String>,
    /// Who approves or rejects (default: the token's name).
    pub by: Option<String>,
    /// Why, for an approval or a rejection.
    pub comment: Option<String>,
}

/// Delivers a signal, an approval or a rejection to a task that waits
/// for it (`wait:`). Synchronous: the answer says whether it was
/// accepted; a payload that does not fit the declared fields, a task that
/// is not waiting (its state named) or a second delivery is refused and
/// changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run}/tasks/{task}/signal",
    tag = "runs",
    params(
        ("run" = String, Path, description = "The run: its id, a unique prefix (8+ hex digits), or `last`"),
        ("task" = String, Path, description = "The waiting task's name")
    ),
    request_body(content = Option<SignalRequest>, description = "What to deliver (default: a signal with no payload)"),
    responses(
        (status = 200, description = "Accepted: an executor ends the task's wait with it", body = Signaled),
        (status = 400, description = "Not a run reference, or a body that is not the JSON expected", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not signal", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run or task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task is not waiting, or its wait already ended", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A payload that does not fit the declared fields, or a kind the wait does not take", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn signal(
    State(state): State<AppState>,
    caller: Caller,
    Path((run, task)): Path<(String, String)>,
    OptionalBody(request): OptionalBody<SignalRequest>,
) -> ApiResult<Json<Signaled>> {
    caller.require(Role::Operator)?;
    let id = resolve(&state, &run).await?;
    let by = request.by.unwrap_or_else(|| caller.name.clone());
    let delivery = match request.kind {
        SignalKind::Signal => {
            let mut given: Vec<(String, Given)> = request
                .input
                .into_iter()
                .map(|(k, v)| (k, Given::Json(v)))
                .collect();
            given.extend(
                request
                    .input_text
                    .into_iter()
                    .map(|(k, v)| (k, Given::Text(v))),
            );
            Delivery::Signal(given)
        }
        SignalKind::Approve => Delivery::Approve {
            by,
            comment: request.comment,
        },
        SignalKind::Reject => Delivery::Reject {
            by,
            comment: request.comment,
        },
    };
    let delivered = weft_store::waits::deliver_committed(&state.pool, id, &task, &delivery).await?;
    match delivered.outcome(id, &task) {
        Ok(signaled) => {
            tracing::info!(workflow_execution_id = %id, task = %task, by = caller.name, resolution = %signaled.resolution, "signal delivered over the API");
            state.events.touch(id);
            Ok(Json(signaled))
        }
        Err(None) => Err(Problem::not_found(format!("no run with id {id}"))),
        Err(Some(refusal)) => Err(match refusal.reason {
            "unknown_task" => Problem::not_found(refusal.message),
            "invalid" => Problem::invalid(refusal.message),
            _ => Problem::conflict(refusal.message),
        }),
    }
}
