//! The `latency` scenario: one run at a time, engine-recorded and
//! client-observed, with where a step's time goes (the daemons' hop
//! histograms); and `sequential`, which other scenarios use to measure a
//! dispatch's latency under their load.

#[allow(clippy::wildcard_imports)]
use super::*;
use weft_common::auth::Role;
use weft_tests::client::CliSubmit;
use weft_tests::scrape::Histograms;
use weft_tests::server::{TestServer, token};

pub(super) async fn latency(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let (stack, pool) = stack().await?;
    let daemons = Daemons::start(&stack, 1, 1)?;
    let mut client = Client::connect(&stack, &pool).await?;
    // Warm up: connections, caches, queue declarations.
    sequential(&mut client, &LINEAR, 5).await?;
    let before = daemons.histograms().await?;
    let linear = sequential(&mut client, &LINEAR, sizes.latency_runs).await?;
    let hops = daemons.histograms().await?.since(&before);
    report.percentiles("latency-linear4", &linear.engine, PERCENTILES);
    report.percentiles("latency-linear4 client", &linear.client, PERCENTILES);
    // The same runs submitted as `weft submit` does (no publisher: the
    // run's start is published by a relay woken by the submit's NOTIFY),
    // in process and by the `weft` binary itself.
    let relayed = sequential_by(&mut client, &LINEAR, sizes.latency_runs, Submit::Relay).await?;
    report.percentiles("latency-linear4 via relay", &relayed.engine, PERCENTILES);
    report.percentiles(
        "latency-linear4 via relay client",
        &relayed.client,
        PERCENTILES,
    );
    let cli = Submit::Cli(CliSubmit::new(&stack, LINEAR.yaml)?);
    let by_cli = sequential_by(&mut client, &LINEAR, sizes.latency_runs, cli).await?;
    report.percentiles("latency-linear4 weft submit", &by_cli.engine, PERCENTILES);
    report.percentiles(
        "latency-linear4 weft submit client",
        &by_cli.client,
        PERCENTILES,
    );
    // Where the three ways differ: from the submit's statement to the
    // run's start (the statement that started it).
    for (way, runs) in [
        ("publisher", &linear),
        ("via relay", &relayed),
        ("weft submit", &by_cli),
    ] {
        let delays = start_delays(&pool, &runs.ids).await?;
        report.percentiles(
            &format!("latency-linear4 {way} created→started"),
            &delays,
            PERCENTILES,
        );
    }
    // And by the `weft` binary through `weft server` (here in process, its
    // pool warm): the CLI holds no database connection of its own.
    let server = TestServer::start(&pool).await?;
    let token = token(&pool, Role::Operator).await?;
    let remote = Submit::Cli(CliSubmit::through_server(
        LINEAR.yaml,
        &server.base,
        &token,
    )?);
    let by_server = sequential_by(&mut client, &LINEAR, sizes.latency_runs, remote).await?;
    drop(server);
    report.percentiles(
        "latency-linear4 weft submit --server",
        &by_server.engine,
        PERCENTILES,
    );
    report.percentiles(
        "latency-linear4 weft submit --server client",
        &by_server.client,
        PERCENTILES,
    );
    let delays = start_delays(&pool, &by_server.ids).await?;
    report.percentiles(
        "latency-linear4 weft submit --server created→started",
        &delays,
        PERCENTILES,
    );
    let diamond = sequential(&mut client, &DIAMOND_SHAPE, sizes.latency_runs).await?;
    report.percentiles("latency-diamond", &diamond.engine, PERCENTILES);
    report.percentiles("latency-diamond client", &diamond.client, PERCENTILES);
    // From a task's completion (the worker's stamp in `execution.completed`)
    // to its successor's start (the worker's stamp when it took the
    // dispatch), over every edge of the linear runs.
    let ids = &linear.ids;
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let gaps: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM e.started_at - p.finished_at) * 1000)::float8 \
         FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         JOIN task_executions pt ON pt.workflow_execution_id = t.workflow_execution_id \
                                AND pt.task_name = t.needs[1] \
         JOIN executions p ON p.task_execution_id = pt.id \
         WHERE t.workflow_execution_id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_all(&pool)
    .await?;
    ensure!(
        gaps.len() == 3 * ids.len(),
        "expected 3 edges per linear run, found {} for {} runs",
        gaps.len(),
        ids.len()
    );
    report.percentiles("start-to-start", &gaps, PERCENTILES);
    step_hops(report, &hops);
    let peaks = daemons.stop();
    memory(report, "latency (1 executor + 1 worker)", &peaks);
    Ok(())
}

/// Where a chain step's time goes, hop by hop, over the linear runs: each
/// hop's median and mean from the daemons' latency histograms (fixed
/// buckets: the median is interpolated within one), in the order a step
/// crosses them. Their medians' sum is set beside the measured
/// start-to-start median.
pub(super) fn step_hops(report: &mut Report, hops: &Histograms) {
    const HOPS: [(&str, &str); 6] = [
        ("hop worker→executor", "weft_executor_report_delay_seconds"),
        (
            "hop  of which broker",
            r#"weft_bus_transit_seconds{kind="execution_completed"}"#,
        ),
        (
            "hop executor apply",
            r#"weft_executor_apply_seconds{kind="execution_completed"}"#,
        ),
        ("hop commit→publish", "weft_executor_flush_delay_seconds"),
        (
            "hop broker→worker",
            r#"weft_bus_transit_seconds{kind="dispatch"}"#,
        ),
        ("hop worker start", "weft_worker_start_delay_seconds"),
    ];
    let mut sum = 0.0;
    for (label, series) in HOPS {
        let h = hops.get(series);
        let (Some(median), Some(mean)) = (h.quantile(0.5), h.mean()) else {
            report.note(&format!("{label}: no observations of {series}"));
            continue;
        };
        report.add(label, "p50", median * 1000.0, "ms");
        report.add(label, "mean", mean * 1000.0, "ms");
        if !label.starts_with("hop  ") {
            sum += median;
        }
    }
    report.add("hop sum of p50s", "p50", sum * 1000.0, "ms");
}

/// Each run's `created_at` (the submit's statement) → `started_at` (the
/// statement that started it), in ms.
async fn start_delays(pool: &PgPool, ids: &[WorkflowExecutionId]) -> anyhow::Result<Vec<f64>> {
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    Ok(sqlx::query_scalar(
        "SELECT (extract(epoch FROM started_at - created_at) * 1000)::float8 \
         FROM workflow_executions WHERE id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_all(pool)
    .await?)
}

/// A workflow timed one run at a time, and the answer a client waits for.
pub(super) struct Shape {
    yaml: &'static str,
    /// The task whose result is the run's answer: the client holds the
    /// run's result once it has read this.
    answer: &'static str,
    /// What the answer must be; `None` for a `noop` (no result to check).
    expect: Option<fn() -> Value>,
}

pub(super) const LINEAR: Shape = Shape {
    yaml: LINEAR4,
    answer: "d",
    expect: Some(|| json!({ "v": 4 })),
};

pub(super) const DIAMOND_SHAPE: Shape = Shape {
    yaml: DIAMOND,
    answer: "d",
    expect: Some(|| json!({ "v": 5 })),
};

pub(super) const SINGLE: Shape = Shape {
    yaml: NOOP,
    answer: "only",
    expect: None,
};

/// Each run's latency, measured both ways, and the runs.
pub(super) struct Latencies {
    /// The engine's own record: the run's `created_at` (the submit's
    /// statement) → its `finished_at` (the statement that finished it).
    pub(super) engine: Vec<f64>,
    /// The client's clock: the submit call starts → the client holds the
    /// answer (notified, then read).
    client: Vec<f64>,
    ids: Vec<WorkflowExecutionId>,
}

/// Submits runs one at a time, each after the previous finished; returns
/// each run's latency in ms both ways, and the runs.
pub(super) async fn sequential(
    client: &mut Client,
    shape: &Shape,
    runs: usize,
) -> anyhow::Result<Latencies> {
    sequential_by(client, shape, runs, Submit::Publish).await
}

/// How a timed run is submitted.
enum Submit {
    /// In process, publishing its start with the client's warm publisher.
    Publish,
    /// In process, without a publisher: a relay publishes its start, woken
    /// by the `NOTIFY` in the submitting statement.
    Relay,
    /// By the `weft submit` binary, a process per run.
    Cli(CliSubmit),
}

/// [`sequential`], with runs submitted the way `submit` says.
async fn sequential_by(
    client: &mut Client,
    shape: &Shape,
    runs: usize,
    submit: Submit,
) -> anyhow::Result<Latencies> {
    let mut latencies = Latencies {
        engine: Vec::with_capacity(runs),
        client: Vec::with_capacity(runs),
        ids: Vec::with_capacity(runs),
    };
    for _ in 0..runs {
        let start = std::time::Instant::now();
        let id = match &submit {
            Submit::Publish | Submit::Relay => {
                let publisher = matches!(submit, Submit::Publish).then_some(&client.publisher);
                submit_via(&client.pool, publisher, shape.yaml, "bench.yaml", json!({})).await?
            }
            Submit::Cli(cli) => cli.submit().await?,
        };
        let (answer, engine_ms) = client
            .answer(id, shape.answer, Duration::from_secs(60))
            .await?;
        let client_ms = start.elapsed().as_secs_f64() * 1000.0;
        if let Some(expect) = shape.expect {
            ensure!(
                answer == Some(expect()),
                "run {id}'s `{}` returned {answer:?}",
                shape.answer
            );
        }
        // Both clocks are this machine's: the engine's span lies inside the
        // client's, or one of them is measuring something else.
        ensure!(
            0.0 < engine_ms && engine_ms <= client_ms,
            "run {id}: the engine's record ({engine_ms:.2} ms) is not inside the client's ({client_ms:.2} ms)"
        );
        latencies.engine.push(engine_ms);
        latencies.client.push(client_ms);
        latencies.ids.push(id);
    }
    Ok(latencies)
}
