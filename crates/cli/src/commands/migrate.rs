//! `weft migrate`: create the database if needed and apply the schema.

use std::process::ExitCode;

use clap::Args;

use crate::config::ConnArgs;

/// Arguments of `weft migrate`.
#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

/// Applies every pending migration.
pub(crate) async fn run(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let conn = args.conn.resolve("weft-migrate")?;
    let pool = weft_store::migrate(&conn.db).await?;
    let applied = weft_store::MIGRATOR.iter().count();
    pool.close().await;
    println!(
        "database {} is at schema version {applied}",
        conn.db.redacted_url()
    );
    Ok(ExitCode::SUCCESS)
}
