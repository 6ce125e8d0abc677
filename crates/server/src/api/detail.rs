//! What is inside a run: its attempts (paged), their logs, why it is where
//! it is, and its DAG — the shapes `weft status RUN --task`, `weft logs`,
//! `weft explain` and the web UI's run page show.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::IntoParams;
use weft_common::auth::Role;
use weft_common::graph::Graph;
use weft_store::inspect::attempts::{AttemptFilter, AttemptPage};
use weft_store::inspect::explain::Report;
use weft_store::inspect::logs::AttemptLog;

use super::Params;
use super::RunPath;
use super::runs::{acquire, resolve};
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};

/// The default page size of `GET /api/v1/runs/{run}/attempts`.
const DEFAULT_ATTEMPTS: i64 = 1_000;

/// The query of `GET /api/v1/runs/{run}/attempts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AttemptsQuery {
    /// Only this task's attempts.
    pub task: Option<String>,
    /// At most this many (1–10000; default 1000).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10000)]
    pub limit: Option<String>,
    /// Skip this many (the previous page's `next_offset`).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub offset: Option<String>,
}

/// An integer query parameter within `range`, or 400 naming it.
///
/// # Errors
/// [`Problem::bad_request`] saying which parameter and why.
pub fn int_param(
    name: &str,
    value: Option<&str>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, Problem> {
    let Some(value) = value else {
        return Ok(default);
    };
    let n: i64 = value.trim().parse().map_err(|_| {
        Problem::bad_request(format!("`{name}` must be a whole number, not `{value}`"))
    })?;
    if !range.contains(&n) {
        return Err(Problem::bad_request(format!(
            "`{name}` must be between {} and {}, not {n}",
            range.start(),
            range.end()
        )));
    }
    Ok(n)
}

/// The `offset` query parameter: 0 by default.
fn offset_param(value: Option<&str>) -> Result<i64, Problem> {
    int_param("offset", value, 0, 0..=i64::from(i32::MAX))
}

/// The attempts of a run's tasks, a page at a time, by task, item and
/// attempt: each as `weft status RUN --task NAME --json` lists it.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run}/attempts",
    tag = "runs",
    params(RunPath, AttemptsQuery),
    responses(
        (status = 200, description = "A page of attempts", body = AttemptPage),
        (status = 400, description = "A bad run reference or query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run, or no such task in it", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { run }): Path<RunPath>,
    Params(query): Params<AttemptsQuery>,
) -> ApiResult<Json<AttemptPage>> {
    caller.require(Role::Viewer)?;
    let limit = int_param(
        "limit",
        query.limit.as_deref(),
        DEFAULT_ATTEMPTS,
        1..=weft_store::inspect::attempts::MAX_ATTEMPT_PAGE,
    )?;
    let offset = offset_param(query.offset.as_deref())?;
    let id = resolve(&state, &run).await?;
    let mut conn = acquire(&state).await?;
    check_run_and_task(&mut conn, id, query.task.as_deref()).await?;
    let filter = AttemptFilter {
        task: query.task.as_deref(),
        ..AttemptFilter::default()
    };
    Ok(Json(
        weft_store::inspect::attempts::page(&mut conn, id, &filter, limit, offset).await?,
    ))
}

/// 404 when run `id` does not exist, or has no task `task`.
async fn check_run_and_task(
    conn: &mut weft_store::PgConnection,
    id: weft_common::WorkflowExecutionId,
    task: Option<&str>,
) -> Result<(), Problem> {
    match task {
        Some(task) => match weft_store::inspect::attempts::task_problem(conn, id, task).await? {
            None => Ok(()),
            Some(problem) => Err(Problem::not_found(problem)),
        },
        None => match weft_store::runs::get(conn, id).await? {
            Some(_) => Ok(()),
            None => Err(Problem::not_found(format!("no run with id {id}"))),
        },
    }
}

/// The query of `GET /api/v1/runs/{run}/logs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only this task's attempts.
    pub task: Option<String>,
    /// Only this item's attempts (its index).
    #[param(value_type = Option<i32>, minimum = 0)]
    pub item: Option<String>,
    /// Only this attempt (counted within its round, from 1).
    #[param(value_type = Option<i32>, minimum = 1)]
    pub attempt: Option<String>,
    /// Only this round's attempts (`retry` starts a new round).
    #[param(value_type = Option<i32>, minimum = 1)]
    pub round: Option<String>,
    /// At most this many attempts (1–1000). Without it, every attempt
    /// that matches — refused (400) past 1000: narrow the filters or page.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Skip this many (with `limit`: the next page starts at
    /// `offset + limit`; a page shorter than `limit` is the last).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub offset: Option<String>,
}

/// The most attempts one answer of `GET /api/v1/runs/{run}/logs` holds
/// (each may carry 128 KiB of output).
pub const MAX_LOGS: i64 = 1_000;

/// An optional `i32` query parameter at least `min`.
fn opt_i32(name: &str, value: Option<&str>, min: i64) -> Result<Option<i32>, Problem> {
    value
        .map(|v| {
            int_param(name, Some(v), 0, min..=i64::from(i32::MAX))
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
        })
        .transpose()
}

/// What each attempt printed, as `weft logs --json` prints it: every
/// attempt that matches (at most 1000, else 400), or a page of them with
/// `limit` and `offset`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run}/logs",
    tag = "runs",
    params(RunPath, LogsQuery),
    responses(
        (status = 200, description = "The attempts with their logs", body = Vec<AttemptLog>),
        (status = 400, description = "A bad run reference or query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run, or no such task in it", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { run }): Path<RunPath>,
    Params(query): Params<LogsQuery>,
) -> ApiResult<Json<Vec<AttemptLog>>> {
    caller.require(Role::Viewer)?;
    let item = opt_i32("item", query.item.as_deref(), 0)?;
    let attempt = opt_i32("attempt", query.attempt.as_deref(), 1)?;
    let round = opt_i32("round", query.round.as_deref(), 1)?;
    let paged = query.limit.is_some() || query.offset.is_some();
    let limit = int_param("limit", query.limit.as_deref(), MAX_LOGS, 1..=MAX_LOGS)?;
    let offset = offset_param(query.offset.as_deref())?;
    let id = resolve(&state, &run).await?;
    let mut conn = acquire(&state).await?;
    check_run_and_task(&mut conn, id, query.task.as_deref()).await?;
    let filter = AttemptFilter {
        task: query.task.as_deref(),
        item,
        attempt,
        round,
        ended: false,
    };
    // One more than asked says whether an unpaged answer would be too long.
    let mut rows =
        weft_store::inspect::logs::page(&mut conn, id, &filter, limit + i64::from(!paged), offset)
            .await?;
    if !paged && rows.len() > usize::try_from(MAX_LOGS).unwrap_or(usize::MAX) {
        return Err(Problem::bad_request(format!(
            "more than {MAX_LOGS} attempts match: narrow them (`task`, `item`, `round`, `attempt`) or page them with `limit` and `offset`"
        )));
    }
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Json(rows))
}

/// Why the run and each of its tasks are where they are, as
/// `weft explain --json` prints it (without RabbitMQ's queue figures: the
/// server does not talk to the broker).
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run}/explain",
    tag = "runs",
    params(RunPath),
    responses(
        (status = 200, description = "The facts, the sentences and the child runs", body = Report)
    )
)]
pub async fn explain(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { run }): Path<RunPath>,
) -> ApiResult<Json<Report>> {
    caller.require(Role::Viewer)?;
    let id = resolve(&state, &run).await?;
    let mut conn = acquire(&state).await?;
    let facts = weft_store::inspect::explain::run_facts(
        &mut conn,
        id,
        weft_store::workers::DEFAULT_HEARTBEAT_GRACE,
    )
    .await?
    .ok_or_else(|| Problem::not_found(format!("no run with id {id}")))?;
    let children = weft_store::children::children(&mut conn, id).await?;
    Ok(Json(Report::new(facts, children)))
}

/// The DAG of the workflow the run runs (its stored definition).
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run}/graph",
    tag = "runs",
    params(RunPath),
    responses(
        (status = 200, description = "The run's workflow's tasks and needs", body = Graph)
    )
)]
pub async fn graph(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { run }): Path<RunPath>,
) -> ApiResult<Json<Graph>> {
    caller.require(Role::Viewer)?;
    let id = resolve(&state, &run).await?;
    let mut conn = acquire(&state).await?;
    let row = weft_store::runs::get(&mut conn, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no run with id {id}")))?;
    let (source, origin) = weft_store::runs::definition(&mut conn, row.definition_id).await?;
    let workflow = weft_common::Workflow::parse_stored(&source, &origin).map_err(|e| {
        tracing::error!(workflow_execution_id = %id, error = %e, "a stored workflow no longer parses");
        Problem::internal(format!("run {id}'s workflow no longer parses"))
    })?;
    Ok(Json(Graph::of(&workflow)))
}
