//! Registered workflows: definitions stored under their name, versioned
//! (`weft workflow apply|list|show|rm`, `weft submit NAME[@VERSION]`).
//!
//! A version is a row of `registered_workflows`: the root's definition
//! (content-addressed, like any run's), the `links` of the sub-workflows
//! it starts (as a run stores them, see [`crate::children::links_of`]) and
//! a digest of all of it. [`apply`] adds a version unless the newest one
//! has the same digest; version numbers increase per name and are never
//! reused, so `name@3` names one text forever, also after
//! [`remove`]. A run started from a registered workflow records its
//! version ([`set_run_origin`]) and keeps running that text whatever is
//! applied later: the run holds its definition, not the name.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::{Bundle, WorkflowExecutionId};

use crate::error::{Context, StoreError};
use crate::runs::definition_id;

/// A workflow named with an optional version: `etl` or `etl@3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRef {
    /// The workflow's name.
    pub name: String,
    /// A version; `None` is the newest.
    pub version: Option<i32>,
}

impl WorkflowRef {
    /// Reads `NAME` or `NAME@VERSION`; `None` if it is not of that shape
    /// (a name is `[a-z0-9_.-]+`, a version a whole number from 1).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (name, version) = match text.split_once('@') {
            Some((name, version)) => (name, Some(version.parse::<i32>().ok().filter(|v| *v >= 1)?)),
            None => (text, None),
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
        valid.then(|| Self {
            name: name.to_owned(),
            version,
        })
    }
}

impl std::fmt::Display for WorkflowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Applied {
    /// A new version was stored.
    Created {
        /// Its number.
        version: i32,
    },
    /// The newest version already has this content: nothing was stored.
    Unchanged {
        /// The newest version.
        version: i32,
    },
}

impl Applied {
    /// The version either way.
    #[must_use]
    pub const fn version(self) -> i32 {
        match self {
            Self::Created { version } | Self::Unchanged { version } => version,
        }
    }
}

/// One version of a registered workflow.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Version {
    /// The workflow's name.
    pub name: String,
    /// Its version.
    pub version: i32,
    /// The root's definition.
    pub definition_id: Uuid,
    /// SHA-256 of its content (root and sub-workflows).
    pub digest: String,
    /// The file it was applied from.
    pub origin: String,
    /// When it was applied.
    pub created_at: DateTime<Utc>,
    /// Its sub-workflows' links (see [`crate::children::links_of`]).
    #[serde(skip)]
    pub links: Option<Value>,
}

/// A registered workflow in a list: its newest version.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Listed {
    /// The workflow's name.
    pub name: String,
    /// Its newest version.
    pub version: i32,
    /// How many versions it has.
    pub versions: i64,
    /// When the newest version was applied.
    pub updated_at: DateTime<Utc>,
    /// The schedules that run it.
    pub schedules: Vec<String>,
}

/// The digest of a bundle's content: its root's text and the links of
/// its sub-workflows (definition ids are hashes of their texts).
///
/// # Errors
/// As [`crate::children::links_of`].
pub fn digest(bundle: &Bundle) -> Result<(String, Option<Value>), StoreError> {
    let links = crate::children::links_of(bundle)?;
    let mut hash = Sha256::new();
    hash.update(bundle.root().source.as_bytes());
    hash.update([0]);
    if let Some(links) = &links {
        hash.update(links.to_string().as_bytes());
    }
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, links))
}

/// Stores a validated bundle as a new version of its root's name, unless
/// the newest (not removed) version has the same content. Safe under
/// concurrent applies of one name: the version number is computed and
/// inserted in one statement, `ON CONFLICT DO NOTHING` on (name,
/// version); the loser of a race reads the winner's version and either
/// finds it identical (a no-op) or tries the next number.
///
/// # Errors
/// A database error; [`StoreError::Bundle`] for ambiguous links.
pub async fn apply(
    pool: &sqlx::PgPool,
    bundle: &Bundle,
    origin: &str,
) -> Result<Applied, StoreError> {
    let (digest, links) = digest(bundle)?;
    let name = bundle.root().workflow.name();
    let files = bundle.files();
    let ids: Vec<Uuid> = files.iter().map(|f| definition_id(&f.source)).collect();
    let names: Vec<&str> = files.iter().map(|f| f.workflow.name()).collect();
    let sources: Vec<&str> = files.iter().map(|f| f.source.as_str()).collect();
    let origins: Vec<&str> = files.iter().map(|f| f.origin.as_str()).collect();
    for _ in 0..16 {
        let mut tx = pool.begin().await.context("beginning an apply")?;
        sqlx::query(
            "INSERT INTO workflow_definitions (id, name, source, origin) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&names)
        .bind(&sources)
        .bind(&origins)
        .execute(&mut *tx)
        .await
        .context("storing a registered workflow's definitions")?;
        let created: Option<i32> = sqlx::query_scalar(
            "WITH newest AS ( \
                 SELECT version, digest, removed_at FROM registered_workflows \
                 WHERE name = $1 ORDER BY version DESC LIMIT 1 \
             ) \
             INSERT INTO registered_workflows (name, version, definition_id, digest, links, origin) \
             SELECT $1, coalesce((SELECT version FROM newest), 0) + 1, $2, $3, $4, $5 \
             WHERE NOT EXISTS (SELECT 1 FROM newest WHERE digest = $3 AND removed_at IS NULL) \
             ON CONFLICT (name, version) DO NOTHING \
             RETURNING version",
        )
        .bind(name)
        .bind(ids[0])
        .bind(&digest)
        .bind(&links)
        .bind(origin)
        .fetch_optional(&mut *tx)
        .await
        .context("registering a workflow version")?;
        if let Some(version) = created {
            tx.commit().await.context("committing an apply")?;
            return Ok(Applied::Created { version });
        }
        let newest: Option<(i32, String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT version, digest, removed_at FROM registered_workflows \
             WHERE name = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .context("reading a registered workflow's newest version")?;
        tx.commit().await.context("committing an apply")?;
        if let Some((version, newest_digest, None)) = newest
            && newest_digest == digest
        {
            return Ok(Applied::Unchanged { version });
        }
        // Another apply took the number: try the next one.
    }
    Err(StoreError::Refused(format!(
        "workflow `{name}`: too many concurrent applies; try again"
    )))
}

/// The version `reference` names: the given one, or the newest; `None`
/// if there is none (or the workflow was removed).
///
/// # Errors
/// A database error.
pub async fn get(
    conn: &mut PgConnection,
    reference: &WorkflowRef,
) -> Result<Option<Version>, StoreError> {
    sqlx::query_as(
        "SELECT name, version, definition_id, digest, origin, created_at, links \
         FROM registered_workflows \
         WHERE name = $1 AND removed_at IS NULL AND ($2::int IS NULL OR version = $2) \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(&reference.name)
    .bind(reference.version)
    .fetch_optional(conn)
    .await
    .context("reading a registered workflow")
}

/// Every version of `name`, newest first (empty if none, or removed).
///
/// # Errors
/// A database error.
pub async fn versions(conn: &mut PgConnection, name: &str) -> Result<Vec<Version>, StoreError> {
    sqlx::query_as(
        "SELECT name, version, definition_id, digest, origin, created_at, links \
         FROM registered_workflows WHERE name = $1 AND removed_at IS NULL ORDER BY version DESC",
    )
    .bind(name)
    .fetch_all(conn)
    .await
    .context("listing a registered workflow's versions")
}

/// Every registered workflow (not removed), by name, with its newest
/// version and the schedules that run it.
///
/// # Errors
/// A database error.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<Listed>, StoreError> {
    sqlx::query_as(
        "SELECT r.name, max(r.version) AS version, count(*) AS versions, max(r.created_at) AS updated_at, \
                coalesce((SELECT array_agg(s.name ORDER BY s.name) FROM schedules s \
                          WHERE s.workflow_name = r.name), '{}') AS schedules \
         FROM registered_workflows r WHERE r.removed_at IS NULL GROUP BY r.name ORDER BY r.name",
    )
    .fetch_all(conn)
    .await
    .context("listing registered workflows")
}

/// The names of every registered workflow (for "did you mean").
///
/// # Errors
/// A database error.
pub async fn names(conn: &mut PgConnection) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT DISTINCT name FROM registered_workflows WHERE removed_at IS NULL ORDER BY name",
    )
    .fetch_all(conn)
    .await
    .context("listing registered workflow names")
}

/// Removes every version of `name`: no longer listed or submittable (its
/// runs are untouched; its version numbers are not reused). Returns how
/// many versions it removed (0: no such workflow).
///
/// # Errors
/// A database error; [`StoreError::Refused`] while a schedule runs it
/// (delete the schedule first).
pub async fn remove(conn: &mut PgConnection, name: &str) -> Result<u64, StoreError> {
    let schedules: Vec<String> =
        sqlx::query_scalar("SELECT name FROM schedules WHERE workflow_name = $1 ORDER BY name")
            .bind(name)
            .fetch_all(&mut *conn)
            .await
            .context("finding the schedules of a workflow")?;
    if !schedules.is_empty() {
        return Err(StoreError::Refused(format!(
            "workflow `{name}` is run by schedule{} {}: `weft schedule delete` {} first",
            if schedules.len() == 1 { "" } else { "s" },
            schedules
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if schedules.len() == 1 { "it" } else { "them" },
        )));
    }
    let removed = sqlx::query(
        "UPDATE registered_workflows SET removed_at = now() WHERE name = $1 AND removed_at IS NULL",
    )
    .bind(name)
    .execute(conn)
    .await
    .context("removing a registered workflow")?;
    Ok(removed.rows_affected())
}

/// Submits a run of a registered version (see [`crate::runs::submit`]):
/// the run copies the version's links, and records the version (and, for
/// a schedule's tick, the schedule) — all in the caller's transaction,
/// which commits them with the run's start message.
///
/// # Errors
/// As [`crate::runs::submit`]; [`StoreError::Duplicate`] for a tick that
/// already has a run.
pub async fn submit_version(
    conn: &mut PgConnection,
    run: &crate::runs::NewRun<'_>,
    version: &Version,
    schedule: Option<(Uuid, &str, DateTime<Utc>)>,
) -> Result<crate::runs::Submitted, StoreError> {
    let submitted = crate::runs::submit(&mut *conn, run).await?;
    if let crate::runs::Submitted::Created(id) = submitted {
        if let Some(links) = &version.links {
            sqlx::query("UPDATE workflow_executions SET links = $2 WHERE id = $1")
                .bind(id.as_uuid())
                .bind(links)
                .execute(&mut *conn)
                .await
                .context("copying a registered workflow's links to its run")?;
        }
        set_run_origin(
            &mut *conn,
            id,
            RunOrigin {
                version: Some(version.version),
                schedule,
            },
        )
        .await?;
    }
    Ok(submitted)
}

/// A run's registered version and, for a scheduled run, its schedule and
/// tick; written in the transaction that submits the run.
#[derive(Debug, Clone, Copy)]
pub struct RunOrigin<'a> {
    /// The registered version it runs.
    pub version: Option<i32>,
    /// The schedule that started it, its name, and the tick.
    pub schedule: Option<(Uuid, &'a str, DateTime<Utc>)>,
}

/// Records where a just-submitted run came from. The unique index on
/// (schedule, tick) refuses a second run for one tick.
///
/// # Errors
/// A database error; [`StoreError::Duplicate`] for a tick that already
/// has a run.
pub async fn set_run_origin(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    origin: RunOrigin<'_>,
) -> Result<(), StoreError> {
    let (schedule_id, schedule_name, tick) = match origin.schedule {
        Some((id, name, tick)) => (Some(id), Some(name), Some(tick)),
        None => (None, None, None),
    };
    sqlx::query(
        "UPDATE workflow_executions \
         SET workflow_version = $2, schedule_id = $3, schedule_name = $4, scheduled_at = $5 \
         WHERE id = $1",
    )
    .bind(run.as_uuid())
    .bind(origin.version)
    .bind(schedule_id)
    .bind(schedule_name)
    .bind(tick)
    .execute(conn)
    .await
    .context("recording a run's origin")?;
    Ok(())
}

/// A run's registered version and schedule, as `status` and expressions
/// show them.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct RunOriginRow {
    /// The registered version it runs.
    pub workflow_version: Option<i32>,
    /// The schedule that started it.
    pub schedule_name: Option<String>,
    /// The tick it is for.
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// Reads where a run came from (all `None` for a file's run).
///
/// # Errors
/// A database error.
pub async fn run_origin(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
) -> Result<RunOriginRow, StoreError> {
    Ok(sqlx::query_as(
        "SELECT workflow_version, schedule_name, scheduled_at FROM workflow_executions WHERE id = $1",
    )
    .bind(run.as_uuid())
    .fetch_optional(conn)
    .await
    .context("reading a run's origin")?
    .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::WorkflowRef;

    #[test]
    fn names_and_versions_parse() {
        let r = |s: &str| WorkflowRef::parse(s);
        assert_eq!(
            r("etl"),
            Some(WorkflowRef {
                name: "etl".into(),
                version: None
            })
        );
        assert_eq!(r("etl@3").and_then(|r| r.version), Some(3));
        assert_eq!(r("etl@3").map(|r| r.to_string()), Some("etl@3".into()));
        for bad in ["", "etl@", "etl@0", "etl@x", "ETL", "a/b.yaml", "@3"] {
            assert_eq!(r(bad), None, "{bad}");
        }
    }
}
