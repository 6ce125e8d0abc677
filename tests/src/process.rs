//! Weft daemons as separate OS processes, for tests that kill them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

/// The `weft` binary of this build (`target/<profile>/weft`), brought up
/// to date once per test process: `cargo test` builds the test harness of
/// each binary target, not the binary itself, so a binary left by an
/// earlier build could otherwise run older code than the tests.
///
/// # Errors
/// If it cannot be found or built.
pub fn weft_binary() -> anyhow::Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build_weft().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_weft() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test> → target/<profile>/weft
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test executable is not under target/<profile>/deps")?;
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args(["build", "--quiet", "-p", "weft-cli", "--bin", "weft"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().context("building the weft binary")?;
    if !status.success() {
        bail!("building the weft binary failed");
    }
    Ok(profile_dir.join("weft"))
}

/// A daemon process that is killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Daemon {
    /// What it was started as, for messages.
    pub name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The network namespace it runs in (`ip netns exec`), if not ours.
    netns: Option<String>,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `weft <args…>` with the given environment.
    ///
    /// # Errors
    /// If the process cannot be spawned.
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_in(None, name, args, env)
    }

    /// [`start`](Self::start) in the network namespace `netns`.
    ///
    /// # Errors
    /// If the process cannot be spawned.
    pub fn start_in(
        netns: Option<&str>,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut daemon = Self {
            name: name.to_owned(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            netns: netns.map(str::to_owned),
            child: None,
        };
        daemon.restart()?;
        Ok(daemon)
    }

    /// (Re)starts the process if it is not running.
    ///
    /// # Errors
    /// If the process cannot be spawned.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::env::var("WEFT_TEST_LOG").ok();
        let mut command = crate::private::in_netns(self.netns.as_deref(), weft_binary()?);
        // `weft dev` serves its UI on a free port, not on 8080 (which
        // another test's — or the user's — `weft dev` may hold); a test
        // that needs the address sets WEFT_SERVER_ADDR itself.
        command
            .args(&self.args)
            .env("WEFT_SERVER_ADDR", "127.0.0.1:0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        match &log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        };
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("starting {}", self.name))?,
        );
        Ok(())
    }

    /// Kills the process with SIGKILL, at whatever point it is.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop gracefully (SIGTERM) and waits for it.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop gracefully (SIGTERM) and waits at most
    /// `timeout` for it; then kills it (SIGKILL). Whether it stopped by
    /// itself.
    pub fn terminate_within(&mut self, timeout: std::time::Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`, …) to the process.
    pub fn signal(&self, name: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([format!("-{name}"), pid.to_string()])
                .status();
        }
    }

    /// Whether the process is running (as far as this handle knows).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, if running.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
