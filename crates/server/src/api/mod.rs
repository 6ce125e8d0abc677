//! The routes under `/api/v1` and the OpenAPI document that describes
//! them, generated from the handlers' annotations.

pub mod runs;

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::problem::Problem;
use crate::{AppState, ServerConfig};

/// The API's description; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Weft API",
        description = "Submit, follow, cancel and retry Weft workflow runs. Every endpoint but `/healthz` needs `Authorization: Bearer <token>` (see `weft token create`); errors are `application/problem+json` (RFC 9457).",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(Problem)),
    tags(
        (name = "runs", description = "Workflow runs"),
        (name = "meta", description = "The API itself")
    )
)]
struct ApiDoc;

/// Declares the bearer scheme every operation uses.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("weft_…")
                    .build(),
            ),
        );
    }
}

/// The API's routes and its OpenAPI document.
pub fn routes(_config: &ServerConfig) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(runs::list, runs::submit))
        .routes(routes!(runs::get))
        .routes(routes!(me))
        .split_for_parts();
    let document = openapi.clone();
    let router = router.route(
        "/api/v1/openapi.json",
        get(move || {
            let document = document.clone();
            async move { Json(document) }
        }),
    );
    (router, openapi)
}

/// Who the token is, and what it may do.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: weft_common::auth::Role,
}

/// The caller's token: its name and role (the web UI asks it on log-in).
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "meta",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        name: caller.name,
        role: caller.role,
    })
}

/// A JSON request body whose rejections are problems: 400 for JSON that
/// does not parse or has the wrong shape (saying where), 413 past the
/// body limit, 415 for another media type.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Problem::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as JSON, with `Content-Type: application/json`",
            )),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(Problem::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                    "the request body is larger than the server accepts (`weft server --max-body`)",
                ))
            }
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}
