//! Errors as `application/problem+json` (RFC 9457). Each kind of error has
//! a stable `type` URI, so a client can branch on it; `detail` says what is
//! wrong in words, and never hints at what exists to someone who may not
//! see it.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use weft_store::StoreError;

/// The media type of a problem.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the `type` URIs point: the API's documentation.
const TYPE_BASE: &str = "https://weft.dev/problems/";

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// The kind of error, stable across versions: `…/problems/not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, fixed summary of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What is wrong, for this request.
    pub detail: String,
    /// For an invalid workflow: each problem, at its line and column.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

/// One problem (or warning) with a workflow, where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Diagnostic {
    /// `error` or `warning`.
    pub severity: String,
    /// The file it is in (as the client named it).
    pub file: String,
    /// 1-based line; 0 when unknown.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// Every problem of `diagnostics`.
    #[must_use]
    pub fn all(diagnostics: &weft_common::Diagnostics) -> Vec<Self> {
        let severity = if diagnostics.is_warning() {
            "warning"
        } else {
            "error"
        };
        diagnostics
            .problems()
            .iter()
            .map(|p| Self {
                severity: severity.to_owned(),
                file: diagnostics.origin().to_owned(),
                line: p.line,
                column: p.column,
                message: p.message.clone(),
                hint: p.hint.clone(),
            })
            .collect()
    }
}

impl Problem {
    /// A problem of `kind` (the last segment of its `type`).
    #[must_use]
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{TYPE_BASE}{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            diagnostics: Vec::new(),
        }
    }

    /// 400: the request is malformed (a bad query, a body that is not the
    /// JSON expected).
    #[must_use]
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    /// 401: no token, or one that is not valid (unknown, revoked, expired
    /// — never which).
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "a valid bearer token is required: `Authorization: Bearer weft_…` (see `weft token create`)",
        )
    }

    /// 403: the token's role may not do this.
    #[must_use]
    pub fn forbidden(needed: weft_common::auth::Role) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!("this needs a token with the {needed} role or higher"),
        )
    }

    /// 404: nothing here (or nothing this caller may know of).
    #[must_use]
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 409: the request conflicts with the state (a run already finished).
    #[must_use]
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 422: a workflow or its inputs are not valid.
    #[must_use]
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "Invalid workflow or inputs",
            detail,
        )
    }

    /// 422 for a workflow that does not validate, with each problem.
    #[must_use]
    pub fn invalid_workflow(all: &[weft_common::Diagnostics]) -> Self {
        let diagnostics: Vec<Diagnostic> = all.iter().flat_map(Diagnostic::all).collect();
        let mut problem = Self::invalid(format!(
            "the workflow has {} problem{}",
            diagnostics.len(),
            if diagnostics.len() == 1 { "" } else { "s" }
        ));
        problem.diagnostics = diagnostics;
        problem
    }

    /// 413: the body is larger than the server accepts.
    #[must_use]
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!(
                "the request body is larger than the server's limit of {limit} bytes (`weft server --max-body`)"
            ),
        )
    }

    /// 503: the database cannot be reached.
    #[must_use]
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    /// 500: something failed that the client cannot fix; logged in full,
    /// shown in one line.
    #[must_use]
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Connect { .. } => Self::unavailable(e.to_string()),
            _ => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), "a request failed in the store");
                Self::internal(e.to_string())
            }
        }
    }
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, Problem>;
