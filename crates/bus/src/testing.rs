//! Test support: a private RabbitMQ vhost per test binary.

use std::process::Command;

use crate::error::BusError;

/// Deletes its vhost when dropped.
#[derive(Debug)]
pub struct VhostGuard {
    name: String,
}

impl Drop for VhostGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.name])
            .output();
    }
}

fn rabbitmqctl(args: &[&str]) -> Result<(), BusError> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| BusError::Setup(format!("running rabbitmqctl: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BusError::Setup(format!(
            "rabbitmqctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Creates a fresh vhost that `guest` may use fully; returns its AMQP URL
/// (based on `WEFT_AMQP_URL`'s host) and a guard that deletes it. Also
/// deletes vhosts left over by earlier test runs that crashed.
///
/// # Errors
/// If `rabbitmqctl` is missing or fails.
pub async fn fresh_vhost() -> Result<(String, VhostGuard), BusError> {
    tokio::task::spawn_blocking(|| {
        let name = format!("weft-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["-q", "add_vhost", &name])?;
        rabbitmqctl(&[
            "-q",
            "set_permissions",
            "-p",
            &name,
            "guest",
            ".*",
            ".*",
            ".*",
        ])?;
        let base = std::env::var("WEFT_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let host = base.rsplit_once('/').map_or(base.as_str(), |(h, _)| h);
        Ok((format!("{host}/{name}"), VhostGuard { name }))
    })
    .await
    .map_err(|e| BusError::Setup(format!("creating a vhost: {e}")))?
}
