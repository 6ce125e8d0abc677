//! `weft validate FILE...`

use std::process::ExitCode;

use clap::Args;

use crate::cli::FilePath;

/// Arguments of `weft validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Workflow files to check.
    #[arg(required = true)]
    pub(crate) files: Vec<FilePath>,
}

/// Validates every file; exit 1 if any has a problem.
pub(crate) fn run(_args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
