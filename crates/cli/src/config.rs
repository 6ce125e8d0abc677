//! Where the services are: one flag group per need, so each command shows
//! only the flags it uses (`status` has no `--amqp-url`, `worker` no
//! `--database-url`). Flags win over the environment, which wins over the
//! `--config` file, which wins over the defaults. Secrets are never
//! printed (URLs are redacted).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use weft_bus::BusConfig;
use weft_store::{DbConfig, PgPool};

/// Default PostgreSQL URL.
pub(crate) const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/weft";
/// Default RabbitMQ URL.
pub(crate) use weft_worker::DEFAULT_AMQP_URL;

/// PostgreSQL, for every command that reads or writes runs.
#[derive(Debug, Clone, Args)]
pub(crate) struct DbArgs {
    /// PostgreSQL URL; its password is never printed.
    #[arg(
        long,
        env = "WEFT_DATABASE_URL",
        hide_env_values = true,
        default_value = DEFAULT_DATABASE_URL,
        value_name = "URL"
    )]
    pub(crate) database_url: String,
    /// Connections in the pool (4–8 is plenty for a daemon).
    #[arg(
        long,
        env = "WEFT_DATABASE_MAX_CONNECTIONS",
        default_value_t = DbConfig::default().max_connections,
        value_name = "N"
    )]
    pub(crate) database_max_connections: u32,
}

impl DbArgs {
    /// The store's settings.
    pub(crate) fn config(&self) -> DbConfig {
        DbConfig {
            url: self.database_url.clone(),
            max_connections: self.database_max_connections.max(1),
            ..DbConfig::default()
        }
    }

    /// Connects to the migrated database.
    pub(crate) async fn connect(&self) -> anyhow::Result<PgPool> {
        Ok(weft_store::connect(&self.config()).await?)
    }
}

/// RabbitMQ, for the commands that publish (`submit`, the executor).
#[derive(Debug, Clone, Args)]
pub(crate) struct AmqpArgs {
    /// RabbitMQ URL; its password is never printed.
    #[arg(
        long,
        env = "WEFT_AMQP_URL",
        hide_env_values = true,
        default_value = DEFAULT_AMQP_URL,
        value_name = "URL"
    )]
    pub(crate) amqp_url: String,
    /// A PEM file of CA certificates trusted for `amqps://` besides the
    /// system's (a private CA).
    #[arg(long, env = "WEFT_AMQP_CA_FILE", value_name = "FILE")]
    pub(crate) amqp_ca_file: Option<PathBuf>,
}

impl AmqpArgs {
    /// The bus's settings, the connection shown as `connection_name` in
    /// RabbitMQ's management UI.
    pub(crate) fn config(&self, connection_name: &str) -> BusConfig {
        BusConfig {
            url: self.amqp_url.clone(),
            connection_name: connection_name.to_owned(),
            ca_file: self.amqp_ca_file.clone(),
            ..BusConfig::default()
        }
    }
}

/// `--config FILE`, on every command that has settings.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConfigArgs {
    /// A YAML file of settings (the keys are the long flags' names with
    /// `_` for `-`), used for what flags and environment leave unset.
    #[arg(long, env = "WEFT_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

impl ConfigArgs {
    /// The file's text, if one was given.
    pub(crate) fn read(&self) -> anyhow::Result<Option<(PathBuf, String)>> {
        let Some(path) = &self.config else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Ok(Some((path.clone(), text)))
    }
}
