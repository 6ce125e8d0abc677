//! A private cluster of three RabbitMQ nodes (see [`PrivateRabbitCluster`]),
//! built from the single node's pieces in the parent module.

use super::*;

/// A private cluster of three RabbitMQ nodes on this machine, for the
/// tests of quorum queues and fail-over: node names
/// `weft-cluster-<pid>-<id>-<n>@localhost`, each with its own AMQP and
/// distribution ports (free ones, never the machine's 5672/25672), data
/// directory, logs and configuration; one Erlang cookie shared by the nodes
/// and `rabbitmqctl` (`HOME` is the cluster's directory). Nodes 2 and 3 join
/// node 1 with `rabbitmqctl join_cluster`. Dropping it stops every node and
/// removes the directory; a test process that was killed leaves them, and
/// the next cluster's start stops and removes what processes that are gone
/// left.
#[derive(Debug)]
pub struct PrivateRabbitCluster {
    nodes: Vec<ClusterNode>,
    dir: TempDir,
}

/// One node of a [`PrivateRabbitCluster`].
#[derive(Debug)]
struct ClusterNode {
    name: String,
    port: u16,
    dist_port: u16,
    /// Its own files: configuration, database, logs, pid file.
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRabbitCluster {
    const PREFIX: &str = "weft-cluster-";

    /// Starts three nodes, clusters them, and returns once each accepts
    /// AMQP connections as a member of the cluster.
    ///
    /// # Errors
    /// If RabbitMQ is not installed, a node does not start, or joining
    /// fails.
    pub fn start() -> anyhow::Result<Self> {
        if !Path::new(RABBIT_BIN).join("rabbitmq-server").exists() {
            bail!(
                "no {RABBIT_BIN}/rabbitmq-server (install `rabbitmq-server`; scripts/services.sh does)"
            );
        }
        for stale in leftovers(Self::PREFIX) {
            for node in std::fs::read_dir(&stale).into_iter().flatten().flatten() {
                if let Ok(name) = std::fs::read_to_string(node.path().join("nodename")) {
                    let _ = PrivateRabbit::ctl_in(&ServerOptions::default(), &stale, name.trim())
                        .arg("stop")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
            let _ = std::fs::remove_dir_all(stale);
        }
        let dir = TempDir::new(Self::PREFIX)?;
        // One cookie for the three nodes and for rabbitmqctl, which all
        // read `$HOME/.erlang.cookie`: owner-only, or Erlang refuses it.
        let cookie = dir.path.join(".erlang.cookie");
        std::fs::write(&cookie, uuid::Uuid::new_v4().simple().to_string())?;
        std::fs::set_permissions(&cookie, std::os::unix::fs::PermissionsExt::from_mode(0o400))?;
        std::fs::write(dir.path.join("rabbitmq-env.conf"), "")?;
        let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let ports = free_ports::<6>()?;
        let mut nodes = Vec::with_capacity(3);
        for n in 0..3 {
            let node_dir = dir.path.join(format!("node{}", n + 1));
            std::fs::create_dir(&node_dir)?;
            let name = format!(
                "weft-cluster-{}-{id}-{}@localhost",
                std::process::id(),
                n + 1
            );
            std::fs::write(node_dir.join("nodename"), &name)?;
            let port = ports[2 * n];
            std::fs::write(
                node_dir.join("rabbitmq.conf"),
                // Quorum queues get their leader on the node their
                // declaring client is connected to (3.10's default, said
                // explicitly): a test puts the leaders on one node so.
                format!(
                    "listeners.tcp.1 = 127.0.0.1:{port}\nqueue_leader_locator = client-local\n"
                ),
            )?;
            std::fs::write(node_dir.join("enabled_plugins"), "[].\n")?;
            nodes.push(ClusterNode {
                name,
                port,
                dist_port: ports[2 * n + 1],
                dir: node_dir,
                child: None,
            });
        }
        let mut cluster = Self { nodes, dir };
        // Booting all three at once: each waits for its port below.
        for n in 0..3 {
            cluster.spawn(n)?;
        }
        for n in 0..3 {
            cluster.wait_for_amqp(n)?;
        }
        let first = cluster.nodes[0].name.clone();
        for n in 1..3 {
            cluster.ctl(n, &["stop_app"])?;
            cluster.ctl(n, &["join_cluster", &first])?;
            cluster.ctl(n, &["start_app"])?;
            cluster.wait_for_amqp(n)?;
        }
        let status = cluster.ctl(0, &["cluster_status", "--formatter", "json"])?;
        let running = String::from_utf8_lossy(&status.stdout);
        for node in &cluster.nodes {
            if !running.contains(&node.name) {
                bail!("node {} is not in the cluster: {running}", node.name);
            }
        }
        Ok(cluster)
    }

    /// The AMQP URL of node `n`'s (0-based) default vhost.
    #[must_use]
    pub fn url(&self, n: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.nodes[n].port)
    }

    /// Every node's URL, comma-separated, starting with node `first`.
    #[must_use]
    pub fn urls_from(&self, first: usize) -> String {
        (0..self.nodes.len())
            .map(|i| self.url((first + i) % self.nodes.len()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `n`'s Erlang node name.
    #[must_use]
    pub fn node_name(&self, n: usize) -> &str {
        &self.nodes[n].name
    }

    /// Which node (0-based) `name` is, if it is one of this cluster's.
    #[must_use]
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The leader of each quorum queue of the default vhost, by queue name
    /// (`rabbitmqctl list_queues name leader`, asked of node `ask`).
    ///
    /// # Errors
    /// If `rabbitmqctl` fails.
    pub fn leaders(
        &self,
        ask: usize,
    ) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        let out = self.ctl(
            ask,
            &[
                "list_queues",
                "--no-table-headers",
                "name",
                "type",
                "leader",
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut cols = l.split('\t');
                let (name, kind, leader) = (cols.next()?, cols.next()?, cols.next()?);
                (kind.trim() == "quorum").then(|| (name.to_owned(), leader.trim().to_owned()))
            })
            .collect())
    }

    /// The names of the client connections the cluster has (asked of node
    /// `ask`), e.g. `weft-executor` once per executor.
    ///
    /// # Errors
    /// If `rabbitmqctl` fails.
    pub fn connection_names(&self, ask: usize) -> anyhow::Result<Vec<String>> {
        let out = self.ctl(
            ask,
            &[
                "list_connections",
                "--no-table-headers",
                "client_properties",
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                // …,{"connection_name","weft-executor"},…
                const KEY: &str = "{\"connection_name\",\"";
                let rest = &l[l.find(KEY)? + KEY.len()..];
                Some(rest.split('"').next()?.to_owned())
            })
            .collect())
    }

    /// SIGKILLs node `n`'s Erlang VM, as a machine crash would end it: no
    /// goodbye to its peers or its clients. Returns once it is gone.
    ///
    /// # Errors
    /// If its pid is unknown or it does not die.
    pub fn kill(&mut self, n: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[n];
        let pid = std::fs::read_to_string(node.dir.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .with_context(|| format!("node {}'s pid file", node.name))?;
        run(Command::new("kill").args(["-KILL", &pid.to_string()]))?;
        if let Some(mut child) = node.child.take() {
            let _ = child.wait();
        }
        wait_until(
            "the killed node's VM is still there",
            Duration::from_secs(30),
            || !Path::new(&format!("/proc/{pid}")).exists(),
        )?;
        let _ = std::fs::remove_file(node.dir.join("pid"));
        Ok(())
    }

    /// Starts node `n` again after [`kill`](Self::kill) (it rejoins the
    /// cluster from its data directory); returns once it accepts AMQP
    /// connections.
    ///
    /// # Errors
    /// If it does not come back.
    pub fn restart(&mut self, n: usize) -> anyhow::Result<()> {
        self.spawn(n)?;
        self.wait_for_amqp(n)
    }

    fn spawn(&mut self, n: usize) -> anyhow::Result<()> {
        let home = self.dir.path.clone();
        let node = &mut self.nodes[n];
        let path = |name: &str| node.dir.join(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path("console.log"))?;
        let child = Command::new(Path::new(RABBIT_BIN).join("rabbitmq-server"))
            .envs(PrivateRabbit::env(&home))
            .env("RABBITMQ_NODENAME", &node.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", node.port.to_string())
            .env("RABBITMQ_DIST_PORT", node.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", path("plugins"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            // One scheduler each, and no busy-waiting: three nodes share
            // a small machine with the test's daemons.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none",
            )
            .current_dir(&node.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {}", node.name))?;
        node.child = Some(child);
        Ok(())
    }

    /// `rabbitmqctl -q -n <node n> ARGS` with the cluster's cookie.
    fn ctl(&self, n: usize, args: &[&str]) -> anyhow::Result<Output> {
        run(PrivateRabbit::ctl_in(
            &ServerOptions::default(),
            &self.dir.path,
            &self.nodes[n].name,
        )
        .args(args))
        .with_context(|| format!("rabbitmqctl {} on node {}", args.join(" "), n + 1))
    }

    fn wait_for_amqp(&mut self, n: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[n];
        let port = node.port;
        let mut exited = None;
        let child = &mut node.child;
        let waited = wait_until("a cluster node does not answer", STARTUP, || {
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited = Some(status);
                return true;
            }
            answers(Ipv4Addr::LOCALHOST, port)
        });
        let console = || std::fs::read_to_string(node.dir.join("console.log")).unwrap_or_default();
        if let Some(status) = exited {
            bail!(
                "cluster node {} exited ({status}): {}",
                node.name,
                console()
            );
        }
        waited.with_context(|| format!("node {}; its console: {}", node.name, console()))
    }
}

impl Drop for PrivateRabbitCluster {
    fn drop(&mut self) {
        for n in 0..self.nodes.len() {
            let _ = PrivateRabbit::ctl_in(
                &ServerOptions::default(),
                &self.dir.path,
                &self.nodes[n].name,
            )
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let exited = wait_until("", Duration::from_secs(30), || {
                    child.try_wait().ok().flatten().is_some()
                });
                if exited.is_err() {
                    if let Some(pid) = std::fs::read_to_string(node.dir.join("pid"))
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
}
