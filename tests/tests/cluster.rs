//! A real three-node RabbitMQ cluster: 100 fan-out runs (fan-out → join)
//! on quorum queues, with 3 executors and 2 workers as `weft` processes,
//! each given all three nodes' URLs, while the node hosting the queues'
//! leaders is SIGKILLed and, later, started again.
//!
//! Two executors list that node first: they lose their connection and
//! fail over to the next URL. The workers list the other nodes first, so
//! their consumers live through the kill on nodes that stay, and see only
//! the queues' leaders move (a worker on the killed node would have its
//! unacked deliveries redelivered and run again: at-least-once, which
//! `chaos.rs` covers). Afterwards: every run succeeded; every join was
//! dispatched by one message and run once, counted on the wire (spies
//! bound to the exchanges on a node that stays up record each dispatch
//! and each completion message with its id); no attempt ran more often
//! than its dispatch crossed the wire — once, unless the broker refused it
//! while the queue had no leader, or its confirm died with the node, and a
//! relay published it again; an item ran again only as a new attempt after
//! one that failed or was reaped; every dispatch on the wire is a row and
//! every row was on the wire; `weft audit` is clean.
//!
//! The cluster is the test's own (`weft_tests::private::PrivateRabbitCluster`):
//! the machine's broker is not touched.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_bus::{Bus, BusConfig};
use weft_common::message::topology;
use weft_common::{Message, WorkflowStatus};
use weft_tests::private::PrivateRabbitCluster;
use weft_tests::process::Daemon;
use weft_tests::{Stack, StackOptions};

const RUNS: usize = 100;
const ITEMS: usize = 6;
const WORKFLOW: &str = r#"
name: cluster
tasks:
  fan:
    with_items: "{{ range(6) | list }}"
    action: sleep
    input: { seconds: 0.3, i: "{{ item }}" }
    retry: { attempts: 5, delay: 100ms }
  join:
    needs: [fan]
    action: echo
    input: { n: "{{ tasks.fan.result | length }}" }
    retry: { attempts: 5, delay: 100ms }
"#;

/// An item: its task execution and index.
type Item = (uuid::Uuid, Option<i32>);

/// Polls `check` every 200 ms until it holds; panics with `what` after
/// `timeout`.
async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} (waited {timeout:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_of_the_queue_leaders_loses_and_repeats_nothing() {
    let started = Instant::now();
    let mut cluster =
        tokio::task::block_in_place(PrivateRabbitCluster::start).expect("a 3-node cluster");
    println!("cluster: up in {:.1}s", started.elapsed().as_secs_f64());

    // Declared from a connection to node 1, the quorum queues get their
    // leaders there (RabbitMQ's default leader locator is client-local).
    let stop = CancellationToken::new();
    let setup = Bus::connect(
        BusConfig {
            url: cluster.url(0),
            connection_name: "cluster-setup".into(),
            ..BusConfig::default()
        },
        stop.clone(),
    )
    .await
    .expect("node 1");
    setup
        .declare_topology(&[topology::DEFAULT_POOL.to_owned()])
        .await
        .expect("topology");
    setup.close().await;
    let leaders = cluster.leaders(1).expect("leaders");
    let pool_queue = topology::task_queue(topology::DEFAULT_POOL);
    let leader = leaders.get(topology::EXECUTOR_QUEUE).cloned();
    assert!(
        leader.is_some() && leaders.get(&pool_queue) == leader.as_ref(),
        "the queues' leaders are not on one node: {leaders:?}"
    );
    let leader = leader.expect("checked");
    let victim = cluster
        .node_index(&leader)
        .unwrap_or_else(|| panic!("leader {leader} is none of the cluster's nodes"));
    let survivor = (victim + 1) % 3;
    println!("cluster: leaders on node {} ({leader})", victim + 1);

    let stack = Stack::start(StackOptions {
        amqp_url: Some(cluster.url(survivor)),
        ..StackOptions::bare()
    })
    .expect("stack");
    let pool = stack.pool().await.expect("pool");
    // The spies' queues are exclusive, on a node that stays up.
    let (dispatch_spy, dispatches) = weft_tests::spy(
        &cluster.url(survivor),
        topology::TASKS_EXCHANGE,
        topology::DEFAULT_POOL,
        stop.clone(),
    )
    .await
    .expect("dispatch spy");
    let (completion_spy, completions) = weft_tests::spy(
        &cluster.url(survivor),
        topology::EVENTS_EXCHANGE,
        "execution.completed",
        stop.clone(),
    )
    .await
    .expect("completion spy");

    // Every daemon is given the three URLs; the order says where it
    // connects first.
    let others = [(victim + 1) % 3, (victim + 2) % 3];
    let order = |nodes: [usize; 3]| {
        nodes
            .iter()
            .map(|&n| cluster.url(n))
            .collect::<Vec<_>>()
            .join(",")
    };
    let urls = [
        ("executor-0", order([victim, others[0], others[1]])),
        ("executor-1", order([victim, others[1], others[0]])),
        ("executor-2", order([others[0], others[1], victim])),
        ("worker-0", order([others[0], others[1], victim])),
        ("worker-1", order([others[1], victim, others[0]])),
    ];
    let mut daemons = Vec::new();
    for (name, url) in &urls {
        let mut env: Vec<(&str, &str)> = stack
            .fast_liveness_env()
            .into_iter()
            .filter(|(k, _)| *k != "WEFT_AMQP_URL")
            .collect();
        env.push(("WEFT_AMQP_URL", url));
        let args: &[&str] = if name.starts_with("executor") {
            &["executor"]
        } else {
            &["worker", "--concurrency", "8"]
        };
        daemons.push(Daemon::start(name, args, &env).expect("daemon"));
    }

    // Runs are submitted 16 a second, faster than the workers take their
    // items, so that they pile up at every stage (items queued, running,
    // joins dispatched and running, runs ending). Once 15 ended, the
    // leaders' node is killed; the submits go on while it is down.
    let completed_on_wire = || completions.lock().expect("lock").len();
    let kill_after = 15i64;
    let mut ids = Vec::with_capacity(RUNS);
    let mut uuids: Vec<uuid::Uuid> = Vec::with_capacity(RUNS);
    let mut killed: Option<(Instant, i64, usize)> = None;
    let deadline = Instant::now() + Duration::from_secs(150);
    while killed.is_none() || ids.len() < RUNS {
        for _ in 0..4 {
            if ids.len() < RUNS {
                let id = stack
                    .submit(&pool, WORKFLOW, json!({}))
                    .await
                    .expect("submit");
                ids.push(id);
                uuids.push(id.as_uuid());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        if killed.is_some() {
            continue;
        }
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workflow_executions WHERE id = ANY($1) AND status = 'succeeded'",
        )
        .bind(&uuids)
        .fetch_one(&pool)
        .await
        .expect("count");
        if done >= kill_after {
            tokio::task::block_in_place(|| cluster.kill(victim)).expect("kill the leaders' node");
            killed = Some((Instant::now(), done, ids.len()));
        } else {
            assert!(
                Instant::now() < deadline,
                "only {done} runs succeeded within 150 s ({} completions on the wire): \
                 are the daemons connected?",
                completed_on_wire()
            );
        }
    }
    let (killed_at, done_before, submitted_before) = killed.expect("killed");
    println!(
        "cluster: node {} killed with {done_before} runs done of {submitted_before} submitted",
        victim + 1,
    );

    // The executors that were on it connect to the next URL: the cluster
    // sees three executors and two workers again, all on the other nodes.
    let mut names;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        names =
            tokio::task::block_in_place(|| cluster.connection_names(survivor)).unwrap_or_default();
        if names.iter().filter(|n| *n == "weft-executor").count() == 3
            && names.iter().filter(|n| *n == "weft-worker").count() == 2
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemons did not all fail over to the other nodes within 60 s; connections: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "cluster: failed over in {:.1}s: {names:?}",
        killed_at.elapsed().as_secs_f64()
    );
    // The survivors elect new leaders among themselves.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let moved = tokio::task::block_in_place(|| cluster.leaders(survivor)).unwrap_or_default();
        let elsewhere = |queue: &str| {
            moved
                .get(queue)
                .is_some_and(|l| *l != leader && cluster.node_index(l).is_some())
        };
        if elsewhere(topology::EXECUTOR_QUEUE) && elsewhere(&pool_queue) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leaders did not move off the killed node within 60 s: {moved:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| cluster.restart(victim)).expect("restart the node");
    println!(
        "cluster: node {} back {:.1}s after the kill",
        victim + 1,
        killed_at.elapsed().as_secs_f64()
    );

    let deadline = Instant::now() + Duration::from_secs(150);
    for id in &ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let run = stack
            .wait(&pool, *id, left.max(Duration::from_secs(1)))
            .await
            .unwrap_or_else(|e| {
                panic!("run {id} did not finish within 150 s of the restart: {e:#}")
            });
        assert_eq!(
            run.status,
            WorkflowStatus::Succeeded,
            "run {id}: {:?}",
            run.error
        );
    }
    // The last messages (the joins' completions) reach the spies.
    let join_rows: Vec<(uuid::Uuid, uuid::Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT t.workflow_execution_id, e.id, e.result FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = ANY($1) AND t.task_name = 'join'",
    )
    .bind(&uuids)
    .fetch_all(&pool)
    .await
    .expect("joins");
    let join_ids: BTreeSet<uuid::Uuid> = join_rows.iter().map(|(_, e, _)| *e).collect();
    eventually(
        "the joins' completions did not all reach the spy",
        Duration::from_secs(30),
        || {
            let seen: BTreeSet<uuid::Uuid> = completions
                .lock()
                .expect("lock")
                .iter()
                .filter_map(|e| match &e.message {
                    Message::ExecutionCompleted(c) => Some(c.execution_id.as_uuid()),
                    _ => None,
                })
                .collect();
            join_ids.is_subset(&seen)
        },
    )
    .await;
    stop.cancel();
    let _ = dispatch_spy.await;
    let _ = completion_spy.await;
    // Every daemon stops when asked, within its grace, on the cluster it
    // failed over to.
    let hung: Vec<String> = tokio::task::block_in_place(|| {
        daemons
            .iter_mut()
            .filter_map(|d| (!d.terminate_within(Duration::from_secs(30))).then(|| d.name.clone()))
            .collect()
    });

    // One join per run, one attempt, its result over all items.
    let mut joins_per_run: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
    for (run, _, result) in &join_rows {
        *joins_per_run.entry(*run).or_default() += 1;
        assert_eq!(result, &json!({ "n": ITEMS }), "run {run}'s join");
    }
    assert_eq!(joins_per_run.len(), RUNS, "runs with a join");
    assert!(
        joins_per_run.values().all(|n| *n == 1),
        "joins executed more than once: {joins_per_run:?}"
    );

    // The wire: by execution, the distinct messages that dispatched it and
    // that reported it run (a message published again after a lost
    // confirm keeps its id: it is counted once, and as a copy).
    let dispatches = dispatches.lock().expect("lock").clone();
    let completions = completions.lock().expect("lock").clone();
    let mut dispatched: BTreeMap<uuid::Uuid, BTreeSet<uuid::Uuid>> = BTreeMap::new();
    // How often each execution's dispatch crossed the wire, copies
    // included: a dispatch the broker refused (a negative confirm while a
    // queue had no leader) or whose confirm was lost with its node is
    // published again by a relay, with its id.
    let mut wire_count: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
    let mut dispatch_copies = 0usize;
    for e in &dispatches {
        if let Message::Dispatch(d) = &e.message {
            *wire_count.entry(d.execution_id.as_uuid()).or_default() += 1;
            if !dispatched
                .entry(d.execution_id.as_uuid())
                .or_default()
                .insert(e.id.as_uuid())
            {
                dispatch_copies += 1;
            }
        }
    }
    let mut ran: BTreeMap<uuid::Uuid, BTreeSet<uuid::Uuid>> = BTreeMap::new();
    let mut completion_copies = 0usize;
    for e in &completions {
        if let Message::ExecutionCompleted(c) = &e.message
            && !ran
                .entry(c.execution_id.as_uuid())
                .or_default()
                .insert(e.id.as_uuid())
        {
            completion_copies += 1;
        }
    }
    // A run is a completion message (a report published again keeps its
    // id). An attempt may run as often as its one dispatch message was
    // on the wire and no more: a dispatch published once runs once, even
    // though the queue's leader died under it; only a copy the broker
    // took twice (its first confirm lost with the node) may run twice.
    let runs_of = |id: &uuid::Uuid| ran.get(id).map_or(0, BTreeSet::len);
    let mut ran_per_copy = 0usize;
    for join in &join_ids {
        let sent = dispatched.get(join).map_or(0, BTreeSet::len);
        assert_eq!(sent, 1, "join execution {join}: dispatch messages");
        let runs = runs_of(join);
        assert!(
            runs >= 1 && runs <= wire_count[join],
            "join execution {join} ran {runs} times, its dispatch was on the wire {} times",
            wire_count[join]
        );
    }
    // Every row was dispatched and every dispatch is a row; no attempt
    // ran more often than its dispatch was on the wire.
    let rows: Vec<(uuid::Uuid, String, uuid::Uuid, Option<i32>, i32, String)> = sqlx::query_as(
        "SELECT e.id, t.task_name, t.id, e.item_index, e.attempt, e.status FROM executions e \
         JOIN task_executions t ON t.id = e.task_execution_id \
         WHERE t.workflow_execution_id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_all(&pool)
    .await
    .expect("executions");
    let row_ids: BTreeSet<uuid::Uuid> = rows.iter().map(|r| r.0).collect();
    let on_wire: BTreeSet<uuid::Uuid> = dispatched.keys().copied().collect();
    let ghosts: Vec<_> = on_wire.difference(&row_ids).collect();
    assert!(ghosts.is_empty(), "dispatched without a row: {ghosts:?}");
    let undispatched: Vec<_> = row_ids.difference(&on_wire).collect();
    assert!(
        undispatched.is_empty(),
        "rows never dispatched: {undispatched:?}"
    );
    for (id, ids) in &ran {
        let copies = wire_count.get(id).copied().unwrap_or(0);
        assert!(
            ids.len() <= copies.max(1),
            "execution {id} ran {} times, its dispatch was on the wire {copies} times",
            ids.len()
        );
        if ids.len() > 1 {
            ran_per_copy += 1;
        }
    }
    // An item ran again only as a new attempt, after one that did not
    // succeed (failed, or reaped as timed out).
    let mut retried = 0usize;
    let mut by_item: BTreeMap<Item, Vec<(i32, String)>> = BTreeMap::new();
    for (_, task, task_execution, item, attempt, status) in &rows {
        if task == "fan" {
            by_item
                .entry((*task_execution, *item))
                .or_default()
                .push((*attempt, status.clone()));
        }
    }
    for (item, attempts) in &mut by_item {
        attempts.sort();
        let succeeded = attempts.iter().filter(|(_, s)| s == "succeeded").count();
        assert_eq!(succeeded, 1, "item {item:?}: {attempts:?}");
        let (last, earlier) = attempts.split_last().expect("an attempt");
        assert_eq!(last.1, "succeeded", "item {item:?}: {attempts:?}");
        assert!(
            earlier.iter().all(|(_, s)| s != "succeeded"),
            "item {item:?} retried after a success: {attempts:?}"
        );
        retried += earlier.len();
    }
    assert_eq!(by_item.len(), RUNS * ITEMS, "items");

    let audit = weft_tests::cli::Cli::new(&stack).run(&["audit"]);
    let audit_out = format!(
        "{}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
    println!(
        "cluster: runs={RUNS} succeeded, executions={} retried_attempts={retried} \
         dispatch_messages={} (copies {dispatch_copies}) completion_messages={} (copies {completion_copies}) \
         attempts_run_twice_from_copies={ran_per_copy} wall={:.1}s",
        rows.len(),
        dispatches.len(),
        completions.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(audit.status.success(), "weft audit: {audit_out}");
    assert!(
        hung.is_empty(),
        "daemons that did not stop within 30 s of SIGTERM: {hung:?}"
    );
}
