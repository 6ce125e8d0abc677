//! Transactions run again when PostgreSQL aborts them to resolve a race.
//!
//! Operators' commands (`weft cancel`, `weft retry`) lock rows in another
//! order than the executors' completions do (a run, then its executions;
//! a completion locks executions, then tasks, then the run), so the two
//! can deadlock. PostgreSQL then aborts one of them: an executor applies
//! the aborted message again (the error is transient); a command runs its
//! whole transaction again here, from `BEGIN`, with a short backoff.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use sqlx::{PgConnection, PgPool};

use crate::error::{Context, StoreError};

/// Runs `op` in a transaction and commits; runs it again, in a new
/// transaction, while it fails with a transient error (a deadlock, a
/// serialization failure, a lost connection), up to 8 times with
/// exponential backoff (10 ms to 1 s, jittered). `op` must do nothing
/// outside the database that cannot be repeated.
///
/// # Errors
/// The last error: a non-transient one at once, a transient one when the
/// tries are used up.
pub async fn in_transaction<T>(
    pool: &PgPool,
    mut op: impl AsyncFnMut(&mut PgConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut delays = backoff();
    loop {
        let result: Result<T, StoreError> = async {
            let mut tx = pool.begin().await.context("beginning a transaction")?;
            let value = op(&mut tx).await?;
            tx.commit().await.context("committing a transaction")?;
            Ok(value)
        }
        .await;
        match result {
            Err(e) if e.is_transient() => {
                let Some(delay) = delays.next() else {
                    return Err(e);
                };
                tracing::debug!(error = %weft_common::error_chain(&e), ?delay, "transaction aborted; running it again");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// The backoff between runs of an aborted transaction: 10 ms to 1 s,
/// jittered, 8 times.
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_secs(1))
        .with_max_times(8)
        .with_jitter()
        .build()
}

/// [`in_transaction`] for an `attempt` that opens and commits its own
/// transaction: a future that owns what it borrows, which an HTTP
/// handler can hold across `.await` (an `AsyncFnMut` over a borrowed
/// connection cannot yet be proven `Send`).
///
/// # Errors
/// The last error: a non-transient one at once, a transient one when the
/// tries are used up.
pub async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delays = backoff();
    loop {
        match attempt().await {
            Err(e) if e.is_transient() => {
                let Some(delay) = delays.next() else {
                    return Err(e);
                };
                tracing::debug!(error = %weft_common::error_chain(&e), ?delay, "transaction aborted; running it again");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}
