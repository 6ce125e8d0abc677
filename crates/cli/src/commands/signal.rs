//! `weft signal RUN TASK [--input K=V]...`, `weft approve RUN TASK`,
//! `weft reject RUN TASK`: deliver what a `wait:` task waits for.
//!
//! The answer is synchronous: the store checks the delivery against the
//! task's `wait:` (a signal's payload against its declared fields) and,
//! only if the task's latest attempt is waiting, records it and writes
//! the attempt's end to the outbox in one transaction
//! (`weft_store::waits::deliver`); an executor records it next. Anything
//! else is refused with why, and changes nothing.

use std::process::ExitCode;

use clap::Args;
use weft_common::wait::Delivery;
use weft_common::{Given, RunRef};
use weft_store::waits::Signaled;

use crate::config::{ConfigArgs, DbArgs};
use crate::remote::{RemoteArgs, run_path};

/// Arguments of `weft signal`.
#[derive(Debug, Args)]
pub(crate) struct SignalArgs {
    /// The run: its id, a unique prefix of it (8+ hex digits), or `last`.
    pub(crate) id: RunRef,
    /// The task waiting for the signal (`wait: {signal: …}`).
    pub(crate) task: String,
    /// A field of the signal's payload: KEY=VALUE, VALUE read by the
    /// field's declared type (as `weft submit --input`).
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
    pub(crate) inputs: Vec<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Arguments of `weft approve` and `weft reject`.
#[derive(Debug, Args)]
pub(crate) struct ApprovalArgs {
    /// The run: its id, a unique prefix of it (8+ hex digits), or `last`.
    pub(crate) id: RunRef,
    /// The task waiting for an approval (`wait: {approval: true}`).
    pub(crate) task: String,
    /// Why, kept in the task's result (or, for a rejection, its error).
    #[arg(long, short = 'm')]
    pub(crate) comment: Option<String>,
    /// Who decides (default: the OS user, `$USER`).
    #[arg(long)]
    pub(crate) by: Option<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// `weft signal`.
pub(crate) async fn signal(args: &SignalArgs) -> anyhow::Result<ExitCode> {
    let mut given = Vec::new();
    let mut text = serde_json::Map::new();
    for pair in &args.inputs {
        let (key, value) = super::submit::parse_pair(pair)?;
        text.insert(key.clone(), serde_json::Value::String(value.clone()));
        given.push((key, Given::Text(value)));
    }
    let body = serde_json::json!({ "kind": "signal", "input_text": text });
    deliver(
        &args.id,
        &args.task,
        Delivery::Signal(given),
        &body,
        args.json,
        (&args.remote, &args.db),
    )
    .await
}

/// `weft approve` (`approve = true`) and `weft reject`.
pub(crate) async fn approval(args: &ApprovalArgs, approve: bool) -> anyhow::Result<ExitCode> {
    let by = match &args.by {
        Some(by) => by.clone(),
        None => os_user()?,
    };
    let comment = args.comment.clone();
    let body = serde_json::json!({
        "kind": if approve { "approve" } else { "reject" },
        "by": by,
        "comment": comment,
    });
    let delivery = if approve {
        Delivery::Approve { by, comment }
    } else {
        Delivery::Reject { by, comment }
    };
    deliver(
        &args.id,
        &args.task,
        delivery,
        &body,
        args.json,
        (&args.remote, &args.db),
    )
    .await
}

/// Who runs the command, for `by`.
fn os_user() -> anyhow::Result<String> {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
        .ok_or_else(|| {
            anyhow::anyhow!("cannot tell who you are ($USER is not set): give `--by NAME`")
        })
}

async fn deliver(
    run: &RunRef,
    task: &str,
    delivery: Delivery,
    body: &serde_json::Value,
    json: bool,
    (remote, db): (&RemoteArgs, &DbArgs),
) -> anyhow::Result<ExitCode> {
    let answer: Signaled = if let Some(client) = remote.client()? {
        let path = format!("{}/tasks/{task}/signal", run_path(run));
        let (_, answer) = client.post(&path, body).await?;
        answer
    } else {
        let pool = db.connect().await?;
        let id = crate::run_ref::resolve(&pool, run).await?;
        let delivered = weft_store::waits::deliver_committed(&pool, id, task, &delivery).await?;
        match delivered.outcome(id, task) {
            Ok(answer) => answer,
            Err(refusal) => {
                let why = refusal.map_or_else(|| format!("no run with id {id}"), |r| r.message);
                eprintln!("error: {why}");
                return Ok(ExitCode::FAILURE);
            }
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&answer)?)?;
    } else {
        outln!("{}", answer.message)?;
    }
    Ok(ExitCode::SUCCESS)
}
