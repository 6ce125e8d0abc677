//! Connecting, creating and migrating the database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::error::{ConnectCause, Context, StoreError};

/// The schema, embedded at build time from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `postgres://user@host:port/database[?sslmode=…]`.
    pub url: String,
    /// Pool size; 4–8 is plenty on a small machine (measured: more
    /// connections did not raise throughput on 2 cores).
    pub max_connections: u32,
    /// How long to wait for a free connection before failing (and retrying).
    pub acquire_timeout: Duration,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/weft".to_owned(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl DbConfig {
    /// The connection options. Without an `sslmode` in the URL, a server on
    /// the loopback interface is reached without TLS (sqlx's default,
    /// `prefer`, would encrypt every round trip to a process on the same
    /// host, protecting nothing); any other host keeps `prefer`.
    fn options(&self) -> Result<PgConnectOptions, StoreError> {
        let options = PgConnectOptions::from_str(&self.url)
            .map_err(|e| StoreError::BadUrl {
                url: self.redacted_url(),
                detail: match e {
                    sqlx::Error::Configuration(inner) => inner.to_string(),
                    other => other.to_string(),
                },
            })?
            .application_name("weft");
        let chose_ssl = self.url.contains("sslmode=");
        Ok(if !chose_ssl && is_loopback(options.get_host()) {
            options.ssl_mode(PgSslMode::Disable)
        } else {
            options
        })
    }

    /// The URL with any password replaced by `***`, safe to print.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// Replaces the password of a URL with `***`.
#[must_use]
pub fn redact(url: &str) -> String {
    weft_common::redact_url(url)
}

/// Opens one connection, naming the URL and the cause when it fails.
async fn open(config: &DbConfig, options: &PgConnectOptions) -> Result<PgConnection, StoreError> {
    options
        .connect()
        .await
        .map_err(|e| connect_error(config, options, &e))
}

fn connect_error(config: &DbConfig, options: &PgConnectOptions, error: &sqlx::Error) -> StoreError {
    StoreError::Connect {
        url: config.redacted_url(),
        cause: ConnectCause::of(error, options.get_database().unwrap_or("postgres")),
    }
}

/// Opens a pool to an existing, migrated database.
///
/// # Errors
/// [`StoreError::NotMigrated`] if the schema is missing or older than this
/// build; a database error if PostgreSQL cannot be reached.
pub async fn connect(config: &DbConfig) -> Result<PgPool, StoreError> {
    // One connection first: it fails at once with the real cause (a pool
    // retries a refused connection until its timeout, then says only
    // that it timed out), and checks the schema; the pool then opens its
    // connections as they are needed.
    let options = config.options()?;
    let mut probe = open(config, &options).await?;
    let checked = ensure_migrated(&mut probe, config).await;
    let _ = probe.close().await;
    checked?;
    Ok(pool(config, options))
}

/// Whether `host` names this machine over TCP (a Unix socket path is not a
/// TCP host and keeps its own rules).
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A pooled connection idle this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

fn pool(config: &DbConfig, options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        // sqlx pings every connection it hands out by default: a round trip
        // before each transaction. A connection in steady use is known to
        // be alive; only one idle for a while is pinged (a connection that
        // died since fails its next statement with an I/O error, which
        // callers retry as transient).
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options)
}

/// Creates the database if it does not exist, then applies every pending
/// migration. Safe to run any number of times, also concurrently (sqlx takes
/// an advisory lock).
///
/// # Errors
/// A database or migration error.
pub async fn migrate(config: &DbConfig) -> Result<PgPool, StoreError> {
    create_database_if_missing(config).await?;
    let options = config.options()?;
    let mut conn = open(config, &options).await?;
    let migrated = MIGRATOR.run(&mut conn).await.map_err(StoreError::Migrate);
    let _ = conn.close().await;
    migrated?;
    Ok(pool(config, options))
}

async fn create_database_if_missing(config: &DbConfig) -> Result<(), StoreError> {
    let options = config.options()?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let admin_options = options.clone().database("postgres");
    let mut admin = open(config, &admin_options).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .context("checking whether the database exists")?;
    if !exists {
        let quoted = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        // Identifiers cannot be bound as parameters; the name is quoted above.
        let created = sqlx::query(sqlx::AssertSqlSafe(quoted))
            .execute(&mut admin)
            .await;
        match created {
            Ok(_) => tracing::info!(database = %name, "created the database"),
            // Another process created it between our check and our CREATE.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
            Err(source) => {
                return Err(StoreError::Database {
                    context: "creating the database",
                    source,
                });
            }
        }
    }
    admin
        .close()
        .await
        .context("closing the admin connection")?;
    Ok(())
}

/// Fails unless every migration this build embeds has been applied.
async fn ensure_migrated(conn: &mut PgConnection, config: &DbConfig) -> Result<(), StoreError> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(&mut *conn)
        .await
        .context("checking the schema version")?;
    if table.is_none() {
        return Err(StoreError::NotMigrated {
            url: config.redacted_url(),
            detail: "no Weft schema found".to_owned(),
        });
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .context("reading the applied migrations")?;
    let missing: Vec<String> = MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::NotMigrated {
            url: config.redacted_url(),
            detail: format!("missing migrations: {}", missing.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{DbConfig, is_loopback, redact};
    use sqlx::postgres::PgSslMode;

    /// Checks the TLS mode the options for `url` use (by name: `PgSslMode`
    /// has no `PartialEq`).
    fn assert_ssl_mode(url: &str, expected: &PgSslMode) {
        let config = DbConfig {
            url: url.to_owned(),
            ..DbConfig::default()
        };
        let mode = config.options().expect("a valid URL").get_ssl_mode();
        assert_eq!(format!("{mode:?}"), format!("{expected:?}"), "{url}");
    }

    #[test]
    fn loopback_goes_without_tls_unless_the_url_asks() {
        assert!(is_loopback("127.0.0.1") && is_loopback("localhost") && is_loopback("[::1]"));
        assert!(!is_loopback("db.example.com") && !is_loopback("10.0.0.5"));
        assert_ssl_mode("postgres://u@127.0.0.1:5432/db", &PgSslMode::Disable);
        assert_ssl_mode("postgres://u@localhost/db", &PgSslMode::Disable);
        assert_ssl_mode("postgres://u@db.example.com/db", &PgSslMode::Prefer);
        assert_ssl_mode(
            "postgres://u@127.0.0.1/db?sslmode=require",
            &PgSslMode::Require,
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
    }
}
