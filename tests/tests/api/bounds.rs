//! The bounds of a request: body size (413) and time (408), event streams exempt.

use super::*;
use crate::streams::open_stream;

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
    api.refused(
        Method::POST,
        "/api/v1/runs",
        Some(&operator),
        Some(json!({ "workflow": big })),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
    )
    .await;
    api.refused(
        Method::POST,
        "/api/v1/workflows/validate",
        Some(&operator),
        Some(json!({ "workflow": big })),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
    )
    .await;
}
