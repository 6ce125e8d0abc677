//! `weft server` under a big history: what the web UI and the API's
//! clients wait for (issue 15's targets).
//!
//! ```text
//! cargo bench -p weft-tests --bench server [-- [--json]]
//! ```
//!
//! A fresh database is filled in SQL with 100,000 finished runs of ten
//! workflows ([`weft_tests::fill::listed_runs`]) and one finished run of
//! a 10,000-item fan-out whose every attempt has logs
//! ([`weft_tests::fill::fan_out_runs`]), then `VACUUM ANALYZE`. A server
//! runs in this process on a loopback port, with an executor and a
//! worker; every request goes over HTTP with a viewer token (one client,
//! kept-alive connections), and is timed from send to the whole body
//! read:
//! - **runs list** (target ≤ 50 ms): the first page of 25 (the UI's
//!   size), the page half-way down (a cursor at the 50,000th run), and
//!   the first pages filtered by status and by workflow;
//! - **run page** (target ≤ 300 ms): what the UI asks at once to show the
//!   10,000-item run (its status and its graph, in parallel), then its
//!   task panel (the `explain` and the first page of 50 attempts, in
//!   parallel) and the last page of attempts (offset 9,950);
//! - **200 followers** (target ≤ 1 s): 200 clients follow one live run
//!   (a 1,000-item fan-out after a 2 s sleep, submitted through the API)
//!   on `GET /api/v1/runs/{run}/events`; each one's lag is when its `end`
//!   event arrived after the run's `finished_at` (one machine, one
//!   clock).
//!
//! `cargo test --benches` runs it in a quick mode (2,000 runs, a
//! 200-item fan-out, 20 followers) as a check that it works, never of its
//! speed.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::{DateTime, Utc};
use reqwest::Client;
use serde_json::{Value, json};
use weft_common::auth::Role;
use weft_tests::report::Report;
use weft_tests::server::{TestServer, read_events, token};
use weft_tests::{Stack, StackOptions};

/// Sizes of one run of the bench.
struct Sizes {
    runs: i64,
    items: i64,
    followers: usize,
    live_items: u32,
    calls: usize,
}

const FULL: Sizes = Sizes {
    runs: 100_000,
    items: 10_000,
    followers: 200,
    live_items: 1_000,
    calls: 100,
};

const QUICK: Sizes = Sizes {
    runs: 2_000,
    items: 200,
    followers: 20,
    live_items: 20,
    calls: 3,
};

/// The percentiles reported of request times.
const PERCENTILES: &[(&str, f64)] = &[("p50", 0.50), ("p95", 0.95), ("p99", 0.99)];

/// A server and a client of it with a token.
struct Api {
    server: TestServer,
    http: Client,
    token: String,
}

impl Api {
    /// `GET path` → its JSON body, which must come with a 200.
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(self.server.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let body = response.bytes().await?;
        ensure!(
            status.is_success(),
            "GET {path}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(serde_json::from_slice(&body)?)
    }

    /// Times `calls` calls of `request`, checking each answer with
    /// `check`; the durations in ms.
    async fn timed<F, Fut>(&self, calls: usize, mut request: F) -> anyhow::Result<Vec<f64>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let mut ms = Vec::with_capacity(calls);
        for _ in 0..calls {
            let began = Instant::now();
            request().await?;
            ms.push(began.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(ms)
    }
}

/// The number of items of a runs page.
fn items(page: &Value) -> usize {
    page["items"].as_array().map_or(0, Vec::len)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let quick = !args.iter().any(|a| a == "--bench");
    let json = args.iter().any(|a| a == "--json");
    let sizes = if quick { QUICK } else { FULL };
    let mut report = Report::new(json);
    let stack = Stack::start(StackOptions {
        worker_concurrency: 16,
        ..StackOptions::default()
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let pool = stack.pool().await?;
        let began = Instant::now();
        weft_tests::fill::listed_runs(&pool, sizes.runs).await?;
        weft_tests::fill::fan_out_runs(&pool, 1, sizes.items).await?;
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        report.add("server fill", "took", began.elapsed().as_secs_f64(), "s");

        let server = TestServer::start(&pool).await?;
        let api = Api {
            server,
            http: Client::new(),
            token: token(&pool, Role::Viewer).await?,
        };
        list(&api, &pool, &sizes, &mut report).await?;
        run_page(&api, &pool, &sizes, &mut report).await?;
        followers(&api, &pool, &sizes, &mut report).await?;
        anyhow::Ok(())
    })?;
    report.finish();
    Ok(())
}

/// The runs list: first page, half-way down, filtered.
async fn list(
    api: &Api,
    pool: &sqlx::PgPool,
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let scenario = format!("{} runs", sizes.runs);
    // The cursor of the run half-way down, as the server writes it.
    let middle: String = sqlx::query_scalar(
        "SELECT (extract(epoch FROM created_at) * 1000000)::bigint || '.' || id \
         FROM workflow_executions ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
    )
    .bind(sizes.runs / 2)
    .fetch_one(pool)
    .await?;
    let pages = [
        ("first page", "/api/v1/runs?limit=25".to_owned()),
        (
            "half-way down",
            format!("/api/v1/runs?limit=25&cursor={middle}"),
        ),
        (
            "status=canceled",
            "/api/v1/runs?limit=25&status=canceled".to_owned(),
        ),
        (
            "status=failed, half-way down",
            format!("/api/v1/runs?limit=25&status=failed&cursor={middle}"),
        ),
        (
            "workflow=listed-3",
            "/api/v1/runs?limit=25&workflow=listed-3".to_owned(),
        ),
        ("a page of 1,000", "/api/v1/runs?limit=1000".to_owned()),
    ];
    for (name, path) in pages {
        let want = if name.contains("1,000") { 1_000 } else { 25 };
        let samples = api
            .timed(sizes.calls, || async {
                let page = api.get(&path).await?;
                ensure!(items(&page) == want, "{name}: {} runs", items(&page));
                ensure!(page["next_cursor"].is_string(), "{name}: no next page");
                Ok(())
            })
            .await?;
        report.percentiles(&format!("{scenario}: list, {name}"), &samples, PERCENTILES);
    }
    Ok(())
}

/// The run page of the big fan-out, and its task panel.
async fn run_page(
    api: &Api,
    pool: &sqlx::PgPool,
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let scenario = format!("{}-item run", sizes.items);
    let id = weft_tests::fill::fan_out_run_id(pool, 1).await?;
    let run = format!("/api/v1/runs/{id}");
    let graph = format!("/api/v1/runs/{id}/graph");
    let samples = api
        .timed(sizes.calls, || async {
            let (status, graph) = tokio::try_join!(api.get(&run), api.get(&graph))?;
            ensure!(status["status"] == "succeeded", "status: {status}");
            ensure!(
                graph["nodes"].as_array().is_some_and(|n| n.len() == 2),
                "graph: {graph}"
            );
            Ok(())
        })
        .await?;
    report.percentiles(
        &format!("{scenario}: run page (status + graph)"),
        &samples,
        PERCENTILES,
    );

    let explain = format!("/api/v1/runs/{id}/explain");
    let first = format!("/api/v1/runs/{id}/attempts?task=fan&limit=50");
    let samples = api
        .timed(sizes.calls, || async {
            let (_, attempts) = tokio::try_join!(api.get(&explain), api.get(&first))?;
            ensure!(
                attempts["items"].as_array().is_some_and(|a| a.len() == 50),
                "attempts: {attempts}"
            );
            Ok(())
        })
        .await?;
    report.percentiles(
        &format!("{scenario}: task panel (explain + attempts 1–50)"),
        &samples,
        PERCENTILES,
    );

    let last = format!(
        "/api/v1/runs/{id}/attempts?task=fan&limit=50&offset={}",
        sizes.items - 50
    );
    let samples = api
        .timed(sizes.calls, || async {
            let attempts = api.get(&last).await?;
            ensure!(
                attempts["items"].as_array().is_some_and(|a| !a.is_empty()),
                "attempts: {attempts}"
            );
            Ok(())
        })
        .await?;
    report.percentiles(
        &format!("{scenario}: attempts, a page near the end"),
        &samples,
        PERCENTILES,
    );
    Ok(())
}

/// Many clients following one live run to its end.
async fn followers(
    api: &Api,
    pool: &sqlx::PgPool,
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let operator = token(pool, Role::Operator).await?;
    let workflow = format!(
        "name: followed\ntasks:\n  wait: {{ action: sleep, input: {{ seconds: 2 }} }}\n  fan:\n    \
         needs: [wait]\n    action: noop\n    with_items: \"{{{{ range({}) | list }}}}\"\n  \
         after: {{ needs: [fan], action: noop }}\n",
        sizes.live_items
    );
    let response = api
        .http
        .post(api.server.url("/api/v1/runs"))
        .bearer_auth(&operator)
        .json(&json!({ "workflow": workflow }))
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "submit: {}",
        response.text().await?
    );
    let submitted: Value = response.json().await?;
    let id = submitted["id"].as_str().context("the run's id")?.to_owned();

    let path = format!("/api/v1/runs/{id}/events");
    let mut streams = Vec::with_capacity(sizes.followers);
    for _ in 0..sizes.followers {
        let response = api
            .http
            .get(api.server.url(&path))
            .bearer_auth(&api.token)
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "events: {}",
            response.status()
        );
        streams.push(response);
    }
    let followed = futures_util::future::try_join_all(streams.into_iter().map(|s| async {
        let events = read_events(s, Duration::from_secs(120)).await?;
        anyhow::Ok((Utc::now(), events.len()))
    }))
    .await?;
    let (status, finished_at): (String, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT status, finished_at FROM workflow_executions WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(pool)
            .await?;
    ensure!(status == "succeeded", "the followed run ended {status}");
    let finished_at = finished_at.context("finished_at")?;
    let lags: Vec<f64> = followed
        .iter()
        .map(|(at, _)| (*at - finished_at).as_seconds_f64() * 1000.0)
        .collect();
    let scenario = format!(
        "{} followers of a {}-item run",
        sizes.followers, sizes.live_items
    );
    report.percentiles(
        &format!("{scenario}: `end` after finished_at"),
        &lags,
        &[("p50", 0.5), ("max", 1.0)],
    );
    let events = followed.iter().map(|(_, n)| *n as f64);
    let scenario = format!("{scenario}: events per client");
    report.add(
        &scenario,
        "min",
        events.clone().fold(f64::INFINITY, f64::min),
        "events",
    );
    report.add(&scenario, "max", events.fold(0.0, f64::max), "events");
    Ok(())
}
