//! The transactional outbox: messages are written in the same transaction as
//! the state change that causes them, and published by a relay only after
//! that transaction committed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::Envelope;

use crate::error::{Context, StoreError};

/// The channel `NOTIFY`ed when rows are written by a process without a relay
/// of its own (the CLI), so a listening relay wakes at once.
pub const CHANNEL: &str = "weft_outbox";

/// A message waiting to be published.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    /// Its position; also the key to delete it by.
    pub id: i64,
    /// The serialized envelope.
    pub payload: Value,
}

impl OutboxRow {
    /// Decodes the stored envelope.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the payload is not an envelope.
    pub fn envelope(&self) -> Result<Envelope, StoreError> {
        serde_json::from_value(self.payload.clone()).map_err(|e| StoreError::Corrupt {
            what: "outbox message",
            detail: format!("row {}: {e}", self.id),
        })
    }
}

/// Writes messages to publish once the current transaction commits, each due
/// at its own instant (`None` = at once).
///
/// With a `lease`, messages due at once are written due only after the
/// lease: the writer publishes them itself right after its commit and
/// deletes them, and relays leave them alone unless the writer did not get
/// to it in time (it crashed, or the broker was down). Returns the rows of
/// the messages due at once, in the order given, for the writer to publish.
///
/// # Errors
/// A database error.
pub async fn enqueue(
    conn: &mut PgConnection,
    messages: &[(Envelope, Option<DateTime<Utc>>)],
    lease: Option<std::time::Duration>,
) -> Result<Vec<i64>, StoreError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let columns = Columns::of(messages.iter().map(|(envelope, _)| envelope))?;
    let due: Vec<Option<DateTime<Utc>>> = messages.iter().map(|(_, due)| *due).collect();
    // Rows come back with their envelope's id, so the row ids can be matched
    // to the messages whatever order the insert returns them in.
    let rows: Vec<(i64, Uuid)> = sqlx::query_as(
        "INSERT INTO outbox (exchange, routing_key, payload, not_before) \
         SELECT exchange, key, payload::jsonb, \
                COALESCE(due, now() + make_interval(secs => $5::float8 / 1000)) \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[]) \
              AS m(exchange, key, payload, due) \
         RETURNING id, (payload->>'id')::uuid",
    )
    .bind(&columns.exchanges)
    .bind(&columns.keys)
    .bind(&columns.payloads)
    .bind(&due)
    .bind(lease_millis(lease))
    .fetch_all(conn)
    .await
    .context("writing to the outbox")?;
    let immediate = messages
        .iter()
        .filter(|(_, due)| due.is_none())
        .map(|(envelope, _)| envelope);
    rows_of(immediate, rows)?
        .into_iter()
        .zip(messages.iter().filter(|(_, due)| due.is_none()))
        .map(|(row, (envelope, _))| {
            row.ok_or_else(|| StoreError::Corrupt {
                what: "outbox message",
                detail: format!("message {} was not written", envelope.id),
            })
        })
        .collect()
}

/// Messages as the outbox's columns, in order.
pub(crate) struct Columns {
    pub(crate) exchanges: Vec<&'static str>,
    pub(crate) keys: Vec<String>,
    pub(crate) payloads: Vec<String>,
}

impl Columns {
    pub(crate) fn of<'e>(
        envelopes: impl Iterator<Item = &'e Envelope>,
    ) -> Result<Self, StoreError> {
        let mut columns = Self {
            exchanges: Vec::new(),
            keys: Vec::new(),
            payloads: Vec::new(),
        };
        for envelope in envelopes {
            let (exchange, key, payload) = encode(envelope)?;
            columns.exchanges.push(exchange);
            columns.keys.push(key);
            columns.payloads.push(payload);
        }
        Ok(columns)
    }
}

/// A lease as the milliseconds a message's `not_before` lies ahead (0: due
/// at once).
pub(crate) fn lease_millis(lease: Option<std::time::Duration>) -> f64 {
    lease.map_or(0.0, |l| l.as_secs_f64() * 1000.0)
}

/// The outbox row of each message, in the messages' order (`None`: not
/// written), from the (row id, message id) pairs an insert returned in
/// whatever order.
pub(crate) fn rows_of<'e>(
    messages: impl Iterator<Item = &'e Envelope>,
    rows: Vec<(i64, Uuid)>,
) -> Result<Vec<Option<i64>>, StoreError> {
    let by_message: HashMap<Uuid, i64> = rows.into_iter().map(|(id, m)| (m, id)).collect();
    Ok(messages
        .map(|envelope| by_message.get(&envelope.id.as_uuid()).copied())
        .collect())
}

/// An outbox row's exchange, routing key and payload for a message. The
/// payload is serialized straight to text (PostgreSQL parses it into
/// jsonb): a `serde_json::Value` tree per message costs far more memory for
/// a wide fan-out.
pub(crate) fn encode(envelope: &Envelope) -> Result<(&'static str, String, String), StoreError> {
    let (exchange, key) = envelope.route();
    let payload = serde_json::to_string(envelope).map_err(|e| StoreError::Corrupt {
        what: "outbox message",
        detail: e.to_string(),
    })?;
    Ok((exchange, key, payload))
}

/// Wakes listening relays when the transaction commits.
///
/// # Errors
/// A database error.
pub async fn notify(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(conn)
        .await
        .context("notifying relays")?;
    Ok(())
}

/// Ends the lease of a message its writer could not publish: it is due at
/// once, and listening relays are woken on commit.
///
/// # Errors
/// A database error.
pub async fn release(conn: &mut PgConnection, id: i64) -> Result<(), StoreError> {
    sqlx::query(
        "WITH u AS (UPDATE outbox SET not_before = now() WHERE id = $1 RETURNING id) \
         SELECT pg_notify($2, '') FROM u",
    )
    .bind(id)
    .bind(CHANNEL)
    .execute(conn)
    .await
    .context("releasing an outbox message")?;
    Ok(())
}

/// Claims up to `limit` due messages, oldest first, skipping rows another
/// relay holds. The rows stay locked until the transaction ends: publish
/// them, [`delete`] the confirmed ones, commit.
///
/// # Errors
/// A database error.
pub async fn claim(conn: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    sqlx::query_as(
        "SELECT id, payload FROM outbox WHERE not_before <= now() \
         ORDER BY not_before, id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
    .context("claiming outbox messages")
}

/// Deletes published messages.
///
/// # Errors
/// A database error.
pub async fn delete(conn: &mut PgConnection, ids: &[i64]) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await
        .context("deleting published messages")?;
    Ok(())
}

/// When the next not-yet-due message becomes due, if any.
///
/// # Errors
/// A database error.
pub async fn next_due(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>, StoreError> {
    sqlx::query_scalar("SELECT min(not_before) FROM outbox")
        .fetch_one(conn)
        .await
        .context("reading the next due message")
}

/// Moves rows the relay cannot decode out of the outbox into
/// `outbox_parked`, each with the reason, in one statement. They are never
/// deleted: a row this build cannot read may be corrupt or written by a
/// build with another envelope format, and either way an operator must see
/// it (`weft audit` reports parked rows against their run) and can send it
/// again once a build that reads it runs. Parked rather than published as
/// they are: this build's consumers would only dead-letter them, out of
/// sight of the audit; and the outbox keeps only publishable rows, so its
/// claim stays fast and the bad rows do not block it.
///
/// # Errors
/// A database error.
pub async fn park(conn: &mut PgConnection, rows: &[(i64, String)]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    let reasons: Vec<&str> = rows.iter().map(|(_, reason)| reason.as_str()).collect();
    sqlx::query(
        "WITH moved AS (DELETE FROM outbox WHERE id = ANY($1) RETURNING *) \
         INSERT INTO outbox_parked (id, exchange, routing_key, payload, created_at, reason) \
         SELECT m.id, m.exchange, m.routing_key, m.payload, m.created_at, r.reason \
         FROM moved m JOIN UNNEST($1::int8[], $2::text[]) AS r(id, reason) ON r.id = m.id",
    )
    .bind(&ids)
    .bind(&reasons)
    .execute(conn)
    .await
    .context("parking undecodable outbox messages")?;
    Ok(())
}
