//! The store's error type.

/// What can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL could not be reached, or refused the connection: one
    /// line with the URL (password hidden) and the cause.
    #[error("cannot connect to PostgreSQL at {url}: {cause}")]
    Connect {
        /// The database URL, without password.
        url: String,
        /// Why.
        cause: ConnectCause,
    },
    /// The database URL does not parse.
    #[error("the database URL `{url}` is not valid: {detail}")]
    BadUrl {
        /// The URL as given, without password.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The database answered with an error, or could not be reached.
    #[error("database error while {context}")]
    Database {
        /// What the store was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema is older than this build (or absent).
    #[error("the database at {url} is not migrated ({detail}); run `weft migrate` first")]
    NotMigrated {
        /// The database URL, without password.
        url: String,
        /// Which migrations are missing.
        detail: String,
    },
    /// Applying the migrations failed.
    #[error("migrating the database failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A uniqueness guard fired: the row already exists, so someone else
    /// already did this. Callers treat it as "nothing to do".
    #[error("duplicate {what} refused by the unique index `{constraint}`")]
    Duplicate {
        /// What was being inserted.
        what: &'static str,
        /// The constraint that refused it.
        constraint: String,
    },
    /// An idempotency key already names a run of another workflow, or
    /// one submitted with other inputs.
    #[error(
        "idempotency key `{key}` already names run {existing}, submitted with {differs}; \
         the same key returns that run only for the same workflow and inputs: use a new key"
    )]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The run it names.
        existing: weft_common::WorkflowExecutionId,
        /// What differs: "other inputs" or "workflow `name`".
        differs: String,
    },
    /// The workflows of a submit cannot be stored together (see
    /// [`crate::children::links_of`]).
    #[error("{0}")]
    Bundle(String),
    /// A request about registered workflows or schedules that their state
    /// refuses (a name in use, a workflow a schedule still runs), in words.
    #[error("{0}")]
    Refused(String),
    /// A row held a value this build cannot read.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which kind of row.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

/// Why a connection to PostgreSQL failed, as a user can act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectCause {
    /// Nothing listens at that host and port.
    #[error("connection refused")]
    Refused,
    /// The server refused the user (wrong password, unknown role, no
    /// `pg_hba.conf` entry); the server's own words.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// The server is there, the database is not.
    #[error("database `{0}` does not exist; run `weft migrate` to create it, or check the URL")]
    NoDatabase(String),
    /// Anything else (a timeout, TLS, an unreachable host), as the driver
    /// said it.
    #[error("{0}")]
    Other(String),
}

/// How to trust a private CA for PostgreSQL.
const TRUST: &str =
    "give its certificate as `sslrootcert=FILE` in the URL (with `sslmode=verify-full`)";

impl ConnectCause {
    /// Classifies a failed connection attempt to the database `database`.
    #[must_use]
    pub fn of(error: &sqlx::Error, database: &str) -> Self {
        match error {
            sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Self::Refused
            }
            sqlx::Error::Io(e) => Self::Other(weft_common::tls_cause(&e.to_string(), TRUST)),
            sqlx::Error::Tls(e) => {
                Self::Other(match weft_common::tls_cause(&e.to_string(), TRUST) {
                    said if said.starts_with("TLS: ") => said,
                    said => format!("TLS: {said}"),
                })
            }
            sqlx::Error::PoolTimedOut => Self::Other("timed out".to_owned()),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // invalid_password, invalid_authorization_specification
                Some("28P01" | "28000") => Self::AuthFailed(db.message().to_owned()),
                // invalid_catalog_name
                Some("3D000") => Self::NoDatabase(database.to_owned()),
                _ => Self::Other(db.message().to_owned()),
            },
            other => Self::Other(other.to_string()),
        }
    }
}

impl StoreError {
    /// Whether retrying the same work later may succeed: the connection
    /// dropped or was refused, the pool timed out (PostgreSQL
    /// restarting), or the transaction lost a deadlock or serialization
    /// race.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        if let Self::Connect { cause, .. } = self {
            return matches!(cause, ConnectCause::Refused | ConnectCause::Other(_));
        }
        let Self::Database { source, .. } = self else {
            return false;
        };
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(db) => matches!(
                db.code().as_deref(),
                // serialization_failure, deadlock_detected, admin/crash shutdown,
                // cannot_connect_now, too_many_connections, connection_failure
                Some(
                    "40001"
                        | "40P01"
                        | "57P01"
                        | "57P02"
                        | "57P03"
                        | "53300"
                        | "08006"
                        | "08001"
                        | "08003"
                )
            ),
            _ => false,
        }
    }
}

/// Extension to attach context to sqlx results.
pub(crate) trait Context<T> {
    /// Wraps the error with what the store was doing; maps unique
    /// violations to [`StoreError::Duplicate`].
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| {
            if let sqlx::Error::Database(db) = &source
                && db.is_unique_violation()
            {
                return StoreError::Duplicate {
                    what: context,
                    constraint: db.constraint().unwrap_or("unknown").to_owned(),
                };
            }
            StoreError::Database { context, source }
        })
    }
}
