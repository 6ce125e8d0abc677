//! The query layer for looking inside a run: what `weft status ID --task`,
//! `weft logs` (and later the HTTP API and the web UI) show. Each read
//! returns serializable types, so `--json` prints them as they are and
//! every front end shows the same thing; rendering them is the front
//! end's job.
//!
//! - [`attempts`] — every execution of a run's tasks: item, round, attempt
//!   within the round, status, worker, times, error.
//! - [`logs`] — the same rows with what each attempt printed.
//! - [`explain`] — why a run and each of its tasks are where they are.
//!
//! Changes are announced on [`RUNS_CHANNEL`], for readers that follow a
//! run (`weft logs --follow`) rather than poll it.

pub mod attempts;
pub mod explain;
pub mod logs;
pub mod runs;
pub mod status;

/// The channel `NOTIFY`ed by every statement that ends executions (the
/// executors' completion batches, the reaper): the payload lists the runs
/// concerned, as comma-separated ids, or is `*` when they are too many to
/// list ([`MAX_NOTIFY_PAYLOAD`]) — then every follower looks again. One
/// notification per statement, never one per row. A follower of one run
/// looks for its id; a follower of every run takes them all. Like every
/// `NOTIFY`, it is a wake-up hint: lost while a listener is disconnected,
/// so followers re-read now and then as well.
pub const RUNS_CHANNEL: &str = "weft_runs";

/// The longest payload sent on [`RUNS_CHANNEL`], in bytes: PostgreSQL
/// refuses one of 8,000 or more.
pub(crate) const MAX_NOTIFY_PAYLOAD: usize = 7_900;

/// A connection listening on [`RUNS_CHANNEL`] and on the channel of
/// finished runs ([`crate::runs::FINISHED_CHANNEL`], whose payload is one
/// run's id): what a follower of runs waits on.
///
/// # Errors
/// The connection or the `LISTEN` failed.
pub async fn listen(pool: &sqlx::PgPool) -> Result<sqlx::postgres::PgListener, crate::StoreError> {
    use crate::error::Context as _;
    let mut listener = sqlx::postgres::PgListener::connect_with(pool)
        .await
        .context("connecting to listen for runs' changes")?;
    listener
        .listen_all([RUNS_CHANNEL, crate::runs::FINISHED_CHANNEL])
        .await
        .context("listening for runs' changes")?;
    Ok(listener)
}

/// Which runs a [`RUNS_CHANNEL`] payload names: `None` for `*` (any run).
#[must_use]
pub fn runs_in_payload(payload: &str) -> Option<Vec<&str>> {
    (payload != "*").then(|| payload.split(',').filter(|s| !s.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_names_runs_or_all_of_them() {
        assert_eq!(runs_in_payload("a,b"), Some(vec!["a", "b"]));
        assert_eq!(runs_in_payload("a"), Some(vec!["a"]));
        assert_eq!(runs_in_payload("*"), None);
        assert_eq!(runs_in_payload(""), Some(vec![]));
    }
}
