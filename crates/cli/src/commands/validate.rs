//! `weft validate FILE...`: check workflow files like a compiler would —
//! and, when the database answers, warn about tasks whose action no live
//! worker of their pool knows (never an error: validation works offline).

use std::process::ExitCode;

use clap::Args;
use weft_common::WithItems;

use super::workers::{GraceArgs, unknown_actions};
use crate::cli::FilePath;
use crate::config::{ConfigArgs, DbArgs};
use crate::remote::{Client, RemoteArgs, render_diagnostics};
use crate::workflow_file;

/// Arguments of `weft validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Workflow files to check.
    #[arg(required = true)]
    pub(crate) files: Vec<FilePath>,
    #[command(flatten)]
    pub(crate) grace: GraceArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Validates every file: a one-line summary per valid file, every problem
/// of the others; exit 1 if any file has a problem.
pub(crate) fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    let mut check = LiveWorkerCheck::new(args)?;
    for path in &args.files {
        match workflow_file::load_with(path, Some(&args.db)) {
            Ok(Some(bundle)) => {
                if let Some(diagnostics) = check.server_verdict(&bundle)? {
                    eprint!(
                        "{}",
                        render_diagnostics(&diagnostics, &path.display().to_string())
                    );
                    failed += 1;
                    continue;
                }
                let workflow = &bundle.root().workflow;
                let tasks = workflow.tasks().count();
                let fan_outs = workflow
                    .tasks()
                    .filter(|t| t.with_items().is_some())
                    .count();
                let dynamic = workflow
                    .tasks()
                    .filter(|t| matches!(t.with_items(), Some(WithItems::Expression(_))))
                    .count();
                outln!(
                    "ok  {} — {}: {tasks} task{}, {fan_outs} with_items ({dynamic} from expressions), {} input{}",
                    path.display(),
                    workflow.name(),
                    if tasks == 1 { "" } else { "s" },
                    workflow.inputs().len(),
                    if workflow.inputs().len() == 1 {
                        ""
                    } else {
                        "s"
                    },
                )?;
                for file in &bundle.files()[1..] {
                    outln!(
                        "ok  {} — {}: started by a `workflow:` task",
                        file.origin,
                        file.workflow.name()
                    )?;
                }
                for warning in check.warnings(workflow) {
                    eprintln!("warning: {}: {warning}", path.display());
                }
            }
            Ok(None) => failed += 1,
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} file(s) invalid", args.files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The live-worker check, run on a small runtime of its own (validation
/// itself needs none), skipped for good once the database (or the
/// server) did not answer. With a server, the server validates too.
struct LiveWorkerCheck {
    db: Option<weft_store::DbConfig>,
    remote: Option<Client>,
    grace: std::time::Duration,
    runtime: Option<tokio::runtime::Runtime>,
}

/// What `POST /api/v1/workflows/validate` answers.
#[derive(serde::Deserialize)]
struct Validation {
    valid: bool,
    #[serde(default)]
    diagnostics: Vec<weft_server::problem::Diagnostic>,
}

impl LiveWorkerCheck {
    fn new(args: &ValidateArgs) -> anyhow::Result<Self> {
        let remote = args.remote.client()?;
        let db = remote.is_none().then(|| args.db.config());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok();
        Ok(Self {
            db,
            remote,
            grace: args
                .grace
                .grace()
                .unwrap_or(weft_store::workers::DEFAULT_HEARTBEAT_GRACE),
            runtime,
        })
    }

    /// With a server: its verdict on a single-file workflow (`Some` with
    /// its diagnostics when it finds problems). The server reads no
    /// files, so a workflow with `workflow:` tasks (which name files) is
    /// checked here only.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the token, as for every
    /// remote command.
    fn server_verdict(
        &mut self,
        bundle: &weft_common::Bundle,
    ) -> anyhow::Result<Option<Vec<weft_server::problem::Diagnostic>>> {
        let (Some(client), Some(runtime)) = (&self.remote, &self.runtime) else {
            return Ok(None);
        };
        if bundle.root().workflow.tasks().any(|t| t.call().is_some()) {
            return Ok(None);
        }
        let body = serde_json::json!({ "workflow": bundle.root().source });
        let answer =
            runtime.block_on(client.post::<Validation>("/api/v1/workflows/validate", &body));
        let (_, verdict) = answer?;
        Ok((!verdict.valid).then_some(verdict.diagnostics))
    }

    fn warnings(&mut self, workflow: &weft_common::Workflow) -> Vec<String> {
        if let (Some(client), Some(runtime)) = (&self.remote, &self.runtime) {
            let warnings = runtime.block_on(super::workers::unknown_actions_remote(
                client, workflow, self.grace,
            ));
            if warnings.is_none() {
                self.remote = None;
            }
            return warnings.unwrap_or_default();
        }
        let (Some(db), Some(runtime)) = (&self.db, &self.runtime) else {
            return Vec::new();
        };
        let warnings = runtime.block_on(unknown_actions(db, workflow, self.grace));
        if warnings.is_none() {
            // Unreachable: the next file would wait for the same silence.
            self.db = None;
        }
        warnings.unwrap_or_default()
    }
}
