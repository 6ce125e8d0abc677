//! `GET /api/v1/workers`: the workers heard from lately.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use weft_common::auth::Role;
use weft_store::workers::WorkerRow;

use super::Params;
use super::runs::acquire;
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};

/// The query of `GET /api/v1/workers`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WorkersQuery {
    /// Seconds since its last heartbeat within which a worker is live
    /// (default 30, the executors' `--heartbeat-grace`).
    #[param(value_type = Option<f64>, minimum = 0.001, maximum = 86400)]
    pub heartbeat_grace: Option<String>,
    /// Also list workers lost within this many seconds (default 3600).
    #[param(value_type = Option<f64>, minimum = 0, maximum = 31536000)]
    pub lost_within: Option<String>,
}

/// Seconds given as a query parameter, within `min..=max`.
fn seconds(
    name: &str,
    value: Option<&str>,
    default: f64,
    min: f64,
    max: f64,
) -> Result<Duration, Problem> {
    let s = match value {
        None => default,
        Some(v) => v.trim().parse::<f64>().map_err(|_| {
            Problem::bad_request(format!("`{name}` must be a number of seconds, not `{v}`"))
        })?,
    };
    if !(min..=max).contains(&s) {
        return Err(Problem::bad_request(format!(
            "`{name}` must be between {min} and {max} seconds, not {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

/// The workers heard from lately, live ones first, as `weft workers
/// --json` prints them.
#[utoipa::path(
    get,
    path = "/api/v1/workers",
    tag = "workers",
    params(WorkersQuery),
    responses(
        (status = 200, description = "The workers", body = Vec<WorkerRow>),
        (status = 400, description = "A bad query", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<WorkersQuery>,
) -> ApiResult<Json<Vec<WorkerRow>>> {
    caller.require(Role::Viewer)?;
    let grace = seconds(
        "heartbeat_grace",
        query.heartbeat_grace.as_deref(),
        weft_store::workers::DEFAULT_HEARTBEAT_GRACE.as_secs_f64(),
        0.001,
        86_400.0,
    )?;
    let lost_within = seconds(
        "lost_within",
        query.lost_within.as_deref(),
        3600.0,
        0.0,
        31_536_000.0,
    )?;
    let mut conn = acquire(&state).await?;
    Ok(Json(
        weft_store::workers::list(&mut conn, grace, lost_within).await?,
    ))
}
