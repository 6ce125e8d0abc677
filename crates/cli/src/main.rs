//! `weft` — the command-line interface to Weft.
//!
//! This file only parses flags, installs tracing and hands over to the
//! subcommand in [`commands`].

mod cli;
mod commands;
mod config;
mod ops;
mod telemetry;
mod workflow_file;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    telemetry::init(cli.command.log_format());
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
