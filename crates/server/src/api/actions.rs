//! Changing a run: cancel it, retry it (operator).

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;
use weft_common::auth::Role;
use weft_store::cancel::Canceled;
use weft_store::retry::{Reopened, Retried, Scope};

use super::OptionalBody;
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
    params(("run" = String, Path, description = "The run: its id, a unique prefix (8+ hex digits), or `last`")),
    responses(
        (status = 200, description = "What the request did", body = Canceled),
        (status = 400, description = "Not a run reference", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not cancel", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A prefix several runs start with", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
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
    params(("run" = String, Path, description = "The run: its id, a unique prefix (8+ hex digits), or `last`")),
    request_body(content = Option<RetryRequest>, description = "Which tasks to run again (optional)"),
    responses(
        (status = 200, description = "The run runs again", body = Retried),
        (status = 400, description = "Not a run reference, or a body that is not the JSON expected", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not retry", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run is not finished, or nothing of it failed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A task the run does not have", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
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
