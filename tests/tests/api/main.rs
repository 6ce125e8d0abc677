//! The HTTP API against a real stack: every endpoint behind its token and
//! role, errors as problem+json, submit → success, cancel, retry,
//! validation with line and column, pages without gaps or duplicates, the
//! event streams seeing a run's end, and the bounds (body size, query
//! validation, time).
//!
//! The server runs in process (`weft_server::serve` on port 0); the
//! executor and workers in the stack.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use weft_common::auth::Role;
use weft_tests::server::{TestServer, token, token_expiring};
use weft_tests::{Stack, StackOptions};

mod actions;
mod auth;
mod bounds;
mod runs;
mod streams;

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        Stack::start(StackOptions {
            worker_concurrency: 8,
            ..StackOptions::default()
        })
        .expect("stack")
    })
}

/// Serializes the tests that count on which run is `last` or on the
/// newest runs.
static LISTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Api {
    server: TestServer,
    pool: PgPool,
    http: reqwest::Client,
}

impl Api {
    async fn start() -> Self {
        let pool = stack().pool().await.expect("pool");
        let server = TestServer::start(&pool).await.expect("server");
        Self::of(server, pool)
    }

    fn of(server: TestServer, pool: PgPool) -> Self {
        Self {
            server,
            pool,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    async fn token(&self, role: Role) -> String {
        token(&self.pool, role).await.expect("token")
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, String, Value) {
        let mut request = self.http.request(method, self.server.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, content_type, value)
    }

    /// Sends a request that must be refused with a problem+json of
    /// `status` whose `type` ends with `kind`; the answer.
    async fn refused(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        status: StatusCode,
        kind: &str,
    ) -> (StatusCode, String, Value) {
        let answer = self.send(method, path, token, body).await;
        assert_problem(&answer, status, kind);
        answer
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let (status, _, body) = self.send(Method::GET, path, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self.send(Method::POST, path, Some(token), Some(body)).await;
        (status, body)
    }

    /// Polls the run until terminal.
    async fn wait(&self, id: &str, token: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.get(&format!("/api/v1/runs/{id}"), token).await;
            let status = run["status"].as_str().unwrap_or_default();
            if ["succeeded", "failed", "canceled"].contains(&status) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} still {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn submit(&self, token: &str, yaml: &str, inputs: Value) -> String {
        let (status, body) = self
            .post(
                "/api/v1/runs",
                token,
                json!({ "workflow": yaml, "inputs": inputs }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("an id").to_owned()
    }
}

/// Asserts a problem+json answer of `status` whose `type` ends with `kind`.
fn assert_problem(
    (status, content_type, body): &(StatusCode, String, Value),
    expected: StatusCode,
    kind: &str,
) {
    assert_eq!(*status, expected, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    let t = body["type"].as_str().unwrap_or_default();
    assert!(
        t.starts_with("https://") && t.ends_with(&format!("/{kind}")),
        "type {t} is not …/{kind}: {body}"
    );
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    assert!(
        !body["detail"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );
}

const FAN_OUT: &str = r#"
name: api-fan-out
input:
  n: { type: integer, default: 3 }
tasks:
  list:
    action: echo
    input: { items: [1, 2, 3, 4, 5] }
  each:
    needs: [list]
    with_items: "{{ tasks.list.result.items }}"
    action: shell
    input: { command: ["sh", "-c", "echo item {{ item }}"] }
  done:
    needs: [each]
    action: noop
"#;

/// Every endpoint, as (method, path, body).
fn endpoints(run: &str) -> Vec<(Method, String, Option<Value>)> {
    let yaml = json!({ "workflow": "name: x\ntasks:\n  a: { action: noop }\n" });
    vec![
        (Method::GET, "/api/v1/me".into(), None),
        (Method::GET, "/api/v1/runs".into(), None),
        (Method::POST, "/api/v1/runs".into(), Some(yaml.clone())),
        (Method::GET, format!("/api/v1/runs/{run}"), None),
        (Method::GET, format!("/api/v1/runs/{run}/attempts"), None),
        (Method::GET, format!("/api/v1/runs/{run}/logs"), None),
        (Method::GET, format!("/api/v1/runs/{run}/explain"), None),
        (Method::GET, format!("/api/v1/runs/{run}/graph"), None),
        (Method::GET, format!("/api/v1/runs/{run}/events"), None),
        (Method::POST, format!("/api/v1/runs/{run}/cancel"), None),
        (Method::POST, format!("/api/v1/runs/{run}/retry"), None),
        (
            Method::POST,
            format!("/api/v1/runs/{run}/tasks/gate/signal"),
            None,
        ),
        (
            Method::POST,
            "/api/v1/workflows/validate".into(),
            Some(yaml.clone()),
        ),
        (Method::POST, "/api/v1/workflows/graph".into(), Some(yaml)),
        (Method::GET, "/api/v1/workers".into(), None),
        (Method::GET, "/api/v1/workflows".into(), None),
        (Method::GET, "/api/v1/schedules".into(), None),
        (Method::GET, "/api/v1/events".into(), None),
        (Method::GET, "/api/v1/tokens".into(), None),
        (Method::GET, "/api/v1/openapi.json".into(), None),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({ "name": "x", "role": "viewer" })),
        ),
        (
            Method::DELETE,
            format!("/api/v1/tokens/{}", uuid::Uuid::now_v7()),
            None,
        ),
    ]
}
