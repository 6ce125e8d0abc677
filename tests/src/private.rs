//! Private PostgreSQL and RabbitMQ servers, for tests that restart them.
//!
//! The machine's own services are shared by everyone on it (other test
//! binaries, other people's daemons): a test that restarts them cuts every
//! one of those connections. A test that needs a restart starts a server of
//! its own instead — its own data directory in a temporary directory, its
//! own ports on 127.0.0.1, for RabbitMQ its own Erlang node name and cookie
//! — and restarts that. Dropping the handle stops the server and removes
//! the directory, also when the test panics (unwinding runs `Drop`); a test
//! process that is killed leaves them behind, and the next `start` of the
//! same kind removes what processes that are gone left (the directories
//! carry their creator's pid, as the stack's database names do).
//!
//! Every wait has a deadline and sleeps [`POLL`] between its probes, so a
//! slow machine makes a test slower, not flaky, and no probe spawns a
//! process in a tight loop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

mod cluster;

pub use cluster::PrivateRabbitCluster;

/// The pause between two probes of a wait: long enough that a wait costs
/// nothing next to the servers it waits for.
pub const POLL: Duration = Duration::from_millis(200);

/// How long a server may take to answer after a (re)start. RabbitMQ boots
/// in ~5 s on an idle 2-core machine; a loaded one takes several times that.
const STARTUP: Duration = Duration::from_secs(90);

/// A temporary directory named `<prefix><pid>-<random>`, removed on drop.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(prefix: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The leftovers of `<prefix><pid>-*` directories whose creating process is
/// gone; a live process's directories (maybe this one's) are not touched.
fn leftovers(prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid: u32 = name.strip_prefix(prefix)?.split_once('-')?.0.parse().ok()?;
            (!Path::new(&format!("/proc/{pid}")).exists()).then(|| entry.path())
        })
        .collect()
}

/// A TCP port on 127.0.0.1 that nothing listens on right now. The kernel
/// picks it; the short window until the server binds it is the price of
/// not hard-coding ports two test binaries could both choose.
fn free_port() -> anyhow::Result<u16> {
    Ok(free_ports::<1>()?[0])
}

/// `N` distinct free ports: each is held until all are chosen, so the
/// kernel cannot hand out one twice.
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
        *port = listener.local_addr()?.port();
        held.push(listener);
    }
    Ok(ports)
}

/// Whether something accepts connections on `host`:`port`.
fn answers(host: Ipv4Addr, port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((host, port)), Duration::from_secs(1)).is_ok()
}

/// A server certificate and its key (PEM files) for a private server,
/// which then accepts TLS connections only.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate (its chain, leaf first).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signed it (RabbitMQ wants it beside the certificate).
    pub ca: PathBuf,
}

/// How a private server is set up beyond the defaults (plain TCP on
/// 127.0.0.1 of this process's network namespace).
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Accept TLS connections only, with this certificate.
    pub tls: Option<ServerTls>,
    /// Run inside this network namespace (`ip netns`), listening on all of
    /// its addresses, and reached by the test at the address given.
    pub netns: Option<(String, Ipv4Addr)>,
}

impl ServerOptions {
    /// The address the test reaches the server at.
    fn host(&self) -> Ipv4Addr {
        self.netns.as_ref().map_or(Ipv4Addr::LOCALHOST, |(_, a)| *a)
    }

    /// The address the server listens on.
    fn listen(&self) -> &'static str {
        if self.netns.is_some() {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        }
    }

    /// `program`, run in the namespace if there is one.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        in_netns(self.netns.as_ref().map(|(n, _)| n.as_str()), program)
    }
}

/// `program`, run in the network namespace `netns` if given
/// (`ip netns exec` replaces itself with the program: same process).
pub fn in_netns(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Polls `ready` every [`POLL`] until it holds or `timeout` passed.
fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() >= deadline {
            bail!("{what} after {timeout:?}");
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// Runs a command to its end; an error names it with its stderr.
fn run(command: &mut Command) -> anyhow::Result<Output> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// A PostgreSQL server of the test's own: `initdb` with trust
/// authentication in a temporary directory, listening on 127.0.0.1 on a
/// free port (its socket in that directory, not in `/var/run`). Stopped and
/// removed on drop.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Whether commands run as the `postgres` OS user: PostgreSQL refuses
    /// to run as root.
    as_postgres: bool,
    options: ServerOptions,
    dir: TempDir,
}

impl PrivatePostgres {
    const PREFIX: &str = "weft-pg-";

    /// Creates the cluster and starts the server; returns once it accepts
    /// connections.
    ///
    /// # Errors
    /// If PostgreSQL's binaries are not installed (Debian's
    /// `/usr/lib/postgresql/<version>/bin`), or the server does not start.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(ServerOptions::default())
    }

    /// [`start`](Self::start) with TLS only (`ssl=on`, and `pg_hba.conf`
    /// accepting TCP connections over TLS only) and/or in a network
    /// namespace (listening on all its addresses, any client trusted).
    ///
    /// # Errors
    /// As [`start`](Self::start); also if the certificate cannot be copied.
    pub fn start_with(options: ServerOptions) -> anyhow::Result<Self> {
        let bin = postgres_bin()?;
        let as_postgres = std::fs::metadata("/proc/self")
            .context("reading this process's uid")?
            .uid()
            == 0;
        for stale in leftovers(Self::PREFIX) {
            // A server a killed test left running: stop it before its
            // directory goes, or it keeps its port and memory forever.
            let _ = postgres_command(&bin, "pg_ctl", as_postgres)
                .args(["stop", "-m", "immediate", "-D"])
                .arg(stale.join("data"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(stale);
        }
        let dir = TempDir::new(Self::PREFIX)?;
        if as_postgres {
            // The directory holds the data and the socket: the server's.
            run(Command::new("chown").arg("postgres:").arg(&dir.path))?;
        }
        let data = dir.path.join("data");
        run(postgres_command(&bin, "initdb", as_postgres)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .arg("-D")
            .arg(&data))
        .context("initdb")?;
        let hba = match (&options.tls, &options.netns) {
            (Some(tls), _) => {
                // The key must be the server's and private to it.
                for (from, to) in [(&tls.cert, "server.crt"), (&tls.key, "server.key")] {
                    let to = dir.path.join(to);
                    std::fs::copy(from, &to)
                        .with_context(|| format!("copying {}", from.display()))?;
                    std::fs::set_permissions(
                        &to,
                        std::os::unix::fs::PermissionsExt::from_mode(0o600),
                    )?;
                    if as_postgres {
                        run(Command::new("chown").arg("postgres:").arg(&to))?;
                    }
                }
                Some(
                    "local all all trust\nhostssl all all 0.0.0.0/0 trust\nhostssl all all ::/0 trust\n",
                )
            }
            (None, Some(_)) => Some("local all all trust\nhost all all 0.0.0.0/0 trust\n"),
            (None, None) => None,
        };
        if let Some(hba) = hba {
            // Truncating keeps the file's owner (the server's).
            std::fs::write(data.join("pg_hba.conf"), hba)?;
        }
        let server = Self {
            bin,
            data,
            port: free_port()?,
            as_postgres,
            options,
            dir,
        };
        server.pg_ctl_start()?;
        Ok(server)
    }

    /// The base URL (database `postgres`), for `StackOptions::database_url`.
    #[must_use]
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@{}:{}/postgres",
            self.options.host(),
            self.port
        )
    }

    /// The TCP port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Restarts the server (`pg_ctl restart -m fast`: every connection is
    /// cut, as when a production server restarts) and returns once it
    /// accepts connections again.
    ///
    /// # Errors
    /// If `pg_ctl` fails or the server does not come back.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop()?;
        self.pg_ctl_start()
    }

    /// Stops the server (`-m fast`: connections are cut, no new ones).
    ///
    /// # Errors
    /// If `pg_ctl` fails.
    pub fn stop(&self) -> anyhow::Result<()> {
        run(self
            .pg_ctl()
            .args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(&self.data))
        .map(drop)
        .context("stopping the private PostgreSQL")
    }

    /// Starts the stopped server again on the same port.
    ///
    /// # Errors
    /// If it does not start or answer within the deadline.
    pub fn start_again(&self) -> anyhow::Result<()> {
        self.pg_ctl_start()
    }

    fn pg_ctl(&self) -> Command {
        postgres_command_in(&self.options, &self.bin, "pg_ctl", self.as_postgres)
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        // No fsync: the data dies with the test anyway; a restart is still
        // a real shutdown checkpoint and crash-free recovery.
        let mut options = format!(
            "-p {} -k {} -c listen_addresses={} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path.display(),
            self.options.listen(),
        );
        if self.options.tls.is_some() {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                self.dir.path.display()
            ));
        }
        run(self
            .pg_ctl()
            .args([
                "start",
                "-w",
                "-t",
                &STARTUP.as_secs().to_string(),
                "-o",
                &options,
                "-l",
            ])
            .arg(self.dir.path.join("log"))
            .arg("-D")
            .arg(&self.data)
            .stdout(Stdio::null()))
        .with_context(|| {
            format!(
                "starting the private PostgreSQL; its log: {}",
                std::fs::read_to_string(self.dir.path.join("log")).unwrap_or_default()
            )
        })?;
        // `pg_ctl -w` waited for the socket; the test connects over TCP.
        let host = self.options.host();
        wait_until(
            "the private PostgreSQL does not answer on TCP",
            STARTUP,
            || answers(host, self.port),
        )
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Immediate: nothing in it is kept, so there is nothing to flush.
        let _ = self
            .pg_ctl()
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .with_context(|| format!("no PostgreSQL server binaries in {} (install `postgresql`; scripts/services.sh does)", root.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .with_context(|| format!("no <version>/bin/initdb under {}", root.display()))
}

/// `bin/<tool>`, as the `postgres` OS user when `as_postgres`.
fn postgres_command(bin: &Path, tool: &str, as_postgres: bool) -> Command {
    postgres_command_in(&ServerOptions::default(), bin, tool, as_postgres)
}

/// [`postgres_command`] in the options' network namespace, if any.
fn postgres_command_in(
    options: &ServerOptions,
    bin: &Path,
    tool: &str,
    as_postgres: bool,
) -> Command {
    if as_postgres {
        let mut command = options.command("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        command
    } else {
        options.command(bin.join(tool))
    }
}

/// A RabbitMQ node of the test's own: node name `weft-test-<pid>-<n>@localhost`,
/// its own AMQP and distribution ports on 127.0.0.1, its database, logs,
/// configuration, plugin list (none: no management listener) and Erlang
/// cookie (`HOME`) in a temporary directory. Runs as a child process;
/// stopped and removed on drop.
#[derive(Debug)]
pub struct PrivateRabbit {
    node: String,
    port: u16,
    child: Option<Child>,
    options: ServerOptions,
    dir: TempDir,
}

/// RabbitMQ's own scripts, not `/usr/sbin`'s wrappers: those switch to the
/// `rabbitmq` user with a login shell, which drops our environment.
const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";

impl PrivateRabbit {
    const PREFIX: &str = "weft-rabbit-";

    /// Starts the node; returns once it accepts AMQP connections.
    ///
    /// # Errors
    /// If RabbitMQ is not installed or the node does not start.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(ServerOptions::default())
    }

    /// [`start`](Self::start) with a TLS listener only (no plain AMQP
    /// port) and/or in a network namespace (listening on all its
    /// addresses, `guest` allowed from any of them).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_with(options: ServerOptions) -> anyhow::Result<Self> {
        if !Path::new(RABBIT_BIN).join("rabbitmq-server").exists() {
            bail!(
                "no {RABBIT_BIN}/rabbitmq-server (install `rabbitmq-server`; scripts/services.sh does)"
            );
        }
        for stale in leftovers(Self::PREFIX) {
            if let Ok(node) = std::fs::read_to_string(stale.join("nodename")) {
                let _ = Self::ctl_in(&ServerOptions::default(), &stale, node.trim())
                    .arg("stop")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = std::fs::remove_dir_all(stale);
        }
        let dir = TempDir::new(Self::PREFIX)?;
        let node = format!(
            "weft-test-{}-{}@localhost",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let [port, dist_port] = free_ports()?;
        let path = |name: &str| dir.path.join(name);
        std::fs::write(path("nodename"), &node)?;
        // `guest` may connect from 127.0.0.1 by default: nothing else is
        // needed for the tests on this host.
        let listen = options.listen();
        let mut conf = match &options.tls {
            None => format!("listeners.tcp.1 = {listen}:{port}\n"),
            Some(tls) => format!(
                "listeners.tcp = none\n\
                 listeners.ssl.1 = {listen}:{port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                tls.ca.display(),
                tls.cert.display(),
                tls.key.display()
            ),
        };
        if options.netns.is_some() {
            conf.push_str("loopback_users = none\n");
        }
        std::fs::write(path("rabbitmq.conf"), conf)?;
        std::fs::write(path("enabled_plugins"), "[].\n")?;
        // Instead of /etc/rabbitmq/rabbitmq-env.conf, which names the
        // machine's node.
        std::fs::write(path("rabbitmq-env.conf"), "")?;
        let log = std::fs::File::create(path("console.log"))?;
        let mut server = options.command(Path::new(RABBIT_BIN).join("rabbitmq-server"));
        if options.tls.is_none() && options.netns.is_none() {
            // The configuration's listener, said again where the start
            // script looks (these would add a plain listener on loopback).
            server
                .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                .env("RABBITMQ_NODE_PORT", port.to_string());
        }
        let child = server
            .envs(Self::env(&dir.path))
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", path("plugins"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            .current_dir(&dir.path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting rabbitmq-server")?;
        let mut rabbit = Self {
            node,
            port,
            child: Some(child),
            options,
            dir,
        };
        rabbit.wait_for_amqp()?;
        Ok(rabbit)
    }

    /// The AMQP URL of the node's default vhost, for
    /// `StackOptions::amqp_url`.
    #[must_use]
    pub fn url(&self) -> String {
        format!(
            "amqp://guest:guest@{}:{}/%2f",
            self.options.host(),
            self.port
        )
    }

    /// The port of its AMQP listener (TLS with [`ServerOptions::tls`]).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the RabbitMQ application (`rabbitmqctl stop_app`): every
    /// connection is closed and the port stops answering; the Erlang node
    /// and the durable queues stay.
    ///
    /// # Errors
    /// If `rabbitmqctl` fails.
    pub fn stop_app(&self) -> anyhow::Result<()> {
        run(self.ctl().arg("stop_app")).map(drop)
    }

    /// Starts the application again; returns once it accepts AMQP
    /// connections.
    ///
    /// # Errors
    /// If `rabbitmqctl` fails or the port does not answer in time.
    pub fn start_app(&mut self) -> anyhow::Result<()> {
        run(self.ctl().arg("start_app"))?;
        self.wait_for_amqp()
    }

    /// Sets RabbitMQ's `max_message_size` (bytes) on the running node:
    /// channels opened from then on refuse a bigger message with 406
    /// PRECONDITION_FAILED.
    ///
    /// # Errors
    /// If `rabbitmqctl` fails.
    pub fn set_max_message_size(&self, bytes: usize) -> anyhow::Result<()> {
        let set = format!("application:set_env(rabbit, max_message_size, {bytes}).");
        run(self.ctl().args(["eval", &set])).map(drop)
    }

    /// `rabbitmqctl -n <node>` with the node's cookie.
    fn ctl(&self) -> Command {
        Self::ctl_in(&self.options, &self.dir.path, &self.node)
    }

    fn ctl_in(options: &ServerOptions, dir: &Path, node: &str) -> Command {
        let mut command = options.command(Path::new(RABBIT_BIN).join("rabbitmqctl"));
        command
            .envs(Self::env(dir))
            .args(["-q", "-n", node])
            .current_dir(dir);
        command
    }

    /// What the server and `rabbitmqctl` share: the Erlang cookie lives in
    /// `$HOME/.erlang.cookie` (created by the node's first start), and the
    /// machine's `rabbitmq-env.conf` is not read.
    fn env(dir: &Path) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("HOME", dir.to_path_buf()),
            ("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf")),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
        ]
    }

    /// Polls the AMQP port: the listener opens last in RabbitMQ's boot, so
    /// its answer means the broker is ready. A TCP probe spawns nothing.
    fn wait_for_amqp(&mut self) -> anyhow::Result<()> {
        let (host, port) = (self.options.host(), self.port);
        let mut exited = None;
        let child = &mut self.child;
        let waited = wait_until("the private RabbitMQ does not answer", STARTUP, || {
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited = Some(status);
                return true;
            }
            answers(host, port)
        });
        if let Some(status) = exited {
            bail!(
                "the private RabbitMQ exited ({status}): {}",
                std::fs::read_to_string(self.dir.path.join("console.log")).unwrap_or_default()
            );
        }
        waited.with_context(|| {
            format!(
                "node {}; its console: {}",
                self.node,
                std::fs::read_to_string(self.dir.path.join("console.log")).unwrap_or_default()
            )
        })
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        // `rabbitmqctl stop` halts the Erlang VM; the child (the start
        // script) then exits. If it does not within the deadline, the VM's
        // own pid (from its pid file) is killed: the script is not the VM.
        let _ = self
            .ctl()
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let exited = wait_until("", Duration::from_secs(30), || {
                child.try_wait().ok().flatten().is_some()
            });
            if exited.is_err() {
                if let Some(pid) = std::fs::read_to_string(self.dir.path.join("pid"))
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok())
                {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
