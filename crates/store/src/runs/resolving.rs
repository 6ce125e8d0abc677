//! What a run reference (an id, a unique prefix, `last`) names.

use super::*;

/// How many runs an ambiguous prefix lists at most.
pub const CANDIDATES_SHOWN: usize = 10;

/// Which run a [`RunRef`] names.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// Exactly one run.
    Found(WorkflowExecutionId),
    /// None: no run has that id or prefix (or, for `last`, no run exists).
    NotFound,
    /// A prefix several runs start with: the newest of them (at most
    /// [`CANDIDATES_SHOWN`]), and whether there are more.
    Ambiguous {
        /// The runs, newest first.
        candidates: Vec<RunRow>,
        /// More runs than these share the prefix.
        more: bool,
    },
}

impl Resolved {
    /// What to tell the user when `run` named no single run — the one
    /// wording of `weft …` against the database and of the API's 404 and
    /// 409 — listing an ambiguous prefix's candidates; `None` when found.
    #[must_use]
    pub fn problem(&self, run: &RunRef) -> Option<String> {
        use std::fmt::Write as _;
        match self {
            Self::Found(_) => None,
            Self::NotFound => Some(match run {
                RunRef::Id(id) => format!("no run with id {id}"),
                RunRef::Prefix(prefix) => format!("no run id starts with `{prefix}`"),
                RunRef::Last => "there is no run yet: `last` names the newest run".to_owned(),
            }),
            Self::Ambiguous { candidates, more } => {
                let mut message = format!(
                    "`{run}` is ambiguous: several runs start with it; give more of the id:"
                );
                for c in candidates {
                    let _ = write!(
                        message,
                        "\n  {}  {}  {}  {}",
                        c.id,
                        c.workflow_name,
                        c.status,
                        c.created_at.format("%Y-%m-%d %H:%M:%S")
                    );
                }
                if *more {
                    message.push_str("\n  … and more");
                }
                Some(message)
            }
        }
    }
}

/// Resolves a run given by id, unique prefix or `last`. A prefix is looked
/// up as a range of the primary key (see [`RunRef::prefix_range`]), so it
/// costs the same as an id on any number of runs; `last` reads the
/// `created_at` index.
///
/// # Errors
/// A database error.
pub async fn resolve(conn: &mut PgConnection, run: &RunRef) -> Result<Resolved, StoreError> {
    let (low, high) = match run {
        RunRef::Id(id) => (id.as_uuid(), id.as_uuid()),
        RunRef::Prefix(prefix) => RunRef::prefix_range(prefix),
        RunRef::Last => {
            let newest: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM workflow_executions ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .fetch_optional(conn)
            .await
            .context("reading the newest run")?;
            return Ok(newest.map_or(Resolved::NotFound, |id| Resolved::Found(id.into())));
        }
    };
    let mut rows: Vec<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM workflow_executions WHERE id BETWEEN $1 AND $2 \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    )))
    .bind(low)
    .bind(high)
    .bind(i64::try_from(CANDIDATES_SHOWN + 1).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await
    .context("resolving a run id prefix")?;
    Ok(match rows.len() {
        0 => Resolved::NotFound,
        1 => Resolved::Found(rows[0].id),
        _ => {
            let more = rows.len() > CANDIDATES_SHOWN;
            rows.truncate(CANDIDATES_SHOWN);
            Resolved::Ambiguous {
                candidates: rows,
                more,
            }
        }
    })
}
