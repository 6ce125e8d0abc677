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
    // The newest migration's number (0013 and 0014 were never used, so
    // the count is not the version).
    let version = weft_store::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    pool.close().await;
    outln!(
        "database {} is at schema version {version}",
        db.redacted_url()
    )?;
    Ok(ExitCode::SUCCESS)
}
