//! Submitting a run: it is stored together with its `WorkflowSubmitted`
//! message, and — given a publisher — the submitter publishes that message
//! right after the commit, so an executor starts the run without waiting
//! for a relay to find it. The message is written leased: relays leave it
//! alone for [`SUBMIT_LEASE`] and publish it only if the submitter did not
//! (it crashed, or the broker refused). A start published twice is a
//! no-op: the run's `pending → running` guard lets one through.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use weft_bus::Publisher;
use weft_store::outbox;
use weft_store::runs::{self, Handoff, NewRun, Submitted};

use crate::error::{EngineError, db};

/// How long relays leave a submitted run's message to its submitter.
pub const SUBMIT_LEASE: Duration = Duration::from_secs(10);

/// Stores a run (see [`runs::submit`]) and, with a `publisher`, publishes
/// its start message once committed. Without one, listening relays are
/// woken to publish it.
///
/// The run is submitted once this returns `Ok`, whether or not the publish
/// succeeded: a message that could not be published is left to the relays.
/// `run.input` is stored as given: seal its secret inputs first
/// ([`weft_common::Workflow::seal_input`]), as `weft submit` does.
///
/// # Errors
/// A database error while storing the run.
pub async fn submit(
    pool: &PgPool,
    publisher: Option<&Publisher>,
    run: &NewRun<'_>,
) -> Result<Submitted, EngineError> {
    // One statement stores the run and its message: it commits on its own.
    let mut conn = pool
        .acquire()
        .await
        .map_err(db("reaching the database to submit"))?;
    let lease = publisher.map(|_| SUBMIT_LEASE);
    let (submitted, handoff) = runs::submit_leased(&mut conn, run, lease).await?;
    if let (Some(publisher), Some(handoff)) = (publisher, handoff) {
        hand_off(&mut conn, publisher, handoff).await;
    }
    Ok(submitted)
}

/// Publishes a committed run's start message and deletes its outbox row;
/// if the broker refused it, ends the row's lease so a relay publishes it
/// now. A failure here loses nothing: the row stays, and relays publish it
/// when its lease ends.
async fn hand_off(conn: &mut PgConnection, publisher: &Publisher, handoff: Handoff) {
    let id = handoff.outbox_id;
    let published = publisher.publish(&handoff.message).await;
    let tidied = match &published {
        Ok(()) => outbox::delete(conn, &[id]).await,
        Err(_) => outbox::release(conn, id).await,
    };
    if let Err(e) = published {
        // Normal while no executor has declared the topology yet, or the
        // broker is away: the relays have it.
        tracing::debug!(outbox_id = id, error = %e, "publishing a submitted run's start failed; a relay publishes it");
    }
    if let Err(e) = tidied {
        tracing::warn!(outbox_id = id, error = %e, "the run is submitted; a relay publishes its start when the lease ends");
    }
}
