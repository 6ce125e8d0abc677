//! Workflows checked and drawn without running them: what the web UI's
//! editor shows while someone types.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use weft_common::auth::Role;
use weft_common::graph::Graph;

use super::Body;
use super::runs::parse_workflow;
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Diagnostic, Problem};

/// A workflow's YAML text.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowText {
    /// The workflow's YAML text.
    pub workflow: String,
}

/// What `POST /api/v1/workflows/validate` answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Validation {
    /// Whether the workflow is valid (it may still have warnings).
    pub valid: bool,
    /// Its name, when it parsed.
    pub workflow: Option<String>,
    /// Each problem, at its line and column.
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks a workflow as `weft validate` does: `valid: false` with each
/// problem at its line and column (an invalid workflow is an answer here,
/// not an error).
#[utoipa::path(
    post,
    path = "/api/v1/workflows/validate",
    tag = "workflows",
    request_body = WorkflowText,
    responses(
        (status = 200, description = "The verdict and every problem", body = Validation)
    )
)]
pub async fn validate(
    State(_state): State<AppState>,
    caller: Caller,
    Body(request): Body<WorkflowText>,
) -> ApiResult<Json<Validation>> {
    caller.require(Role::Viewer)?;
    Ok(Json(match parse_workflow(&request.workflow) {
        Ok(bundle) => Validation {
            valid: true,
            workflow: Some(bundle.root().workflow.name().to_owned()),
            diagnostics: Vec::new(),
        },
        Err(problem) => Validation {
            valid: false,
            workflow: None,
            diagnostics: problem.diagnostics,
        },
    }))
}

/// The DAG of a workflow given as YAML text: its tasks and needs.
#[utoipa::path(
    post,
    path = "/api/v1/workflows/graph",
    tag = "workflows",
    request_body = WorkflowText,
    responses(
        (status = 200, description = "The workflow's tasks and needs", body = Graph),
        (status = 422, description = "The workflow is not valid", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn graph(
    State(_state): State<AppState>,
    caller: Caller,
    Body(request): Body<WorkflowText>,
) -> ApiResult<Json<Graph>> {
    caller.require(Role::Viewer)?;
    let bundle = parse_workflow(&request.workflow)?;
    Ok(Json(Graph::of(&bundle.root().workflow)))
}
