//! Tokens and roles: every endpoint behind its token, each role doing what it may, tokens created once and revoked at once, and `--dev`.

use super::*;

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
            let answer = api
                .refused(
                    method.clone(),
                    &path,
                    token,
                    body.clone(),
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                )
                .await;
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
        (format!("/api/v1/runs/{run}/tasks/gate/signal"), None),
    ] {
        let answer = api
            .refused(
                Method::POST,
                &path,
                Some(&viewer),
                body,
                StatusCode::FORBIDDEN,
                "forbidden",
            )
            .await;
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
            api.refused(
                method,
                &path,
                Some(token),
                body,
                StatusCode::FORBIDDEN,
                "forbidden",
            )
            .await;
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
    api.refused(
        Method::GET,
        "/api/v1/me",
        Some(&secret),
        None,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // Unknown id: 404; not an id: 400; bad role or empty name: a problem.
    api.refused(
        Method::DELETE,
        &format!("/api/v1/tokens/{}", uuid::Uuid::now_v7()),
        Some(&admin),
        None,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    api.refused(
        Method::DELETE,
        "/api/v1/tokens/nope",
        Some(&admin),
        None,
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
    let answer = api
        .refused(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({ "name": "x", "role": "root" })),
            StatusCode::BAD_REQUEST,
            "bad-request",
        )
        .await;
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("root")
    );
    api.refused(
        Method::POST,
        "/api/v1/tokens",
        Some(&admin),
        Some(json!({ "name": " ", "role": "viewer" })),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-token",
    )
    .await;
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
