//! `weft` — the command-line interface to Weft.
//!
//! This file only parses flags, installs tracing and hands over to the
//! subcommand in [`commands`].

mod cli;
mod commands;
mod config;
mod ops;
mod run_ref;
mod settings;
mod telemetry;
mod workflow_file;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    let mut cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(err) = settings::layer(&mut cli.command, &matches) {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    telemetry::init(cli.command.log_format());
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
