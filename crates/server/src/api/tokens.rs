//! `/api/v1/tokens`: create, list and revoke API tokens (admin). A token's
//! secret is shown once, when it is created; only its digest is stored.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use weft_common::auth::Role;
use weft_store::tokens::TokenInfo;

use super::Body;
use super::runs::acquire;
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};

/// The longest token name.
const MAX_NAME: usize = 200;

/// Every token (revoked and expired ones too), newest first; never their
/// secrets.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "The tokens", body = Vec<TokenInfo>),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    caller.require(Role::Admin)?;
    let mut conn = acquire(&state).await?;
    Ok(Json(weft_store::tokens::list(&mut conn).await?))
}

/// What `POST /api/v1/tokens` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name to know it by (who or what uses it).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it stops working (RFC 3339); never, if left out.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token just created: its secret, shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The secret to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// The token's record.
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// Creates a token; the answer holds its secret, which is never shown
/// again.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = NewToken,
    responses(
        (status = 201, description = "The token, with its secret", body = CreatedToken),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad name or expiry", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    caller.require(Role::Admin)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-token",
            "Invalid token request",
            format!("`name` must be 1 to {MAX_NAME} printable characters"),
        ));
    }
    if let Some(at) = request.expires_at
        && at <= Utc::now()
    {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-token",
            "Invalid token request",
            format!("`expires_at` ({at}) is in the past"),
        ));
    }
    let secret = weft_common::auth::generate_token();
    let mut conn = acquire(&state).await?;
    let info =
        weft_store::tokens::create(&mut conn, &secret, name, request.role, request.expires_at)
            .await?;
    tracing::info!(token = %info.id, name = info.name, role = %info.role, by = caller.name, "token created over the API");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: secret,
            info,
        }),
    ))
}

/// Revokes a token: it stops working at once. Revoking a revoked token
/// answers it as it is.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = Uuid, Path, description = "The token's id (not its secret)")),
    responses(
        (status = 200, description = "The token, revoked", body = TokenInfo),
        (status = 400, description = "Not a token id", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such token", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenInfo>> {
    caller.require(Role::Admin)?;
    let id = Uuid::try_parse(id.trim())
        .map_err(|_| Problem::bad_request(format!("`{id}` is not a token id (a UUID)")))?;
    let mut conn = acquire(&state).await?;
    let info = weft_store::tokens::revoke(&mut conn, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no token with id {id}")))?;
    tracing::info!(token = %info.id, by = caller.name, "token revoked over the API");
    Ok(Json(info))
}
