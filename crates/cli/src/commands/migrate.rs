//! `weft migrate`: create the database if needed and apply the schema.

use std::process::ExitCode;

use clap::Args;

use crate::config::{ConfigArgs, DbArgs};

/// Arguments of `weft migrate`.
#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Applies every pending migration.
pub(crate) async fn run(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.config();
    let pool = weft_store::migrate(&db).await?;
    let applied = weft_store::MIGRATOR.iter().count();
    pool.close().await;
    outln!(
        "database {} is at schema version {applied}",
        db.redacted_url()
    )?;
    Ok(ExitCode::SUCCESS)
}
