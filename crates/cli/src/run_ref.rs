//! Turning a run as the user gave it (id, unique prefix, `last`) into its
//! id, with an error that lists the candidates of an ambiguous prefix.

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
    let resolved = runs::resolve(&mut conn, run).await?;
    if let Resolved::Found(id) = resolved {
        return Ok(id);
    }
    bail!(resolved.problem(run).unwrap_or_default())
}
