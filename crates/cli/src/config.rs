//! Connection settings: flags, then environment, then an optional config
//! file, then defaults. Secrets are never printed (URLs are redacted).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize;
use weft_bus::BusConfig;
use weft_store::DbConfig;

/// Default PostgreSQL URL.
pub(crate) const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/weft";
/// Default RabbitMQ URL.
pub(crate) const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Where the services are.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnArgs {
    /// PostgreSQL URL [default: postgres://postgres@127.0.0.1:5432/weft]
    #[arg(long, env = "WEFT_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// RabbitMQ URL [default: amqp://guest:guest@127.0.0.1:5672/%2f]
    #[arg(long, env = "WEFT_AMQP_URL", hide_env_values = true)]
    pub(crate) amqp_url: Option<String>,
    /// A YAML file with `database_url` and/or `amqp_url`, used for what flags
    /// and environment leave unset.
    #[arg(long, env = "WEFT_CONFIG")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    amqp_url: Option<String>,
    database_max_connections: Option<u32>,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub(crate) db: DbConfig,
    pub(crate) bus: BusConfig,
}

impl ConnArgs {
    /// Resolves flags, environment, file and defaults.
    pub(crate) fn resolve(&self, connection_name: &str) -> anyhow::Result<Conn> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the config file {}", path.display()))?;
                serde_saphyr::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing the config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let db = DbConfig {
            url: self
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            max_connections: file.database_max_connections.unwrap_or(8),
            ..DbConfig::default()
        };
        let bus = BusConfig {
            url: self
                .amqp_url
                .clone()
                .or(file.amqp_url)
                .unwrap_or_else(|| DEFAULT_AMQP_URL.to_owned()),
            connection_name: connection_name.to_owned(),
            ..BusConfig::default()
        };
        Ok(Conn { db, bus })
    }
}
