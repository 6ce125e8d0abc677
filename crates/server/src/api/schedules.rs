//! `GET /api/v1/workflows` (registered workflows) and `GET
//! /api/v1/schedules`: what `weft workflow list --json` and `weft schedule
//! list --json` print, read through the store.

use axum::Json;
use axum::extract::State;
use weft_common::auth::Role;
use weft_store::registry::{self, Listed};
use weft_store::schedules::{self, Schedule};

use super::runs::acquire;
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};

/// The registered workflows, by name, with their newest version and the
/// schedules that run them.
#[utoipa::path(
    get,
    path = "/api/v1/workflows",
    tag = "workflows",
    responses(
        (status = 200, description = "The registered workflows", body = Vec<Listed>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn workflows(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Listed>>> {
    caller.require(Role::Viewer)?;
    let mut conn = acquire(&state).await?;
    Ok(Json(registry::list(&mut conn).await?))
}

/// The schedules, by name, with their next tick and counts.
#[utoipa::path(
    get,
    path = "/api/v1/schedules",
    tag = "workflows",
    responses(
        (status = 200, description = "The schedules", body = Vec<Schedule>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Schedule>>> {
    caller.require(Role::Viewer)?;
    let mut conn = acquire(&state).await?;
    Ok(Json(schedules::list(&mut conn).await?))
}
