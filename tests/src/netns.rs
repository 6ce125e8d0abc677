//! Hosts on one machine: network namespaces joined by veth pairs, for
//! tests of real network faults (a link cut mid-action, then restored).
//!
//! A [`Lab`] is a hub namespace (the services run there) with a link to
//! this process's namespace (the test reaches the services over it) and
//! one link per [`Lab::host`] (a namespace of its own, its default route
//! through the hub, which forwards). Every address is in one /24 of
//! 10.0.0.0/8 that no interface of this machine uses. Cutting a host's
//! link sets the hub's end down: the host's packets go nowhere, and its
//! TCP connections see silence, not a reset — as when a cable or a switch
//! port dies.
//!
//! Namespaces' names carry this process's id (`wl<pid>x…`): dropping the lab kills what
//! still runs in its namespaces and deletes them (their veth ends go with
//! them), also when the test panics; a lab a killed test left behind is
//! removed by the next [`Lab::new`].

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Runs `ip ARGS`; an error names the command and its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Why namespaces cannot be made here, or `None` if they can: the test
/// is then skipped with that reason.
#[must_use]
pub fn unavailable() -> Option<String> {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
        });
    if euid.as_deref() != Some("0") {
        return Some("not running as root (`ip netns add` needs CAP_SYS_ADMIN)".to_owned());
    }
    if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Some("no `ip` command (install iproute2)".to_owned());
    }
    let probe = format!("wl{}probe", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e:#}"));
    }
    let _ = ip(&["netns", "del", &probe]);
    None
}

/// A namespace of the lab; the processes still in it are killed and it is
/// deleted on drop.
#[derive(Debug)]
struct Namespace {
    name: String,
}

impl Namespace {
    fn new(name: String) -> anyhow::Result<Self> {
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        remove_namespace(&self.name);
    }
}

/// Kills what runs in `name` (what the lab's servers left: an `epmd`)
/// by pid, then deletes it.
fn remove_namespace(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = ip(&["netns", "del", name]);
}

/// A host of the lab: its namespace, its address, and its link's end in
/// the hub.
#[derive(Debug)]
pub struct Host {
    /// The namespace to run its processes in (`ip netns exec`).
    pub netns: String,
    /// Its address.
    pub addr: Ipv4Addr,
    hub_end: String,
    _ns: Namespace,
}

/// The hub and its hosts; see the module docs.
#[derive(Debug)]
pub struct Lab {
    /// Namespaces are named `<prefix><role>`.
    prefix: String,
    /// Interfaces (15 bytes at most) are named `w<tag>…`.
    tag: String,
    subnet: [u8; 3],
    links: u8,
    /// This namespace's end of its link to the hub, deleted on drop.
    root_end: String,
    hub: Namespace,
}

impl Lab {
    /// Makes the hub and its link to this namespace.
    ///
    /// # Errors
    /// If a namespace or link cannot be made.
    pub fn new() -> anyhow::Result<Self> {
        remove_leftovers();
        let pid = std::process::id();
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let prefix = format!("wl{pid}x{tag}");
        let subnet = free_subnet()?;
        let hub = Namespace::new(format!("{prefix}hub"))?;
        ip(&[
            "netns",
            "exec",
            &hub.name,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        let mut lab = Self {
            root_end: format!("w{tag}r"),
            prefix,
            tag: tag.to_owned(),
            subnet,
            links: 0,
            hub,
        };
        lab.link(None)?;
        // This namespace reaches every host through the hub.
        let [a, b, c] = lab.subnet;
        ip(&[
            "route",
            "add",
            &format!("{a}.{b}.{c}.0/24"),
            "via",
            &lab.hub_addr().to_string(),
        ])?;
        Ok(lab)
    }

    /// The hub's address on this namespace's link: where the test reaches
    /// the services, and (through their routes) where every host does.
    #[must_use]
    pub fn hub_addr(&self) -> Ipv4Addr {
        self.addr(0, 1)
    }

    /// The hub's namespace, to run the services in.
    #[must_use]
    pub fn hub_netns(&self) -> &str {
        &self.hub.name
    }

    /// A new host named `role`, linked to the hub.
    ///
    /// # Errors
    /// If its namespace or link cannot be made.
    pub fn host(&mut self, role: &str) -> anyhow::Result<Host> {
        let ns = Namespace::new(format!("{}{role}", self.prefix))?;
        let (hub_end, addr) = self.link(Some(&ns.name))?;
        let gateway = self.addr(self.links - 1, 1).to_string();
        ip(&["-n", &ns.name, "route", "add", "default", "via", &gateway])?;
        Ok(Host {
            netns: ns.name.clone(),
            addr,
            hub_end,
            _ns: ns,
        })
    }

    /// Cuts `host` off: the hub's end of its link goes down.
    ///
    /// # Errors
    /// If `ip` fails.
    pub fn cut(&self, host: &Host) -> anyhow::Result<()> {
        ip(&["-n", &self.hub.name, "link", "set", &host.hub_end, "down"])
    }

    /// Restores `host`'s link.
    ///
    /// # Errors
    /// If `ip` fails.
    pub fn restore(&self, host: &Host) -> anyhow::Result<()> {
        ip(&["-n", &self.hub.name, "link", "set", &host.hub_end, "up"])
    }

    /// Address `.{4n + last}` of the lab's /24: link `n` is a /30, the
    /// hub `.1` in it, the other end `.2`.
    fn addr(&self, link: u8, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, link * 4 + last)
    }

    /// A veth pair from the hub to `netns` (this namespace if `None`):
    /// returns the hub's end and the other end's address.
    fn link(&mut self, netns: Option<&str>) -> anyhow::Result<(String, Ipv4Addr)> {
        let n = self.links;
        if n >= 63 {
            bail!("a lab has at most 63 links");
        }
        self.links += 1;
        let hub_end = format!("w{}h{n}", self.tag);
        let far_end = match netns {
            Some(_) => format!("w{}f{n}", self.tag),
            None => self.root_end.clone(),
        };
        check_name(&hub_end)?;
        check_name(&far_end)?;
        ip(&[
            "link", "add", &hub_end, "type", "veth", "peer", "name", &far_end,
        ])?;
        ip(&["link", "set", &hub_end, "netns", &self.hub.name])?;
        if let Some(ns) = netns {
            ip(&["link", "set", &far_end, "netns", ns])?;
        }
        let hub_addr = format!("{}/30", self.addr(n, 1));
        let far_addr = self.addr(n, 2);
        ip(&[
            "-n",
            &self.hub.name,
            "addr",
            "add",
            &hub_addr,
            "dev",
            &hub_end,
        ])?;
        ip(&["-n", &self.hub.name, "link", "set", &hub_end, "up"])?;
        let far = |args: &[&str]| match netns {
            Some(ns) => {
                let mut all = vec!["-n", ns];
                all.extend_from_slice(args);
                ip(&all)
            }
            None => ip(args),
        };
        far(&["addr", "add", &format!("{far_addr}/30"), "dev", &far_end])?;
        far(&["link", "set", &far_end, "up"])?;
        Ok((hub_end, far_addr))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The hosts' namespaces go with their `Host`s; this end, its route
        // and the hub's end go with the hub (a veth pair dies with either
        // end), deleted explicitly in case the hub lingers.
        let _ = ip(&["link", "del", &self.root_end]);
    }
}

/// Interface names are at most 15 bytes.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.len() > 15 {
        bail!("interface name {name} is longer than 15 bytes");
    }
    Ok(())
}

/// A /24 of 10.0.0.0/8 that no interface or route of this namespace uses.
fn free_subnet() -> anyhow::Result<[u8; 3]> {
    let used = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-4", "route", "show", "table", "all"])
            .output()
            .context("listing routes")?
            .stdout,
    )
    .into_owned()
        + &String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-4", "addr"])
                .output()
                .context("listing addresses")?
                .stdout,
        );
    for _ in 0..64 {
        let r = uuid::Uuid::new_v4().as_u128();
        let (b, c) = (200 + (r % 50) as u8, ((r >> 8) % 256) as u8);
        if !used.contains(&format!("10.{b}.{c}.")) {
            return Ok([10, b, c]);
        }
    }
    bail!("no free /24 in 10.200.0.0/16 after 64 tries")
}

/// Removes the namespaces (and their processes) of labs whose process is
/// gone.
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("wl") else {
            continue;
        };
        // `wl<pid>x<tag><role>`; names that do not parse are not ours.
        let Some(pid) = rest
            .split_once('x')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(name);
        }
    }
}
