//! The event streams: one run to its end (many clients sharing one feed), all runs, and a server stopping with streams open.

use super::*;

/// Server-sent events as (event, data) pairs.
pub(super) type Events = Vec<(String, Value)>;

/// [`weft_tests::server::read_events`], which must reach an `end` event
/// within `limit`.
pub(super) async fn read_events(
    response: reqwest::Response,
    limit: Duration,
) -> Vec<(String, Value)> {
    weft_tests::server::read_events(response, limit)
        .await
        .expect("the stream's events")
}

pub(super) async fn open_stream(api: &Api, path: &str, token: &str) -> reqwest::Response {
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
    // The bar is 1 s (a benchmark's); a loaded test machine gets slack.
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
    api.refused(
        Method::GET,
        &format!("/api/v1/runs/{}/events", uuid::Uuid::now_v7()),
        Some(&operator),
        None,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
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
