//! `/api/v1/runs`: submit, list and read runs.

use std::path::PathBuf;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use weft_common::auth::Role;
use weft_common::{Bundle, Given, RunRef, WorkflowExecutionId, WorkflowStatus};
use weft_store::inspect::runs::{Cursor, RunFilter, RunPage};
use weft_store::inspect::status::RunStatus;
use weft_store::runs::{NewRun, Resolved, Submitted};

use super::RunPath;
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};

/// The default page size of `GET /api/v1/runs`.
const DEFAULT_LIMIT: i64 = 50;

/// The query of `GET /api/v1/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only runs in this status.
    pub status: Option<WorkflowStatus>,
    /// Only runs of this workflow (by name).
    pub workflow: Option<String>,
    /// Only the child runs of this run (its id).
    #[param(value_type = Option<String>, format = Uuid)]
    pub parent: Option<String>,
    /// Leave out child runs (started by a `workflow:` task).
    #[param(value_type = Option<bool>)]
    pub top: Option<String>,
    /// At most this many runs (1–1000; default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Where to go on: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Lists runs, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/runs",
    tag = "runs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 400, description = "A bad filter or cursor", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    crate::api::Params(query): crate::api::Params<ListQuery>,
) -> ApiResult<Json<RunPage>> {
    caller.require(Role::Viewer)?;
    let limit = crate::api::detail::int_param(
        "limit",
        query.limit.as_deref(),
        DEFAULT_LIMIT,
        1..=weft_store::inspect::runs::MAX_PAGE,
    )?;
    let parent = query
        .parent
        .as_deref()
        .map(|p| {
            p.trim().parse::<WorkflowExecutionId>().map_err(|_| {
                Problem::bad_request(format!("`parent` must be a run id (a UUID), not `{p}`"))
            })
        })
        .transpose()?;
    let after = query
        .cursor
        .as_deref()
        .map(str::parse::<Cursor>)
        .transpose()
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let filter = RunFilter {
        status: query.status,
        workflow: query.workflow,
        parent,
        top: match query.top.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Problem::bad_request(format!(
                    "`top` must be `true` or `false`, not `{other}`"
                )));
            }
        },
    };
    let mut conn = acquire(&state).await?;
    Ok(Json(
        weft_store::inspect::runs::page(&mut conn, &filter, limit, after).await?,
    ))
}

/// What `POST /api/v1/runs` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The workflow's YAML text.
    pub workflow: String,
    /// Its inputs, by name (values as JSON).
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// A second submit with the same key (and inputs) returns the first
    /// run instead of starting another.
    pub idempotency_key: Option<String>,
}

/// What `POST /api/v1/runs` answers: as `weft submit --json` prints.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Submission {
    /// The run.
    pub id: WorkflowExecutionId,
    /// Its workflow's name.
    pub workflow: String,
    /// `false` when the idempotency key returned an existing run.
    pub created: bool,
}

/// Submits a run of a workflow given as YAML text.
#[utoipa::path(
    post,
    path = "/api/v1/runs",
    tag = "runs",
    request_body = SubmitRequest,
    responses(
        (status = 201, description = "The run was created", body = Submission),
        (status = 200, description = "The idempotency key returned an existing run", body = Submission),
        (status = 403, description = "The token may not submit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The workflow or its inputs are not valid", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    body: crate::api::Body<SubmitRequest>,
) -> ApiResult<(StatusCode, Json<Submission>)> {
    caller.require(Role::Operator)?;
    let request = body.0;
    let bundle = parse_workflow(&request.workflow)?;
    let workflow = &bundle.root().workflow;
    let given: Vec<(String, Given)> = request
        .inputs
        .into_iter()
        .map(|(k, v)| (k, Given::Json(v)))
        .collect();
    let input = workflow
        .resolve_given(given)
        .map_err(|e| Problem::invalid(e.to_string()))?;
    // Secret inputs are stored sealed, never in plain text.
    let input = workflow
        .seal_input(state.secrets.as_deref(), input)
        .map_err(|e| {
            Problem::invalid(format!(
                "this server cannot take the workflow's secret inputs: {e}"
            ))
        })?;
    let input = Value::Object(input);
    let new = NewRun {
        id: WorkflowExecutionId::new(),
        workflow_name: workflow.name(),
        source: &bundle.root().source,
        origin: SUBMITTED_ORIGIN,
        input: &input,
        tasks_total: i32::try_from(workflow.tasks().count())
            .map_err(|_| Problem::invalid("the workflow has too many tasks"))?,
        idempotency_key: request.idempotency_key.as_deref(),
    };
    let submitted = weft_store::children::submit_bundle(&state.pool, &new, &bundle).await?;
    let created = matches!(submitted, Submitted::Created(_));
    tracing::info!(workflow_execution_id = %submitted.id(), workflow = workflow.name(), by = caller.name, created, "run submitted over the API");
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(Submission {
            id: submitted.id(),
            workflow: workflow.name().to_owned(),
            created,
        }),
    ))
}

/// The name a submitted workflow's diagnostics are reported against.
pub const SUBMITTED_ORIGIN: &str = "workflow.yaml";

/// Parses and validates a workflow's text; a `workflow:` task naming a
/// file is refused (the server reads no client's files).
///
/// # Errors
/// 422 with every problem at its line.
pub fn parse_workflow(source: &str) -> Result<Bundle, Problem> {
    Bundle::load(
        PathBuf::from(SUBMITTED_ORIGIN),
        SUBMITTED_ORIGIN,
        source.to_owned(),
        |path| {
            Err(format!(
                "{}: the server reads no files; submit a workflow without file `workflow:` tasks, or use `weft submit` against the database",
                path.display()
            ))
        },
    )
    .map_err(|all| Problem::invalid_workflow(&all))
}

/// A run as `weft status --json` shows it. `{run}` is its id, a unique
/// prefix of it (8+ hex digits), or `last`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run}",
    tag = "runs",
    params(RunPath),
    responses(
        (status = 200, description = "The run", body = RunStatus),
        (status = 400, description = "Not a run id", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { run }): Path<RunPath>,
) -> ApiResult<Json<RunStatus>> {
    caller.require(Role::Viewer)?;
    let id = resolve(&state, &run).await?;
    let mut conn = acquire(&state).await?;
    weft_store::inspect::status::load(&mut conn, id)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no run with id {id}")))
}

/// A database connection, or 503.
///
/// # Errors
/// [`Problem::unavailable`].
pub async fn acquire(
    state: &AppState,
) -> Result<weft_store::PoolConnection<weft_store::Postgres>, Problem> {
    state.pool.acquire().await.map_err(|e| {
        tracing::warn!(error = %e, "no database connection for a request");
        Problem::unavailable("the database cannot be reached")
    })
}

/// The run a path names (id, unique prefix, `last`), as the CLI resolves
/// it.
///
/// # Errors
/// 400 for text that names no run, 404 for no such run, 409 for an
/// ambiguous prefix (listing candidates).
pub async fn resolve(state: &AppState, run: &str) -> Result<WorkflowExecutionId, Problem> {
    let run: RunRef = run
        .parse()
        .map_err(|e: weft_common::run_ref::BadRunRef| Problem::bad_request(e.to_string()))?;
    let mut conn = acquire(state).await?;
    let resolved = weft_store::runs::resolve(&mut conn, &run).await?;
    let problem = resolved.problem(&run).unwrap_or_default();
    match resolved {
        Resolved::Found(id) => Ok(id),
        Resolved::NotFound => Err(Problem::not_found(problem)),
        Resolved::Ambiguous { .. } => Err(Problem::conflict(problem)),
    }
}
