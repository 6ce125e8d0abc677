//! Runs and workflows: submit → success seen alike by every view, validation at lines and columns, pages of runs, query errors, workers, the OpenAPI document.

use super::*;

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
        .refused(
            Method::GET,
            &format!("/api/v1/runs/{id}/attempts?task=nope"),
            Some(&operator),
            None,
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
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
        .refused(
            Method::POST,
            "/api/v1/runs",
            Some(&operator),
            Some(json!({ "workflow": yaml })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        )
        .await;
    assert_eq!(answer.2["diagnostics"], verdict["diagnostics"]);
    // Bad inputs: 422 naming the input.
    let answer = api
        .refused(
            Method::POST,
            "/api/v1/runs",
            Some(&operator),
            Some(json!({ "workflow": FAN_OUT, "inputs": { "n": "three" } })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        )
        .await;
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap_or_default()
            .contains('n')
    );
    // A body of the wrong shape: 400 saying what.
    let answer = api
        .refused(
            Method::POST,
            "/api/v1/runs",
            Some(&operator),
            Some(json!({ "workflow": FAN_OUT, "extra": 1 })),
            StatusCode::BAD_REQUEST,
            "bad-request",
        )
        .await;
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("extra")
    );
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
        let answer = api
            .refused(
                Method::GET,
                &path,
                Some(&viewer),
                None,
                StatusCode::BAD_REQUEST,
                "bad-request",
            )
            .await;
        let detail = answer.2["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(says),
            "{path}: `{detail}` does not name {says}"
        );
    }
    // Unknown paths and methods are problems too.
    api.refused(
        Method::GET,
        "/api/v1/nothing",
        Some(&viewer),
        None,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
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
            path.replace("/tasks/gate/", "/tasks/{task}/")
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
