//! A measured fleet: executor and worker processes on a stack, with a
//! thread sampling their resident memory (the benchmarks' peaks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::net::SocketAddr;

use crate::Stack;
use crate::process::Daemon;
use crate::scrape::Histograms;

/// Peak resident memory of each kind of daemon, in MB.
#[derive(Debug, Default, Clone, Copy)]
pub struct Peaks {
    /// The largest executor's.
    pub executor_mb: f64,
    /// The largest worker's.
    pub worker_mb: f64,
}

/// Executor and worker processes, with a thread sampling their memory.
#[derive(Debug)]
pub struct Daemons {
    executors: Vec<Daemon>,
    workers: Vec<Daemon>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<Peaks>>,
    /// Each daemon's `/metrics` endpoint.
    metrics: Vec<SocketAddr>,
}

impl Daemons {
    /// Starts `executors` and `workers` (64 actions at once each) on the
    /// stack's database and vhost, each serving `/metrics` on a free port,
    /// and samples their memory every 20 ms.
    ///
    /// # Errors
    /// If a daemon does not start.
    pub fn start(stack: &Stack, executors: usize, workers: usize) -> anyhow::Result<Self> {
        let env = [
            ("WEFT_DATABASE_URL", stack.database_url.as_str()),
            ("WEFT_AMQP_URL", stack.amqp_url.as_str()),
        ];
        let mut metrics = Vec::new();
        let mut start = |name: String, args: &[&str]| -> anyhow::Result<Daemon> {
            let addr = free_local_addr()?;
            metrics.push(addr);
            let addr = addr.to_string();
            let mut args = args.to_vec();
            args.extend(["--metrics-addr", &addr]);
            Daemon::start(&name, &args, &env)
        };
        let executors = (0..executors)
            .map(|i| start(format!("executor-{i}"), &["executor"]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let workers = (0..workers)
            .map(|i| start(format!("worker-{i}"), &["worker", "--concurrency", "64"]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let pids = |ds: &[Daemon]| ds.iter().filter_map(Daemon::pid).collect::<Vec<u32>>();
        let (executor_pids, worker_pids) = (pids(&executors), pids(&workers));
        let stop = Arc::new(AtomicBool::new(false));
        let sampling = Arc::clone(&stop);
        let sampler = std::thread::spawn(move || {
            let mut peaks = Peaks::default();
            while !sampling.load(Ordering::Relaxed) {
                for pid in &executor_pids {
                    peaks.executor_mb = peaks.executor_mb.max(rss_mb(*pid));
                }
                for pid in &worker_pids {
                    peaks.worker_mb = peaks.worker_mb.max(rss_mb(*pid));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peaks
        });
        Ok(Self {
            executors,
            workers,
            stop,
            sampler: Some(sampler),
            metrics,
        })
    }

    /// The latency histograms of every daemon, summed.
    ///
    /// # Errors
    /// If a daemon's `/metrics` cannot be read.
    pub async fn histograms(&self) -> anyhow::Result<Histograms> {
        Histograms::scrape(&self.metrics).await
    }

    /// Stops the daemons; returns their peak memory.
    pub fn stop(mut self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        let peaks = self
            .sampler
            .take()
            .and_then(|s| s.join().ok())
            .unwrap_or_default();
        for d in self.executors.iter_mut().chain(&mut self.workers) {
            d.terminate();
        }
        peaks
    }
}

/// A loopback address with a port free right now (the daemon binds it a
/// moment later).
fn free_local_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Resident memory of a process in MB (0 if it is gone).
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
