//! `weft` — the command-line interface to Weft.
//!
//! This file only parses flags, installs tracing and hands over to the
//! subcommand in [`commands`].

/// `println!` that returns the write's error instead of panicking on it:
/// with `?`, a closed pipe (`weft status ID | head`) ends the command
/// quietly (see [`main`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod cli;
mod commands;
mod config;
mod ops;
mod remote;
mod run_ref;
mod settings;
mod telemetry;
mod workflow_file;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

/// mimalloc, not the system allocator: glibc's keeps memory a burst freed
/// (a wide fan-out's start) in the arena of the runtime thread that freed
/// it, where a later burst on another thread (the fan-out's join) cannot
/// reuse it, so a daemon's memory grew by every burst it ever had.
/// mimalloc reuses and returns it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        // The reader went away (`| head`): nothing more to say, to anyone.
        Err(err) if is_broken_pipe(&err) => ExitCode::from(BROKEN_PIPE),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The exit status of a command whose output pipe closed early: 141, what
/// a shell reports for a program killed by SIGPIPE, so `set -o pipefail`
/// sees `weft` like any other Unix tool.
const BROKEN_PIPE: u8 = 141;

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
