//! The routes under `/api/v1` and the OpenAPI document that describes
//! them, generated from the handlers' annotations.

pub mod actions;
pub mod detail;
pub mod runs;
pub mod schedules;
pub mod streams;
pub mod tokens;
pub mod workers;
pub mod workflows;

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
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
        (name = "workflows", description = "Workflow definitions, checked and drawn without running them"),
        (name = "workers", description = "The workers heard from lately"),
        (name = "events", description = "Server-sent event streams of runs"),
        (name = "tokens", description = "API tokens (admin)"),
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

/// The API's routes and its OpenAPI document. Every route but the event
/// streams is bounded by `config.request_timeout` (408 past it); the
/// streams last as long as their client wants.
pub fn routes(config: &ServerConfig) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (timed, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(runs::list, runs::submit))
        .routes(routes!(runs::get))
        .routes(routes!(detail::attempts))
        .routes(routes!(detail::logs))
        .routes(routes!(detail::explain))
        .routes(routes!(detail::graph))
        .routes(routes!(actions::cancel))
        .routes(routes!(actions::retry))
        .routes(routes!(actions::signal))
        .routes(routes!(workflows::validate))
        .routes(routes!(workflows::graph))
        .routes(routes!(workers::list))
        .routes(routes!(schedules::workflows))
        .routes(routes!(schedules::list))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(me))
        .split_for_parts();
    add_problems(&mut openapi, true);
    let (streams, mut streams_doc) = OpenApiRouter::new()
        .routes(routes!(streams::run_events))
        .routes(routes!(streams::all_events))
        .split_for_parts();
    add_problems(&mut streams_doc, false);
    openapi.merge(streams_doc);
    let document = openapi.clone();
    let timed = timed
        .route(
            "/api/v1/openapi.json",
            get(move |caller: Caller| {
                let document = document.clone();
                async move {
                    caller.require(weft_common::auth::Role::Viewer)?;
                    Ok::<_, Problem>(Json(document))
                }
            }),
        )
        .layer(middleware::from_fn_with_state(
            config.request_timeout,
            time_bound,
        ));
    (timed.merge(streams), openapi)
}

/// The run a route is about, named in its path.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunPath {
    /// The run: its id, a unique prefix (8+ hex digits), or `last`.
    pub run: String,
}

/// A problem documented on every operation that may answer it, rather
/// than on each handler.
struct Common {
    status: &'static str,
    description: &'static str,
    /// Whether an operation on this path may answer it.
    on: fn(&str, &Operation) -> bool,
}

/// Any operation.
fn any(_: &str, _: &Operation) -> bool {
    true
}

/// An operation on a run named in its path (`{run}`: an id, a prefix or
/// `last`).
fn on_a_run(path: &str, _: &Operation) -> bool {
    path.contains("{run}")
}

/// An operation that reads a JSON body.
fn with_a_body(_: &str, operation: &Operation) -> bool {
    operation.request_body.is_some()
}

/// The problems any request may get (408 only on the timed routes).
const COMMON: &[Common] = &[
    Common {
        status: "401",
        description: "No valid token",
        on: any,
    },
    Common {
        status: "408",
        description: "The request took longer than the server allows",
        on: any,
    },
    Common {
        status: "500",
        description: "A failure the client cannot fix (logged in full)",
        on: any,
    },
    Common {
        status: "503",
        description: "The database cannot be reached",
        on: any,
    },
    Common {
        status: "400",
        description: "Not a run reference",
        on: on_a_run,
    },
    Common {
        status: "404",
        description: "No such run",
        on: on_a_run,
    },
    Common {
        status: "409",
        description: "A prefix several runs start with",
        on: on_a_run,
    },
    Common {
        status: "400",
        description: "The body is not the JSON expected",
        on: with_a_body,
    },
    Common {
        status: "413",
        description: "The body is too large",
        on: with_a_body,
    },
    Common {
        status: "415",
        description: "The body is not JSON",
        on: with_a_body,
    },
];

/// Adds to every operation of `doc` the [`COMMON`] problems it may
/// answer (408 only if `timed`), unless its handler documents that status
/// itself (more precisely).
fn add_problems(doc: &mut utoipa::openapi::OpenApi, timed: bool) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    for (path, item) in &mut doc.paths.paths {
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let problems: Vec<&Common> = COMMON
                .iter()
                .filter(|p| (p.on)(path, operation) && (timed || p.status != "408"))
                .collect();
            for problem in problems {
                operation
                    .responses
                    .responses
                    .entry(problem.status.to_owned())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(problem.description)
                                .content(
                                    crate::problem::PROBLEM_JSON,
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("Problem")))
                                        .build(),
                                )
                                .build(),
                        )
                    });
            }
        }
    }
}

/// Answers 408 (a problem) for a request not answered within the limit.
async fn time_bound(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "Request timeout",
            format!(
                "the request was not answered within {} s (`weft server --request-timeout`)",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
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
        (status = 200, description = "The caller", body = Me)
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
                Err(too_large())
            }
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}

/// A query string whose rejections are problems: 400 saying which
/// parameter is wrong (an unknown one included: the query types deny
/// unknown fields).
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_from_str(query).map(Self)
    }
}

/// Parses a query string, saying what is wrong with it.
fn serde_urlencoded_from_str<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, Problem> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| Problem::bad_request("the query string is not valid"))?,
    )
    .map(|q| q.0)
    .map_err(|e| {
        Problem::bad_request(format!(
            "bad query parameter: {}",
            std::error::Error::source(&e).map_or_else(|| e.body_text(), ToString::to_string)
        ))
    })
}

/// A JSON request body that may be left out (then `T::default()`).
#[derive(Debug)]
pub struct OptionalBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for OptionalBody<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    Problem::bad_request(e.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| Problem::bad_request(format!("the body is not the JSON expected: {e}")))
    }
}

/// 413 for a body past the limit.
fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        "Payload too large",
        "the request body is larger than the server accepts (`weft server --max-body`)",
    )
}

/// The answer to a path no route has: 404, as a problem.
pub async fn not_found() -> Problem {
    Problem::not_found("no such endpoint: the API is described at /api/v1/openapi.json")
}

/// The answer to a method a route does not take: 405, as a problem.
pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this endpoint does not take that method: see /api/v1/openapi.json",
    )
}
