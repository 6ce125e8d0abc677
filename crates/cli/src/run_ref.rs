//! Turning a run as the user gave it (id, unique prefix, `last`) into its
//! id, with an error that lists the candidates of an ambiguous prefix.

use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use weft_common::{RunRef, WorkflowExecutionId};
use weft_store::PgPool;
use weft_store::runs::{self, Resolved};

/// The id of the run `run` names.
///
/// # Errors
/// No such run; a prefix several runs start with (listing them); a
/// database error.
pub(crate) async fn resolve(pool: &PgPool, run: &RunRef) -> anyhow::Result<WorkflowExecutionId> {
    let mut conn = pool.acquire().await.context("connecting")?;
    match runs::resolve(&mut conn, run).await? {
        Resolved::Found(id) => Ok(id),
        Resolved::NotFound => match run {
            RunRef::Id(id) => bail!("no run with id {id}"),
            RunRef::Prefix(prefix) => bail!("no run id starts with `{prefix}`"),
            RunRef::Last => bail!("there is no run yet: `last` names the newest run"),
        },
        Resolved::Ambiguous { candidates, more } => {
            let mut message =
                format!("`{run}` is ambiguous: several runs start with it; give more of the id:");
            for c in &candidates {
                let _ = write!(
                    message,
                    "\n  {}  {}  {}  {}",
                    c.id,
                    c.workflow_name,
                    c.status,
                    c.created_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
            if more {
                message.push_str("\n  … and more");
            }
            bail!(message)
        }
    }
}
