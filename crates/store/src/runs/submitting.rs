//! Submitting a run: its definition (stored once), its row and its start
//! message, in one statement.

use super::*;

/// What `submit` stores.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// The id to give the run.
    pub id: WorkflowExecutionId,
    /// The workflow's name.
    pub workflow_name: &'a str,
    /// The YAML as submitted.
    pub source: &'a str,
    /// The file it came from.
    pub origin: &'a str,
    /// The resolved input.
    pub input: &'a Value,
    /// Number of tasks in the workflow.
    pub tasks_total: i32,
    /// The client's idempotency key.
    pub idempotency_key: Option<&'a str>,
}

/// What `submit` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new run was stored.
    Created(WorkflowExecutionId),
    /// The idempotency key already named this run; nothing was stored.
    Existing(WorkflowExecutionId),
}

impl Submitted {
    /// The run's id either way.
    #[must_use]
    pub const fn id(self) -> WorkflowExecutionId {
        match self {
            Self::Created(id) | Self::Existing(id) => id,
        }
    }
}

/// The namespace of definition ids (UUIDv5 of the source text).
const DEFINITION_NAMESPACE: Uuid = Uuid::from_u128(0x5745_4654_0000_4000_8000_6465_6669_6e65);

/// The content-addressed id of a workflow source.
#[must_use]
pub fn definition_id(source: &str) -> Uuid {
    Uuid::new_v5(&DEFINITION_NAMESPACE, source.as_bytes())
}

/// Stores a new run in `pending` (and its definition, once) together with
/// the `WorkflowSubmitted` message that asks an executor to start it, and
/// wakes listening relays on commit. With an idempotency key already used
/// by the same workflow (by name) with the same input, stores nothing and
/// returns the existing run — also under concurrent submits: the unique
/// key decides.
///
/// The run and its message are written by one statement, so they commit
/// together on their own (no transaction needed: one fewer round trip
/// each way) or with the caller's transaction.
///
/// # Errors
/// A database error; [`StoreError::IdempotencyConflict`] if the key names
/// a run of another workflow or with other inputs.
pub async fn submit(conn: &mut PgConnection, run: &NewRun<'_>) -> Result<Submitted, StoreError> {
    Ok(submit_leased(conn, run, None).await?.0)
}

/// A stored run's `WorkflowSubmitted` message, written with a lease for its
/// submitter to publish right after the commit (see
/// [`outbox::enqueue`]).
#[derive(Debug, Clone)]
pub struct Handoff {
    /// Its outbox row: delete it once published, or
    /// [`outbox::release`] it.
    pub outbox_id: i64,
    /// The message.
    pub message: Envelope,
}

/// [`submit`], with the run's message written due only after `lease` when
/// one is given: then no relay is woken, and the message comes back (for a
/// new run) for the caller to publish once committed. Relays publish it
/// when the lease ends if the caller does not get to it.
///
/// # Errors
/// As [`submit`].
pub async fn submit_leased(
    conn: &mut PgConnection,
    run: &NewRun<'_>,
    lease: Option<std::time::Duration>,
) -> Result<(Submitted, Option<Handoff>), StoreError> {
    let definition = definition_id(run.source);
    let message = Envelope::new(WorkflowSubmitted {
        workflow_execution_id: run.id,
    });
    let (exchange, key, payload) = outbox::encode(&message)?;
    // One statement: the definition (once), the run, and — only if the run
    // was stored — its message, (without a lease) the relays' wake-up, and
    // the followers' of runs (a new run shows in a list at once).
    // The run's foreign key to its definition is checked at the end of the
    // statement, after the definition's insert. A plain `SELECT` in a
    // `WITH` runs only if read: the final condition reads the wake-up's.
    let inserted: Option<(Uuid, i64)> = sqlx::query_as(
        "WITH d AS ( \
             INSERT INTO workflow_definitions (id, name, source, origin) VALUES ($2, $3, $7, $8) \
             ON CONFLICT (id) DO NOTHING \
         ), r AS ( \
             INSERT INTO workflow_executions \
                 (id, definition_id, workflow_name, input, idempotency_key, tasks_total, tasks_remaining) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (idempotency_key) DO NOTHING \
             RETURNING id \
         ), o AS ( \
             INSERT INTO outbox (exchange, routing_key, payload, not_before) \
             SELECT $9, $10, $11::jsonb, now() + make_interval(secs => $13::float8 / 1000) FROM r \
             RETURNING id \
         ), n AS ( \
             SELECT pg_notify($12, '') FROM r WHERE $13::float8 = 0 \
         ), seen AS ( \
             SELECT pg_notify($14, r.id::text) FROM r \
         ) \
         SELECT r.id, o.id FROM r, o \
         WHERE (SELECT count(*) FROM n) >= 0 AND (SELECT count(*) FROM seen) >= 0",
    )
    .bind(run.id.as_uuid())
    .bind(definition)
    .bind(run.workflow_name)
    .bind(run.input)
    .bind(run.idempotency_key)
    .bind(run.tasks_total)
    .bind(run.source)
    .bind(run.origin)
    .bind(exchange)
    .bind(key)
    .bind(payload)
    .bind(outbox::CHANNEL)
    .bind(outbox::lease_millis(lease))
    .bind(crate::inspect::RUNS_CHANNEL)
    .fetch_optional(&mut *conn)
    .await
    .context("storing the run")?;
    if let Some((id, outbox_id)) = inserted {
        let handoff = lease.map(|_| Handoff { outbox_id, message });
        return Ok((Submitted::Created(WorkflowExecutionId::from(id)), handoff));
    }
    // The key is taken: the same request again gets its run back; another
    // request under the same key is refused rather than answered with a
    // run that is not what it asked for.
    let (existing, workflow_name, same_input): (Uuid, String, bool) = sqlx::query_as(
        "SELECT id, workflow_name, input = $2 FROM workflow_executions WHERE idempotency_key = $1",
    )
    .bind(run.idempotency_key)
    .bind(run.input)
    .fetch_one(&mut *conn)
    .await
    .context("reading the run of an idempotency key")?;
    let differs = if workflow_name != run.workflow_name {
        Some(format!("workflow `{workflow_name}`"))
    } else if !same_input {
        Some("other inputs".to_owned())
    } else {
        None
    };
    if let Some(differs) = differs {
        return Err(StoreError::IdempotencyConflict {
            key: run.idempotency_key.unwrap_or_default().to_owned(),
            existing: existing.into(),
            differs,
        });
    }
    Ok((Submitted::Existing(existing.into()), None))
}
