//! `weft prune --older-than DURATION`: delete finished runs past their
//! retention, with their tasks and executions.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use weft_store::prune::{self, Pruned};

use crate::config::{ConfigArgs, DbArgs};

/// Arguments of `weft prune`.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete runs that finished longer ago than this, e.g. `30d`, `12h`,
    /// `1d12h`. Runs not finished (pending, running, canceling) are never
    /// deleted, whatever their age.
    // Hyphen values reach the parser, so `-5d` is refused with its reason.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, allow_hyphen_values = true)]
    pub(crate) older_than: Duration,
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print JSON: `{dry_run, cutoff, runs, tasks, executions}`.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// A duration flag that must be positive: `0s` would prune every finished
/// run up to now, which is never what a retention means.
pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = weft_common::parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!(
            "`{text}` is zero; give how long to keep finished runs, e.g. `30d` or `12h`"
        ));
    }
    Ok(duration)
}

/// Deletes (or with `--dry-run` counts) the runs finished before the
/// cutoff, in batches that each commit on their own.
pub(crate) async fn run(args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let pool = args.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let pruned = prune::prune(
        &mut conn,
        args.older_than,
        prune::DEFAULT_BATCH,
        args.dry_run,
    )
    .await?;
    if args.json {
        let Pruned {
            cutoff,
            runs,
            tasks,
            executions,
        } = pruned;
        let report = json!({
            "dry_run": args.dry_run, "cutoff": cutoff,
            "runs": runs, "tasks": tasks, "executions": executions,
        });
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        outln!("{}", summary(&pruned, args.dry_run))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(pruned: &Pruned, dry_run: bool) -> String {
    let verb = if dry_run { "would delete" } else { "deleted" };
    let tail = if dry_run { "; nothing deleted" } else { "" };
    format!(
        "{verb} {} run(s) finished before {} ({} task(s), {} execution(s)){tail}",
        pruned.runs,
        pruned.cutoff.format("%Y-%m-%d %H:%M:%S UTC"),
        pruned.tasks,
        pruned.executions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_durations_must_be_positive_and_well_formed() {
        assert_eq!(
            positive_duration("30d"),
            Ok(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(positive_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert!(positive_duration("0s").unwrap_err().contains("is zero"));
        assert!(positive_duration("0d").unwrap_err().contains("is zero"));
        assert!(
            positive_duration("-5d")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(positive_duration("30").unwrap_err().contains("no unit"));
        assert!(
            positive_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }
}
