//! `weft graph FILE`

use std::process::ExitCode;

use clap::Args;

use crate::cli::FilePath;

/// Arguments of `weft graph`.
#[derive(Debug, Args)]
pub(crate) struct GraphArgs {
    /// The workflow file to draw.
    pub(crate) file: FilePath,
}

/// Draws the DAG.
pub(crate) fn run(_args: &GraphArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
