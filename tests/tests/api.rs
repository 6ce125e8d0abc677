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

#[tokio::test]
async fn every_endpoint_refuses_a_missing_bad_revoked_or_expired_token_alike() {
    let api = Api::start().await;
    let (revoked, revoked_id) = token_expiring(&api.pool, Role::Admin, None)
        .await
        .expect("token");
    let mut conn = api.pool.acquire().await.expect("conn");
    weft_store::tokens::revoke(&mut conn, revoked_id)
        .await
        .expect("revoke");
    drop(conn);
    let (expired, _) = token_expiring(
        &api.pool,
        Role::Admin,
        Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
    )
    .await
    .expect("token");
    let run = uuid::Uuid::now_v7().to_string();
    let mut refused = Vec::new();
    for (method, path, body) in endpoints(&run) {
        for token in [
            None,
            Some("weft_0000"),
            Some("Basic abc"),
            Some(revoked.as_str()),
            Some(expired.as_str()),
        ] {
            let answer = api.send(method.clone(), &path, token, body.clone()).await;
            assert_problem(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
            // Never a hint of which: the same words for every case.
            refused.push(answer.2["detail"].clone());
        }
    }
    refused.dedup();
    assert_eq!(refused.len(), 1, "{refused:?}");
    // Health needs no token.
    let health = api
        .http
        .get(api.server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.expect("text"), "ok");
}

#[tokio::test]
async fn each_role_does_what_it_may_and_is_refused_the_rest() {
    let api = Api::start().await;
    let viewer = api.token(Role::Viewer).await;
    let operator = api.token(Role::Operator).await;
    let admin = api.token(Role::Admin).await;
    let me = api.get("/api/v1/me", &viewer).await;
    assert_eq!(me, json!({ "name": "test-viewer", "role": "viewer" }));
    let run = uuid::Uuid::now_v7().to_string();
    let yaml = json!({ "workflow": "name: x\ntasks:\n  a: { action: noop }\n" });
    // A viewer may not change runs.
    for (path, body) in [
        ("/api/v1/runs".to_owned(), Some(yaml.clone())),
        (format!("/api/v1/runs/{run}/cancel"), None),
        (format!("/api/v1/runs/{run}/retry"), None),
    ] {
        let answer = api.send(Method::POST, &path, Some(&viewer), body).await;
        assert_problem(&answer, StatusCode::FORBIDDEN, "forbidden");
        assert!(
            answer.2["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("operator"),
            "{}",
            answer.2
        );
    }
    // Neither viewer nor operator may manage tokens.
    for token in [&viewer, &operator] {
        for (method, path, body) in [
            (Method::GET, "/api/v1/tokens".to_owned(), None),
            (
                Method::POST,
                "/api/v1/tokens".to_owned(),
                Some(json!({ "name": "x", "role": "admin" })),
            ),
            (
                Method::DELETE,
                format!("/api/v1/tokens/{}", uuid::Uuid::now_v7()),
                None,
            ),
        ] {
            let answer = api.send(method, &path, Some(token), body).await;
            assert_problem(&answer, StatusCode::FORBIDDEN, "forbidden");
        }
    }
    // A viewer reads; an operator submits; an admin does both and manages tokens.
    api.get("/api/v1/runs", &viewer).await;
    api.get("/api/v1/workers", &viewer).await;
    let registered = api.get("/api/v1/workflows", &viewer).await;
    assert_eq!(registered, json!([]));
    let schedules = api.get("/api/v1/schedules", &viewer).await;
    assert_eq!(schedules, json!([]));
    let (status, _) = api
        .post("/api/v1/workflows/validate", &viewer, yaml.clone())
        .await;
    assert_eq!(status, StatusCode::OK);
    api.submit(
        &operator,
        "name: x\ntasks:\n  a: { action: noop }\n",
        json!({}),
    )
    .await;
    api.submit(
        &admin,
        "name: x\ntasks:\n  a: { action: noop }\n",
        json!({}),
    )
    .await;
    api.get("/api/v1/tokens", &admin).await;
}

#[tokio::test]
async fn tokens_are_created_once_listed_without_secrets_and_revoked_at_once() {
    let api = Api::start().await;
    let admin = api.token(Role::Admin).await;
    let (status, created) = api
        .post(
            "/api/v1/tokens",
            &admin,
            json!({ "name": "ci", "role": "operator" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["token"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("weft_"), "{secret}");
    assert_eq!(created["role"], "operator");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        api.get("/api/v1/me", &secret).await,
        json!({ "name": "ci", "role": "operator" })
    );
    let list = api.get("/api/v1/tokens", &admin).await;
    let listed = list
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["id"] == id.as_str())
        .expect("the new token is listed")
        .clone();
    assert!(listed.get("token").is_none(), "a secret listed: {listed}");
    assert!(!list.to_string().contains(&secret), "a secret listed");
    let (status, _, revoked) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let answer = api
        .send(Method::GET, "/api/v1/me", Some(&secret), None)
        .await;
    assert_problem(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    // Unknown id: 404; not an id: 400; bad role or empty name: a problem.
    let answer = api
        .send(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", uuid::Uuid::now_v7()),
            Some(&admin),
            None,
        )
        .await;
    assert_problem(&answer, StatusCode::NOT_FOUND, "not-found");
    let answer = api
        .send(Method::DELETE, "/api/v1/tokens/nope", Some(&admin), None)
        .await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, "bad-request");
    let answer = api
        .send(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({ "name": "x", "role": "root" })),
        )
        .await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, "bad-request");
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("root")
    );
    let answer = api
        .send(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({ "name": " ", "role": "viewer" })),
        )
        .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid-token");
}

#[tokio::test]
async fn a_submitted_run_succeeds_and_every_view_of_it_agrees() {
    let api = Api::start().await;
    let operator = api.token(Role::Operator).await;
    let id = api.submit(&operator, FAN_OUT, json!({ "n": 4 })).await;
    let run = api.wait(&id, &operator).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["input"], json!({ "n": 4 }));
    let names: Vec<&str> = run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["list", "each", "done"]);
    assert_eq!(run["tasks"][1]["items_total"], 5);
    assert_eq!(run["tasks"][1]["items_succeeded"], 5);
    // A prefix names it too.
    let by_prefix = api
        .get(&format!("/api/v1/runs/{}", &id[..13]), &operator)
        .await;
    assert_eq!(by_prefix["id"], id.as_str());

    // Attempts, a page at a time, in order, without gaps or duplicates.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = api
            .get(
                &format!("/api/v1/runs/{id}/attempts?task=each&limit=2&offset={offset}"),
                &operator,
            )
            .await;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|a| a["item_index"].as_i64().expect("item")),
        );
        match page["next_offset"].as_i64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    let all = api
        .get(&format!("/api/v1/runs/{id}/attempts"), &operator)
        .await;
    assert_eq!(all["items"].as_array().expect("items").len(), 7);
    assert!(all["next_offset"].is_null());
    let answer = api
        .send(
            Method::GET,
            &format!("/api/v1/runs/{id}/attempts?task=nope"),
            Some(&operator),
            None,
        )
        .await;
    assert_problem(&answer, StatusCode::NOT_FOUND, "not-found");
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("its tasks: done, each, list"),
        "{}",
        answer.2
    );

    // Logs: what each item printed.
    let logs = api
        .get(
            &format!("/api/v1/runs/{id}/logs?task=each&item=3"),
            &operator,
        )
        .await;
    let logs = logs.as_array().expect("array");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["logs"]["stdout"]["text"], "item 4\n");
    assert_eq!(logs[0]["status"], "succeeded");
    // Logs page too, in the same order as the attempts.
    let mut paged = Vec::new();
    for offset in [0, 3, 6] {
        let page = api
            .get(
                &format!("/api/v1/runs/{id}/logs?limit=3&offset={offset}"),
                &operator,
            )
            .await;
        paged.extend(
            page.as_array()
                .expect("array")
                .iter()
                .map(|l| l["execution_id"].clone()),
        );
    }
    let order: Vec<Value> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["execution_id"].clone())
        .collect();
    assert_eq!(paged, order);

    // Explain: facts, sentences, children.
    let explain = api
        .get(&format!("/api/v1/runs/{id}/explain"), &operator)
        .await;
    assert_eq!(explain["facts"]["id"], id.as_str());
    assert_eq!(
        explain["explanation"]["tasks"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(explain["explanation"]["run"].is_string());
    assert_eq!(explain["children"], json!([]));

    // The graph of the stored definition equals the graph of the text.
    let graph = api
        .get(&format!("/api/v1/runs/{id}/graph"), &operator)
        .await;
    let (status, text_graph) = api
        .post(
            "/api/v1/workflows/graph",
            &operator,
            json!({ "workflow": FAN_OUT }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(graph, text_graph);
    assert_eq!(
        graph["edges"],
        json!([{ "from": "list", "to": "each" }, { "from": "each", "to": "done" }])
    );
    assert_eq!(graph["nodes"][1]["with_items"], true);

    // The idempotency key returns the first run: 200, created false.
    let body = json!({ "workflow": FAN_OUT, "idempotency_key": format!("k-{id}") });
    let (first, a) = api.post("/api/v1/runs", &operator, body.clone()).await;
    let (second, b) = api.post("/api/v1/runs", &operator, body).await;
    assert_eq!((first, second), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a["id"], b["id"]);
    assert_eq!(
        (a["created"].clone(), b["created"].clone()),
        (json!(true), json!(false))
    );
    api.wait(a["id"].as_str().expect("id"), &operator).await;
}

#[tokio::test]
async fn an_invalid_workflow_gets_its_problems_at_their_lines() {
    let api = Api::start().await;
    let operator = api.token(Role::Operator).await;
    let yaml = "name: bad\ntasks:\n  a:\n    action: noop\n    needs: [missing]\n";
    let (status, verdict) = api
        .post(
            "/api/v1/workflows/validate",
            &operator,
            json!({ "workflow": yaml }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["valid"], false, "{verdict}");
    let d = &verdict["diagnostics"][0];
    assert_eq!(d["severity"], "error", "{verdict}");
    assert_eq!(d["line"], 5, "{verdict}");
    assert!(d["column"].as_u64().unwrap_or(0) > 0, "{verdict}");
    assert!(
        d["message"]
            .as_str()
            .unwrap_or_default()
            .contains("missing"),
        "{verdict}"
    );
    let (status, ok) = api
        .post(
            "/api/v1/workflows/validate",
            &operator,
            json!({ "workflow": FAN_OUT }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ok,
        json!({ "valid": true, "workflow": "api-fan-out", "diagnostics": [] })
    );
    // Submitting it: 422 with the same diagnostics.
    let answer = api
        .send(
            Method::POST,
            "/api/v1/runs",
            Some(&operator),
            Some(json!({ "workflow": yaml })),
        )
        .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(answer.2["diagnostics"], verdict["diagnostics"]);
    // Bad inputs: 422 naming the input.
    let answer = api
        .send(
            Method::POST,
            "/api/v1/runs",
            Some(&operator),
            Some(json!({ "workflow": FAN_OUT, "inputs": { "n": "three" } })),
        )
        .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap_or_default()
            .contains('n')
    );
    // A body of the wrong shape: 400 saying what.
    let answer = api
        .send(
            Method::POST,
            "/api/v1/runs",
            Some(&operator),
            Some(json!({ "workflow": FAN_OUT, "extra": 1 })),
        )
        .await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, "bad-request");
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("extra")
    );
}

/// Server-sent events as (event, data) pairs.
type Events = Vec<(String, Value)>;

/// Reads a server-sent event stream until an `end` event (or `limit`);
/// returns the (event, data) pairs.
async fn read_events(response: reqwest::Response, limit: Duration) -> Vec<(String, Value)> {
    let mut response = response;
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no `end` within {limit:?}; got {events:?}"))
            .expect("stream");
        let Some(chunk) = chunk else {
            return events;
        };
        buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some(at) = buffer.find("\n\n") {
            let block: String = buffer.drain(..at + 2).collect();
            let mut kind = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if kind.is_empty() {
                continue; // a keep-alive comment
            }
            let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            let end = kind == "end";
            events.push((kind, value));
            if end {
                return events;
            }
        }
    }
}

async fn open_stream(api: &Api, path: &str, token: &str) -> reqwest::Response {
    let response = api
        .http
        .get(api.server.url(path))
        .bearer_auth(token)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    response
}

#[tokio::test]
async fn a_run_s_event_stream_follows_it_to_its_end_and_many_clients_share_it() {
    let api = Api::start().await;
    let operator = api.token(Role::Operator).await;
    let yaml = "name: api-slow\ntasks:\n  a: { action: sleep, input: { seconds: 3 } }\n  b: { needs: [a], action: noop }\n";
    let id = api.submit(&operator, yaml, json!({})).await;
    // 200 clients: one feed reads the run for all of them.
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(open_stream(&api, &format!("/api/v1/runs/{id}/events"), &operator).await);
    }
    let all: Vec<(Events, chrono::DateTime<chrono::Utc>)> =
        futures_util::future::join_all(clients.into_iter().map(|c| async {
            let events = read_events(c, Duration::from_secs(60)).await;
            (events, chrono::Utc::now())
        }))
        .await;
    let run = api.get(&format!("/api/v1/runs/{id}"), &operator).await;
    let finished: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(run["finished_at"].clone()).expect("finished_at");
    let slowest = all
        .iter()
        .map(|(_, at)| *at - finished)
        .max()
        .expect("clients");
    eprintln!("the slowest of 200 clients saw the end {slowest} after the run's");
    // The issue's bar is 1 s (a benchmark's); a loaded test machine gets slack.
    assert!(slowest < chrono::Duration::seconds(5), "{slowest}");
    for (events, _) in &all {
        let (last, end) = events.last().expect("events");
        assert_eq!(last, "end", "{events:?}");
        assert_eq!(end, &json!({ "id": id, "status": "succeeded" }));
        let statuses: Vec<&(String, Value)> =
            events.iter().filter(|(k, _)| k == "status").collect();
        assert!(!statuses.is_empty(), "{events:?}");
        // The last status is the whole run, terminal; none repeats the one before it.
        let final_status = &statuses.last().expect("a status").1;
        assert_eq!(final_status["status"], "succeeded");
        assert_eq!(final_status["tasks"][1]["status"], "succeeded");
        for pair in statuses.windows(2) {
            assert_ne!(pair[0].1, pair[1].1, "a status sent twice");
        }
    }
    // A client that comes after the end gets the final status and `end` at once.
    let late = open_stream(&api, &format!("/api/v1/runs/{id}/events"), &operator).await;
    let events = read_events(late, Duration::from_secs(5)).await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["status", "end"]);
    // No such run: 404 before any stream.
    let answer = api
        .send(
            Method::GET,
            &format!("/api/v1/runs/{}/events", uuid::Uuid::now_v7()),
            Some(&operator),
            None,
        )
        .await;
    assert_problem(&answer, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn the_runs_event_stream_announces_a_run_and_its_end() {
    let api = Api::start().await;
    let operator = api.token(Role::Operator).await;
    let mut stream = open_stream(&api, "/api/v1/events", &operator).await;
    let id = api
        .submit(
            &operator,
            "name: api-listed\ntasks:\n  a: { action: noop }\n",
            json!({}),
        )
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut buffer = String::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("the run's end announced within 30 s")
            .expect("stream")
            .expect("open");
        buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        let done = buffer.split("\n\n").any(|block| {
            block.contains("event: run")
                && block.contains(&id)
                && block.contains("\"status\":\"succeeded\"")
        });
        if done {
            break;
        }
    }
}

#[tokio::test]
async fn cancel_stops_a_run_and_says_what_it_did() {
    let api = Api::start().await;
    let operator = api.token(Role::Operator).await;
    let yaml = "name: api-long\ntasks:\n  a: { action: sleep, input: { seconds: 60 } }\n";
    let id = api.submit(&operator, yaml, json!({})).await;
    let stream = open_stream(&api, &format!("/api/v1/runs/{id}/events"), &operator).await;
    // Wait until it runs, so the cancel has something to stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = api.get(&format!("/api/v1/runs/{id}"), &operator).await;
        if run["tasks"][0]["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "never ran: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, canceled) = api
        .post(&format!("/api/v1/runs/{id}/cancel"), &operator, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["id"], id.as_str());
    assert!(
        ["canceling", "canceled"].contains(&canceled["outcome"].as_str().unwrap_or_default()),
        "{canceled}"
    );
    assert!(
        canceled["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&id),
        "{canceled}"
    );
    let events = read_events(stream, Duration::from_secs(30)).await;
    assert_eq!(
        events.last().map(|(k, v)| (k.as_str(), v.clone())),
        Some(("end", json!({ "id": id, "status": "canceled" })))
    );
    let run = api.wait(&id, &operator).await;
    assert_eq!(run["status"], "canceled");
    let (status, again) = api
        .post(&format!("/api/v1/runs/{id}/cancel"), &operator, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["outcome"], "already_finished", "{again}");
    let answer = api
        .send(
            Method::POST,
            &format!("/api/v1/runs/{}/cancel", uuid::Uuid::now_v7()),
            Some(&operator),
            None,
        )
        .await;
    assert_problem(&answer, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn retry_runs_a_failed_run_again_and_refuses_what_it_cannot() {
    let api = Api::start().await;
    let operator = api.token(Role::Operator).await;
    let yaml = "name: api-fails\ntasks:\n  a: { action: noop }\n  b: { needs: [a], action: fail, input: { message: boom } }\n";
    let id = api.submit(&operator, yaml, json!({})).await;
    let run = api.wait(&id, &operator).await;
    assert_eq!(run["status"], "failed");
    // Unknown task: 422 naming the run's tasks.
    let answer = api
        .send(
            Method::POST,
            &format!("/api/v1/runs/{id}/retry"),
            Some(&operator),
            Some(json!({ "task": "nope" })),
        )
        .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("a, b"),
        "{}",
        answer.2
    );
    // No body: the tasks that did not succeed.
    let (status, retried) = api
        .send(
            Method::POST,
            &format!("/api/v1/runs/{id}/retry"),
            Some(&operator),
            None,
        )
        .await
        .into_status_and_body();
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["round"], 2);
    assert_eq!(retried["tasks"], json!(["b"]));
    // While it runs again, another retry is a conflict.
    let again = api
        .send(
            Method::POST,
            &format!("/api/v1/runs/{id}/retry"),
            Some(&operator),
            Some(json!({ "task": "a" })),
        )
        .await;
    if again.0 != StatusCode::OK {
        assert_problem(&again, StatusCode::CONFLICT, "conflict");
    }
    let run = api.wait(&id, &operator).await;
    assert_eq!(run["status"], "failed");
    // By task: that task and everything downstream.
    let (status, retried) = api
        .post(
            &format!("/api/v1/runs/{id}/retry"),
            &operator,
            json!({ "task": "a" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["tasks"], json!(["a", "b"]));
    api.wait(&id, &operator).await;
}

trait IntoStatusAndBody {
    fn into_status_and_body(self) -> (StatusCode, Value);
}

impl IntoStatusAndBody for (StatusCode, String, Value) {
    fn into_status_and_body(self) -> (StatusCode, Value) {
        (self.0, self.2)
    }
}

#[tokio::test]
async fn the_runs_list_pages_without_gaps_or_duplicates() {
    let _listing = LISTING.lock().await;
    let api = Api::start().await;
    let operator = api.token(Role::Operator).await;
    let name = format!(
        "api-paged-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let yaml = format!("name: {name}\ntasks:\n  a: {{ action: noop }}\n");
    let mut submitted = Vec::new();
    for _ in 0..23 {
        submitted.push(api.submit(&operator, &yaml, json!({})).await);
    }
    let mut listed: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/v1/runs?workflow={name}&limit=5");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get(&path, &operator).await;
        pages += 1;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 5);
        for item in items {
            assert_eq!(item["workflow"], name.as_str());
            listed.push(item["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        // Runs submitted while paging do not shift what the pages show.
        if pages == 2 {
            api.submit(&operator, &yaml, json!({})).await;
        }
    }
    assert_eq!(pages, 5);
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "a run listed twice");
    submitted.reverse();
    assert_eq!(listed, submitted, "not every run, newest first");
    // Filters: status, top.
    let failed = api
        .get(
            &format!("/api/v1/runs?workflow={name}&status=failed"),
            &operator,
        )
        .await;
    assert_eq!(failed["items"], json!([]));
    let top = api
        .get(
            &format!("/api/v1/runs?workflow={name}&top=true&limit=1000"),
            &operator,
        )
        .await;
    assert_eq!(top["items"].as_array().map(Vec::len), Some(24));
}

#[tokio::test]
async fn bad_queries_get_400s_that_say_what_is_wrong() {
    let api = Api::start().await;
    let viewer = api.token(Role::Viewer).await;
    let run = uuid::Uuid::now_v7();
    for (path, says) in [
        ("/api/v1/runs?status=bogus".to_owned(), "bogus"),
        ("/api/v1/runs?limit=0".to_owned(), "limit"),
        ("/api/v1/runs?limit=5000".to_owned(), "limit"),
        ("/api/v1/runs?limit=abc".to_owned(), "limit"),
        ("/api/v1/runs?cursor=xyz".to_owned(), "xyz"),
        ("/api/v1/runs?colour=red".to_owned(), "colour"),
        ("/api/v1/runs?parent=nope".to_owned(), "parent"),
        ("/api/v1/runs?top=yes".to_owned(), "top"),
        (format!("/api/v1/runs/{run}/attempts?limit=-1"), "limit"),
        (format!("/api/v1/runs/{run}/attempts?offset=x"), "offset"),
        (format!("/api/v1/runs/{run}/logs?item=x"), "item"),
        (format!("/api/v1/runs/{run}/logs?follow=1"), "follow"),
        (format!("/api/v1/runs/{run}/logs?limit=1001"), "limit"),
        ("/api/v1/workers?lost_within=-5".to_owned(), "lost_within"),
        ("/api/v1/runs/not-a-run".to_owned(), "not-a-run"),
    ] {
        let answer = api.send(Method::GET, &path, Some(&viewer), None).await;
        assert_problem(&answer, StatusCode::BAD_REQUEST, "bad-request");
        let detail = answer.2["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(says),
            "{path}: `{detail}` does not name {says}"
        );
    }
    // Unknown paths and methods are problems too.
    let answer = api
        .send(Method::GET, "/api/v1/nothing", Some(&viewer), None)
        .await;
    assert_problem(&answer, StatusCode::NOT_FOUND, "not-found");
    let answer = api
        .send(Method::PUT, "/api/v1/runs", Some(&viewer), None)
        .await;
    assert_problem(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    );
}

#[tokio::test]
async fn a_body_past_the_limit_is_413_and_a_slow_request_408_but_streams_last() {
    let pool = stack().pool().await.expect("pool");
    let server = TestServer::with(&pool, |c| {
        c.max_body = 2_048;
        c.request_timeout = Duration::from_millis(1);
    })
    .await
    .expect("server");
    let api = Api::of(server, pool);
    let operator = api.token(Role::Operator).await;
    let big = format!(
        "name: big\ntasks:\n  a: {{ action: echo, input: {{ pad: \"{}\" }} }}\n",
        "x".repeat(4_096)
    );
    let answer = api
        .send(
            Method::POST,
            "/api/v1/runs",
            Some(&operator),
            Some(json!({ "workflow": big })),
        )
        .await;
    // The body is read before the clock matters: 413, not 408.
    if answer.0 != StatusCode::REQUEST_TIMEOUT {
        assert_problem(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    }
    // Every request is bounded in time: 1 ms is too short for the reads
    // (authentication, then the page) — nearly always: a lucky one may
    // make it, but not all of them.
    let mut timed_out = 0;
    for _ in 0..10 {
        let answer = api
            .send(Method::GET, "/api/v1/runs", Some(&operator), None)
            .await;
        if answer.0 == StatusCode::OK {
            continue;
        }
        assert_problem(&answer, StatusCode::REQUEST_TIMEOUT, "timeout");
        timed_out += 1;
    }
    assert!(timed_out > 0, "no request of 10 timed out after 1 ms");
    // ... but an event stream is not cut by it.
    let mut stream = open_stream(&api, "/api/v1/events", &operator).await;
    // (Other tests' runs may show up on it meanwhile: it must not end.)
    let open_until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(chunk) = tokio::time::timeout_at(open_until, stream.chunk()).await {
        let chunk = chunk.expect("the stream failed");
        assert!(chunk.is_some(), "the stream ended within 500 ms");
    }

    // With a normal timeout, the 413 is certain.
    let pool = stack().pool().await.expect("pool");
    let server = TestServer::with(&pool, |c| c.max_body = 2_048)
        .await
        .expect("server");
    let api = Api::of(server, pool);
    let answer = api
        .send(
            Method::POST,
            "/api/v1/runs",
            Some(&operator),
            Some(json!({ "workflow": big })),
        )
        .await;
    assert_problem(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    let answer = api
        .send(
            Method::POST,
            "/api/v1/workflows/validate",
            Some(&operator),
            Some(json!({ "workflow": big })),
        )
        .await;
    assert_problem(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
}

#[tokio::test]
async fn workers_are_listed_as_weft_workers_json_lists_them() {
    let api = Api::start().await;
    let viewer = api.token(Role::Viewer).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let workers = api.get("/api/v1/workers", &viewer).await;
        let live: Vec<&Value> = workers
            .as_array()
            .expect("array")
            .iter()
            .filter(|w| w["live"] == true)
            .collect();
        if let Some(w) = live.first() {
            assert!(w["queues"].as_array().is_some_and(|q| !q.is_empty()), "{w}");
            assert!(
                w["actions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a == "echo")),
                "{w}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no live worker listed: {workers}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_its_problems() {
    let api = Api::start().await;
    let viewer = api.token(Role::Viewer).await;
    let doc = api.get("/api/v1/openapi.json", &viewer).await;
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1")
    );
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path, _) in endpoints("{run}")
        .into_iter()
        .filter(|(_, p, _)| p != "/api/v1/openapi.json")
    {
        let path = if path.starts_with("/api/v1/tokens/") {
            "/api/v1/tokens/{id}".to_owned()
        } else {
            path
        };
        let op = &paths
            .get(&path)
            .unwrap_or_else(|| panic!("{path} is not described"))[method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {path} is not described");
        let responses = op["responses"].as_object().expect("responses");
        for status in ["401", "500", "503"] {
            assert!(
                responses.contains_key(status),
                "{method} {path}: no {status}"
            );
        }
        assert_eq!(
            responses.contains_key("408"),
            !path.ends_with("/events"),
            "{method} {path}: only the event streams are not timed"
        );
        assert_eq!(
            responses["401"]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn the_server_stops_promptly_with_event_streams_open() {
    let pool = stack().pool().await.expect("pool");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let config = weft_server::ServerConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let server = tokio::spawn(weft_server::serve(
        pool.clone(),
        config,
        shutdown.clone(),
        Some(tx),
    ));
    let addr = rx.await.expect("listening");
    let viewer = token(&pool, Role::Viewer).await.expect("token");
    let operator = token(&pool, Role::Operator).await.expect("token");
    let http = reqwest::Client::new();
    let id = http
        .post(format!("http://{addr}/api/v1/runs"))
        .bearer_auth(&operator)
        .json(&json!({ "workflow": "name: api-stop\ntasks:\n  a: { action: sleep, input: { seconds: 30 } }\n" }))
        .send()
        .await
        .expect("submit")
        .json::<Value>()
        .await
        .expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut streams = Vec::new();
    for path in [
        format!("/api/v1/runs/{id}/events"),
        "/api/v1/events".to_owned(),
    ] {
        let response = http
            .get(format!("http://{addr}{path}"))
            .bearer_auth(&viewer)
            .send()
            .await
            .expect("stream");
        assert_eq!(response.status(), StatusCode::OK);
        streams.push(response);
    }
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the server did not stop within 5 s with streams open: {stopped:?}"
    );
    // The streams ended (without an `end` event: the run did not).
    for mut stream in streams {
        let mut text = String::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(!text.contains("event: end"), "{text}");
    }
    // Leave nothing running for the other tests.
    weft_store::cancel::request_committed(&pool, id.parse().expect("a run id"))
        .await
        .expect("cancel");
}

#[tokio::test]
async fn dev_mode_serves_loopback_only_and_without_tokens() {
    let pool = stack().pool().await.expect("pool");
    let server = TestServer::with(&pool, |c| c.dev = true)
        .await
        .expect("server");
    let api = Api::of(server, pool.clone());
    let (status, _, me) = api.send(Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me, json!({ "name": "dev", "role": "admin" }));
    let mut config = weft_server::ServerConfig::new(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    config.dev = true;
    let refused = weft_server::serve(
        pool,
        config,
        tokio_util::sync::CancellationToken::new(),
        None,
    )
    .await;
    assert!(
        matches!(refused, Err(weft_server::ServeError::DevNotLoopback(_))),
        "{refused:?}"
    );
}
