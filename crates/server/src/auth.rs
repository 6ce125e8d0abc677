//! Who is calling: every request but `/healthz` presents a bearer token,
//! checked against the stored digests; each route says the least role it
//! needs. In `--dev` mode (loopback only) every request acts as admin.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use weft_common::auth::Role;

use crate::AppState;
use crate::problem::Problem;

/// The caller of a request, authenticated.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name (`dev` in `--dev` mode).
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Caller {
    /// `Ok` if the caller may do what `needed` may; 403 otherwise.
    ///
    /// # Errors
    /// [`Problem::forbidden`].
    pub fn require(&self, needed: Role) -> Result<(), Problem> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(Problem::forbidden(needed))
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        if state.dev {
            return Ok(Self {
                name: "dev".to_owned(),
                role: Role::Admin,
            });
        }
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(Problem::unauthorized)?;
        let mut conn = state.pool.acquire().await.map_err(|e| {
            tracing::warn!(error = %e, "no database connection to authenticate a request");
            Problem::unavailable("the database cannot be reached")
        })?;
        let info = weft_store::tokens::authenticate(&mut conn, token)
            .await?
            .ok_or_else(Problem::unauthorized)?;
        Ok(Self {
            name: info.name,
            role: info.role,
        })
    }
}
