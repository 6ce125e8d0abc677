//! `weft validate FILE...`: check workflow files like a compiler would.

use std::process::ExitCode;

use clap::Args;
use weft_common::WithItems;

use crate::cli::FilePath;
use crate::workflow_file;

/// Arguments of `weft validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Workflow files to check.
    #[arg(required = true)]
    pub(crate) files: Vec<FilePath>,
}

/// Validates every file: a one-line summary per valid file, every problem
/// of the others; exit 1 if any file has a problem.
pub(crate) fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    for path in &args.files {
        match workflow_file::load(path) {
            Ok(Some((workflow, _))) => {
                let tasks = workflow.tasks().count();
                let fan_outs = workflow
                    .tasks()
                    .filter(|t| t.with_items().is_some())
                    .count();
                let dynamic = workflow
                    .tasks()
                    .filter(|t| matches!(t.with_items(), Some(WithItems::Expression(_))))
                    .count();
                outln!(
                    "ok  {} — {}: {tasks} task{}, {fan_outs} with_items ({dynamic} from expressions), {} input{}",
                    path.display(),
                    workflow.name(),
                    if tasks == 1 { "" } else { "s" },
                    workflow.inputs().len(),
                    if workflow.inputs().len() == 1 {
                        ""
                    } else {
                        "s"
                    },
                )?;
            }
            Ok(None) => failed += 1,
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} file(s) invalid", args.files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
