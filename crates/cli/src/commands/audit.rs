//! `weft audit [ID]`: check the exactly-once invariants on the live database.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use weft_common::RunRef;
use weft_store::audit;

use crate::config::{ConfigArgs, DbArgs};

/// Arguments of `weft audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Audit only this run (default: every run): its id, a unique prefix
    /// of it (8+ hex digits), or `last`.
    pub(crate) id: Option<RunRef>,
    /// Report outbox messages unpublished for longer than this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) outbox_threshold: f64,
    /// Queued executions no worker took for longer than this since their
    /// dispatch was last sent are reported.
    #[command(flatten)]
    pub(crate) redispatch: crate::commands::daemons::RedispatchArgs,
    /// Print JSON: `{clean, checks, violations: [{check, workflow_execution_id, detail}]}`.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Exit 0 when clean, 1 with every violation named.
pub(crate) async fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let queued_secs = args.redispatch.after()?.as_secs_f64();
    let thresholds = audit::Thresholds {
        outbox_secs: args.outbox_threshold,
        queued_secs,
    };
    let pool = args.db.connect().await?;
    let id = match &args.id {
        Some(run) => Some(crate::run_ref::resolve(&pool, run).await?),
        None => None,
    };
    let mut conn = pool.acquire().await.context("connecting")?;
    let violations = audit::audit_with(&mut conn, id, thresholds).await?;
    let checks = audit::checks();
    if args.json {
        let report =
            json!({ "clean": violations.is_empty(), "checks": checks, "violations": violations });
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else if violations.is_empty() {
        outln!(
            "clean: {} checks passed ({})",
            checks.len(),
            checks.join(", ")
        )?;
    } else {
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_header(["check", "run", "violation"]);
        for v in &violations {
            table.add_row([
                v.check.clone(),
                v.workflow_execution_id.to_string(),
                v.detail.clone(),
            ]);
        }
        outln!("{table}")?;
        eprintln!("{} violation(s) found", violations.len());
    }
    Ok(if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
