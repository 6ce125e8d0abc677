//! Cancel, retry and signals through the API: what they did, and what
//! they refuse.

use super::*;
use crate::streams::{open_stream, read_events};

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
    api.refused(
        Method::POST,
        &format!("/api/v1/runs/{}/cancel", uuid::Uuid::now_v7()),
        Some(&operator),
        None,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
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
        .refused(
            Method::POST,
            &format!("/api/v1/runs/{id}/retry"),
            Some(&operator),
            Some(json!({ "task": "nope" })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        )
        .await;
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
async fn a_signal_is_delivered_once_and_a_bad_payload_is_refused_naming_its_field() {
    let api = Api::start().await;
    let operator = api.token(Role::Operator).await;
    let yaml = "name: gate\ntasks:\n  gate:\n    wait:\n      signal: go\n      input: { amount: { type: integer }, note: '' }\n";
    let id = api.submit(&operator, yaml, json!({})).await;
    let path = format!("/api/v1/runs/{id}/tasks/gate/signal");
    // Until its executor started the wait, a signal is refused (409).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM waits WHERE workflow_execution_id = $1::uuid AND resolution IS NULL",
        )
        .bind(&id)
        .fetch_one(&api.pool)
        .await
        .expect("waits");
        if open == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the wait never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bad = api
        .send(
            Method::POST,
            &path,
            Some(&operator),
            Some(json!({ "input": { "amount": "lots" } })),
        )
        .await;
    assert_problem(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(
        bad.2["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("input `amount` must be an integer"),
        "{}",
        bad.2
    );
    let approve = api
        .send(
            Method::POST,
            &path,
            Some(&operator),
            Some(json!({ "kind": "approve" })),
        )
        .await;
    assert_problem(&approve, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let (status, answer) = api
        .post(&path, &operator, json!({ "input_text": { "amount": "7" } }))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["resolution"], "signaled");
    assert_eq!(answer["result"], json!({ "amount": 7, "note": "" }));
    let again = api
        .send(
            Method::POST,
            &path,
            Some(&operator),
            Some(json!({ "input": { "amount": 8 } })),
        )
        .await;
    assert_problem(&again, StatusCode::CONFLICT, "conflict");
    let run = api.wait(&id, &operator).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let unknown = api
        .send(
            Method::POST,
            &format!("/api/v1/runs/{id}/tasks/nope/signal"),
            Some(&operator),
            None,
        )
        .await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "not-found");
}
