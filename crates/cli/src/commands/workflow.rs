//! `weft workflow apply|list|show|rm`: workflows registered by name and
//! version (see [`weft_store::registry`]), which `weft submit NAME[@VERSION]`
//! and schedules run. Against the database directly.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use weft_store::registry::{self, Applied, WorkflowRef};

use crate::config::{ConfigArgs, DbArgs};
use crate::workflow_file;

/// Arguments of `weft workflow`.
#[derive(Debug, Args)]
pub(crate) struct WorkflowArgs {
    #[command(subcommand)]
    pub(crate) action: WorkflowCommand,
}

/// What `weft workflow` does.
#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowCommand {
    /// Validate workflow files and store each under its `name`, as a new
    /// version (a no-op when the newest version has the same content).
    Apply(ApplyArgs),
    /// List registered workflows with their newest version.
    List(ListArgs),
    /// Show a registered workflow's versions and the text of one.
    Show(ShowArgs),
    /// Remove a registered workflow (every version; its runs are kept).
    Rm(RmArgs),
}

/// The flags every `weft workflow` subcommand has.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Arguments of `weft workflow apply`.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// Workflow files; each is stored with the sub-workflow files its
    /// `workflow:` tasks name.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// Arguments of `weft workflow list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) common: Common,
}

/// Arguments of `weft workflow show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// NAME (the newest version) or NAME@VERSION.
    #[arg(value_name = "NAME[@VERSION]")]
    pub(crate) workflow: String,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// Arguments of `weft workflow rm`.
#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// The workflow's name.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) common: Common,
}

impl WorkflowArgs {
    fn common(&self) -> &Common {
        match &self.action {
            WorkflowCommand::Apply(a) => &a.common,
            WorkflowCommand::List(a) => &a.common,
            WorkflowCommand::Show(a) => &a.common,
            WorkflowCommand::Rm(a) => &a.common,
        }
    }

    /// The `--config` flag of the subcommand.
    pub(crate) fn config(&self) -> &ConfigArgs {
        &self.common().config
    }

    /// The database flags of the subcommand.
    pub(crate) fn db_mut(&mut self) -> &mut DbArgs {
        match &mut self.action {
            WorkflowCommand::Apply(a) => &mut a.common.db,
            WorkflowCommand::List(a) => &mut a.common.db,
            WorkflowCommand::Show(a) => &mut a.common.db,
            WorkflowCommand::Rm(a) => &mut a.common.db,
        }
    }
}

/// Runs `weft workflow …`.
pub(crate) async fn run(args: &WorkflowArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        WorkflowCommand::Apply(a) => apply(a).await,
        WorkflowCommand::List(a) => list(a).await,
        WorkflowCommand::Show(a) => show(a).await,
        WorkflowCommand::Rm(a) => rm(a).await,
    }
}

async fn apply(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    // Every file is validated before anything is stored.
    let mut bundles = Vec::new();
    let mut invalid = false;
    for file in &args.files {
        match workflow_file::load_with(file, Some(&args.common.db))? {
            Some(bundle) => bundles.push((file, bundle)),
            None => invalid = true,
        }
    }
    if invalid {
        eprintln!("error: nothing applied: fix the problems above first");
        return Ok(ExitCode::FAILURE);
    }
    let pool = args.common.db.connect().await?;
    let mut out = Vec::new();
    for (file, bundle) in &bundles {
        let name = bundle.root().workflow.name();
        let applied = registry::apply(&pool, bundle, &file.display().to_string()).await?;
        if args.common.json {
            out.push(json!({
                "file": file.display().to_string(),
                "name": name,
                "version": applied.version(),
                "created": matches!(applied, Applied::Created { .. }),
            }));
            continue;
        }
        match applied {
            Applied::Created { version } => {
                outln!("{name}@{version} applied from {}", file.display())?;
            }
            Applied::Unchanged { version } => {
                outln!(
                    "{name}@{version} unchanged: {} has the content of the newest version",
                    file.display()
                )?;
            }
        }
    }
    if args.common.json {
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let pool = args.common.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let rows = registry::list(&mut conn).await?;
    if args.common.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("no registered workflows (register one with `weft workflow apply FILE`)")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "name",
        "version",
        "versions",
        "applied",
        "schedules",
    ]);
    for r in &rows {
        table.add_row([
            r.name.clone(),
            r.version.to_string(),
            r.versions.to_string(),
            r.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.schedules.join(", "),
        ]);
    }
    outln!("{table}")?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves `text` (NAME or NAME@VERSION) to a registered version, or
/// prints why not — naming the closest registered name — and returns
/// `None`.
pub(crate) async fn resolve(
    conn: &mut weft_store::PgConnection,
    text: &str,
    what: &str,
) -> anyhow::Result<Option<registry::Version>> {
    let Some(reference) = WorkflowRef::parse(text) else {
        eprintln!(
            "error: {what} `{text}` is not a workflow name (`[a-z0-9_.-]+`, optionally `@VERSION`)"
        );
        return Ok(None);
    };
    if let Some(version) = registry::get(conn, &reference).await? {
        return Ok(Some(version));
    }
    let versions = registry::versions(conn, &reference.name).await?;
    if let (Some(wanted), Some(newest)) = (reference.version, versions.first()) {
        eprintln!(
            "error: {what} `{text}`: workflow `{}` has no version {wanted} (versions 1 to {}; `weft workflow show {}` lists them)",
            reference.name, newest.version, reference.name
        );
        return Ok(None);
    }
    let names = registry::names(conn).await?;
    eprintln!(
        "error: {what} `{text}`: no workflow named `{}` is registered{}",
        reference.name,
        did_you_mean(&reference.name, &names)
    );
    Ok(None)
}

/// "; did you mean `x`?" or a pointer to `weft workflow list`.
pub(crate) fn did_you_mean(name: &str, names: &[String]) -> String {
    let best = names
        .iter()
        .map(|n| (strsim::jaro_winkler(name, n), n))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, n)) => format!("; did you mean `{n}`?"),
        None if names.is_empty() => {
            " (none is: register one with `weft workflow apply FILE`)".to_owned()
        }
        None => " (`weft workflow list` shows those that are)".to_owned(),
    }
}

async fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let pool = args.common.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let Some(version) = resolve(&mut conn, &args.workflow, "workflow").await? else {
        return Ok(ExitCode::FAILURE);
    };
    let versions = registry::versions(&mut conn, &version.name).await?;
    let (source, _) = weft_store::runs::definition(&mut conn, version.definition_id).await?;
    if args.common.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "name": version.name,
                "version": version.version,
                "digest": version.digest,
                "origin": version.origin,
                "created_at": version.created_at,
                "source": source,
                "sub_workflows": version.links.is_some(),
                "versions": versions,
            }))?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("workflow  {}@{}", version.name, version.version)?;
    outln!(
        "applied   {} from {}",
        version.created_at.format("%Y-%m-%d %H:%M:%S"),
        version.origin
    )?;
    outln!("digest    {}", version.digest)?;
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["version", "applied", "from", "digest"]);
    for v in &versions {
        table.add_row([
            v.version.to_string(),
            v.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            v.origin.clone(),
            v.digest[..12].to_owned(),
        ]);
    }
    outln!("{table}")?;
    outln!("---")?;
    outln!("{}", source.trim_end())?;
    Ok(ExitCode::SUCCESS)
}

async fn rm(args: &RmArgs) -> anyhow::Result<ExitCode> {
    let pool = args.common.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    match registry::remove(&mut conn, &args.name).await {
        Ok(0) => {
            let names = registry::names(&mut conn).await?;
            eprintln!(
                "error: no workflow named `{}` is registered{}",
                args.name,
                did_you_mean(&args.name, &names)
            );
            Ok(ExitCode::FAILURE)
        }
        Ok(n) => {
            if args.common.json {
                outln!("{}", json!({ "name": args.name, "versions_removed": n }))?;
            } else {
                outln!(
                    "workflow `{}` removed ({n} version{}); its runs are kept",
                    args.name,
                    if n == 1 { "" } else { "s" }
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(weft_store::StoreError::Refused(why)) => {
            eprintln!("error: {why}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
