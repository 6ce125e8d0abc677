//! The store's error type.

/// What can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    /// A row held a value this build cannot read.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which kind of row.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl StoreError {
    /// Whether retrying the same work later may succeed: the connection
    /// dropped, the pool timed out (PostgreSQL restarting), or the
    /// transaction lost a deadlock or serialization race.
    #[must_use]
    pub fn is_transient(&self) -> bool {
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
