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

/// mimalloc, not the system allocator: glibc's keeps memory a burst freed
/// (a wide fan-out's start) in the arena of the runtime thread that freed
/// it, where a later burst on another thread (the fan-out's join) cannot
/// reuse it, so a daemon's memory grew by every burst it ever had.
/// mimalloc reuses and returns it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    telemetry::init(cli.global.log_format, cli.command.is_daemon());
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
