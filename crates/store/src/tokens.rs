//! `api_tokens`: the bearer tokens of `weft server` (see
//! [`weft_common::auth`]). Only a token's digest is stored; a request is
//! authenticated by looking its digest up.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::auth::{Role, token_digest};

use crate::error::{Context, StoreError};

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    /// Its id (what `weft token revoke` takes).
    pub id: Uuid,
    /// Who or what holds it.
    pub name: String,
    /// What it may do.
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working (`None`: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, name, role, created_at, expires_at, revoked_at, last_used_at";

/// Stores a new token for `secret` (see
/// [`weft_common::auth::generate_token`]).
///
/// # Errors
/// A database error.
pub async fn create(
    conn: &mut PgConnection,
    secret: &str,
    name: &str,
    role: Role,
    expires_at: Option<DateTime<Utc>>,
) -> Result<TokenInfo, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_tokens (id, name, role, digest, expires_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(role.as_str())
    .bind(token_digest(secret))
    .bind(expires_at)
    .fetch_one(conn)
    .await
    .context("creating a token")
}

/// The token a request presents, if it is known, not revoked and not
/// expired; its `last_used_at` is brought up to date (at most once a
/// minute, so a busy client costs no write per request).
///
/// # Errors
/// A database error.
pub async fn authenticate(
    conn: &mut PgConnection,
    secret: &str,
) -> Result<Option<TokenInfo>, StoreError> {
    let token: Option<TokenInfo> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_tokens \
         WHERE digest = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
    )))
    .bind(token_digest(secret))
    .fetch_optional(&mut *conn)
    .await
    .context("authenticating a token")?;
    if let Some(t) = &token
        && t.last_used_at
            .is_none_or(|at| Utc::now() - at > chrono::Duration::minutes(1))
    {
        sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
            .bind(t.id)
            .execute(conn)
            .await
            .context("recording a token's use")?;
    }
    Ok(token)
}

/// Every token, newest first.
///
/// # Errors
/// A database error.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<TokenInfo>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_tokens ORDER BY created_at DESC, id DESC"
    )))
    .fetch_all(conn)
    .await
    .context("listing tokens")
}

/// Revokes a token: `Some` with it (revoked now, or earlier), `None` if
/// there is no token with that id.
///
/// # Errors
/// A database error.
pub async fn revoke(conn: &mut PgConnection, id: Uuid) -> Result<Option<TokenInfo>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 \
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
    .context("revoking a token")
}
