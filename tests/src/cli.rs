//! The `weft` binary driven as a user drives it, for the tests of the
//! CLI: [`Cli`] runs commands against a stack's database and broker,
//! [`Server`] is a `weft server` process for the remote mode.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Stack;
use crate::process::{Daemon, weft_binary};

/// Runs `weft` in the repository (for `workflows/`), with the stack's
/// database and broker URLs set and no server or token from the
/// environment — remote commands ignore the database's URL when
/// `--server` is given, which is how a direct and a remote run of one
/// command compare.
#[derive(Debug, Clone, Copy)]
pub struct Cli<'a> {
    /// The stack the commands act on.
    pub stack: &'a Stack,
}

impl<'a> Cli<'a> {
    /// Commands on `stack`.
    #[must_use]
    pub fn new(stack: &'a Stack) -> Self {
        Self { stack }
    }

    /// `weft ARGS`.
    ///
    /// # Panics
    /// If the binary cannot be found or started.
    #[must_use]
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(weft_binary().expect("weft binary"))
            .args(args)
            .env("WEFT_DATABASE_URL", &self.stack.database_url)
            .env("WEFT_AMQP_URL", &self.stack.amqp_url)
            .env_remove("WEFT_SERVER_URL")
            .env_remove("WEFT_TOKEN")
            .env("RUST_LOG", "error")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .output()
            .expect("weft runs")
    }

    /// `weft ARGS --server URL --token TOKEN`.
    #[must_use]
    pub fn remote(&self, server: &Server, token: &str, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", &server.url, "--token", token]);
        self.run(&all)
    }

    /// Stdout of a command that must succeed.
    ///
    /// # Panics
    /// If it fails (with its stderr).
    #[must_use]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
        stdout(&out)
    }

    /// A command's stdout as JSON, and the command's output.
    ///
    /// # Panics
    /// If it printed no JSON.
    #[must_use]
    pub fn json(&self, args: &[&str]) -> (Value, Output) {
        let out = self.run(args);
        let value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)));
        (value, out)
    }

    /// Makes a token of `role` (named after it) with `weft token create`;
    /// its secret.
    #[must_use]
    pub fn token(&self, role: &str) -> String {
        self.ok(&["token", "create", "--role", role, "--name", role])
            .trim()
            .to_owned()
    }
}

/// A `weft server` process on a free loopback port; stopped when dropped.
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _daemon: Daemon,
}

impl Server {
    /// Starts `weft server` (with `--dev` if `dev`) on `stack`'s database
    /// and waits until it listens.
    ///
    /// # Panics
    /// If it does not listen within 30 s.
    #[must_use]
    pub fn start(stack: &Stack, dev: bool) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec!["server", "--addr", addr.as_str()];
        if dev {
            args.push("--dev");
        }
        let daemon = Daemon::start(
            "server",
            &args,
            &[("WEFT_DATABASE_URL", stack.database_url.as_str())],
        )
        .expect("weft server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "weft server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            url: format!("http://{addr}"),
            _daemon: daemon,
        }
    }
}

/// A loopback port free now.
///
/// # Panics
/// If none can be bound.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A command's stdout, as text.
#[must_use]
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stderr, as text.
#[must_use]
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The stdout of a command that must have succeeded.
///
/// # Panics
/// If it failed (with its exit status, stdout and stderr).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// The stderr of a command that must have failed.
///
/// # Panics
/// If it succeeded (with its stdout).
pub fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", stdout(out));
    stderr(out)
}
