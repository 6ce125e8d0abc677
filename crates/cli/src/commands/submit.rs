//! `weft submit FILE`: validate, resolve inputs, store the run durably and
//! ask an executor to start it. It talks to PostgreSQL only: the run and
//! its start message are one statement, whose `NOTIFY` wakes the
//! executors' relays, already connected to RabbitMQ, to publish the start
//! at once — a submit waits on no AMQP handshake, and succeeds while
//! RabbitMQ is down.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Map, Value, json};
use weft_common::{Bundle, Given, WorkflowExecutionId, kind_of};
use weft_server::api::runs::Submission;
use weft_store::registry::{self, WorkflowRef};
use weft_store::runs::{NewRun, Submitted};

use super::status::{self, WaitArgs};
use crate::config::{ConfigArgs, DbArgs};
use crate::remote::{Client, RemoteArgs, RemoteError};
use crate::workflow_file;

/// Arguments of `weft submit`.
#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// The workflow file, or a registered workflow: NAME (its newest
    /// version) or NAME@VERSION. An existing file wins over a name.
    #[arg(value_name = "FILE|NAME[@VERSION]")]
    pub(crate) file: PathBuf,
    /// An input value: KEY=VALUE. VALUE is read by the input's declared
    /// type (a string stays as written; integer, number, boolean parsed;
    /// array and object as JSON); an untyped input reads it as JSON when
    /// it parses, else as text.
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
    pub(crate) inputs: Vec<String>,
    /// A JSON or YAML file with an object of inputs (flags win over it).
    #[arg(long = "inputs", value_name = "FILE")]
    pub(crate) inputs_file: Option<PathBuf>,
    /// Return the existing run instead of a new one when this key was used.
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
    /// Follow the run to the end; exit 0 if it succeeded, 1 otherwise.
    #[arg(long)]
    pub(crate) wait: bool,
    /// Print JSON instead of the id.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) wait_args: WaitArgs,
    #[command(flatten)]
    pub(crate) grace: super::workers::GraceArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Submits the run.
pub(crate) async fn run(args: &SubmitArgs) -> anyhow::Result<ExitCode> {
    if !args.file.exists()
        && let Some(reference) = args.file.to_str().and_then(WorkflowRef::parse)
    {
        return submit_registered(args, &reference).await;
    }
    let Some(bundle) = workflow_file::load_with(&args.file, Some(&args.db))? else {
        return Ok(ExitCode::FAILURE);
    };
    let workflow = &bundle.root().workflow;
    let given = gather_inputs(args)?;
    let input = match workflow.resolve_given(given) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(client) = args.remote.client()? {
        // The server seals the secret inputs with its key.
        return submit_remote(&client, args, &bundle, &Value::Object(input)).await;
    }
    let input = match sealed(workflow, input) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("error: {}: {e:#}", args.file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let pool = args.db.connect().await?;
    // Advice, never a failure: the run is stored all the same (a worker
    // that knows the action may start later).
    let grace = args.grace.grace()?;
    for warning in super::workers::unknown_actions_in(&pool, workflow, grace)
        .await
        .unwrap_or_default()
    {
        eprintln!("warning: {}: {warning}", args.file.display());
    }
    let submitted = store(
        &pool,
        &bundle,
        &args.file,
        &input,
        args.idempotency_key.as_deref(),
    )
    .await?;
    let id = submitted.id();
    if let Submitted::Existing(_) = submitted {
        eprintln!("idempotency key already used with the same inputs: returning the existing run");
    }
    if args.wait {
        // The id first, so the run can be found again however the wait ends
        // (on stderr with --json, which keeps stdout one JSON document).
        if args.json {
            eprintln!("{id}");
        } else {
            outln!("{id}")?;
        }
        return status::follow(status::Source::Db(&pool), id, args.json, &args.wait_args).await;
    }
    if args.json {
        let created = matches!(submitted, Submitted::Created(_));
        outln!(
            "{}",
            json!({ "id": id, "workflow": workflow.name(), "created": created })
        )?;
    } else {
        outln!("{id}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The input as it is stored: the workflow's secret inputs sealed with
/// `WEFT_SECRET_KEY` (read only for a workflow that has some).
///
/// # Errors
/// A key that cannot be used; a secret input given and no key set.
fn sealed(workflow: &weft_common::Workflow, input: Map<String, Value>) -> anyhow::Result<Value> {
    if !workflow.has_secrets() {
        return Ok(Value::Object(input));
    }
    let keyring = weft_worker::keyring_from_env()?;
    Ok(Value::Object(
        workflow.seal_input(keyring.as_deref(), input)?,
    ))
}

/// [`run`] through a `weft server`: the workflow's text and its inputs
/// (resolved here, so an input error reads as in direct mode) go to
/// `POST /api/v1/runs`; the server validates again and stores the run.
async fn submit_remote(
    client: &Client,
    args: &SubmitArgs,
    bundle: &Bundle,
    input: &Value,
) -> anyhow::Result<ExitCode> {
    let workflow = &bundle.root().workflow;
    if let Some(call) = workflow.tasks().find(|t| t.call().is_some()) {
        eprintln!(
            "error: {}: task `{}` starts a sub-workflow from a file, and the server reads no files: submit this workflow against the database (without --server / WEFT_SERVER_URL)",
            args.file.display(),
            call.name()
        );
        return Ok(ExitCode::FAILURE);
    }
    let grace = args.grace.grace()?;
    for warning in super::workers::unknown_actions_remote(client, workflow, grace)
        .await
        .unwrap_or_default()
    {
        eprintln!("warning: {}: {warning}", args.file.display());
    }
    let body = json!({
        "workflow": bundle.root().source,
        "inputs": input,
        "idempotency_key": args.idempotency_key,
    });
    let submitted: Submission = match client.post("/api/v1/runs", &body).await {
        Ok((_, submitted)) => submitted,
        Err(RemoteError::Problem { problem, .. }) if !problem.diagnostics.is_empty() => {
            eprintln!("error: {}: {}", args.file.display(), problem.detail);
            eprint!(
                "{}",
                crate::remote::render_diagnostics(
                    &problem.diagnostics,
                    &args.file.display().to_string()
                )
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let id = submitted.id;
    if !submitted.created {
        eprintln!("idempotency key already used with the same inputs: returning the existing run");
    }
    if args.wait {
        if args.json {
            eprintln!("{id}");
        } else {
            outln!("{id}")?;
        }
        return status::follow(
            status::Source::Remote(client),
            id,
            args.json,
            &args.wait_args,
        )
        .await;
    }
    if args.json {
        outln!(
            "{}",
            json!({ "id": id, "workflow": submitted.workflow, "created": submitted.created })
        )?;
    } else {
        outln!("{id}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// [`run`] for a registered workflow: its stored text and sub-workflow
/// links, the version recorded on the run.
async fn submit_registered(args: &SubmitArgs, reference: &WorkflowRef) -> anyhow::Result<ExitCode> {
    if args.remote.client()?.is_some() {
        eprintln!(
            "error: `{reference}`: submitting a registered workflow goes to the database: run it without --server / WEFT_SERVER_URL"
        );
        return Ok(ExitCode::FAILURE);
    }
    let pool = args.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let Some(version) = registry::get(&mut conn, reference).await? else {
        let versions = registry::versions(&mut conn, &reference.name).await?;
        if let (Some(wanted), Some(newest)) = (reference.version, versions.first()) {
            eprintln!(
                "error: workflow `{}` has no version {wanted} (versions 1 to {}; `weft workflow show {}` lists them)",
                reference.name, newest.version, reference.name
            );
        } else {
            let names = registry::names(&mut conn).await?;
            eprintln!(
                "error: `{}` is neither a file nor a registered workflow{}",
                args.file.display(),
                super::workflow::did_you_mean(&reference.name, &names)
            );
        }
        return Ok(ExitCode::FAILURE);
    };
    let (source, origin) = weft_store::runs::definition(&mut conn, version.definition_id).await?;
    drop(conn);
    let workflow = weft_common::Workflow::parse_stored(&source, &origin).map_err(|e| {
        anyhow::anyhow!(
            "workflow `{}@{}` no longer parses: {e}",
            version.name,
            version.version
        )
    })?;
    let label = format!("{}@{}", version.name, version.version);
    let input = match workflow
        .resolve_given(gather_inputs(args)?)
        .map_err(anyhow::Error::from)
        .and_then(|input| sealed(&workflow, input))
    {
        Ok(input) => input,
        Err(e) => {
            eprintln!("error: {label}: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let new = NewRun {
        id: WorkflowExecutionId::new(),
        workflow_name: workflow.name(),
        source: &source,
        origin: &origin,
        input: &input,
        tasks_total: i32::try_from(workflow.tasks().count()).context("too many tasks")?,
        idempotency_key: args.idempotency_key.as_deref(),
    };
    let submitted = weft_store::transact::in_transaction(&pool, async |tx| {
        registry::submit_version(tx, &new, &version, None).await
    })
    .await?;
    let id = submitted.id();
    if let Submitted::Existing(_) = submitted {
        eprintln!("idempotency key already used with the same inputs: returning the existing run");
    }
    if args.wait {
        if args.json {
            eprintln!("{id}");
        } else {
            outln!("{id}")?;
        }
        return status::follow(status::Source::Db(&pool), id, args.json, &args.wait_args).await;
    }
    if args.json {
        let created = matches!(submitted, Submitted::Created(_));
        outln!(
            "{}",
            json!({ "id": id, "workflow": workflow.name(), "version": version.version, "created": created })
        )?;
    } else {
        outln!("{id}")?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn store(
    pool: &weft_store::PgPool,
    bundle: &Bundle,
    file: &Path,
    input: &Value,
    idempotency_key: Option<&str>,
) -> anyhow::Result<Submitted> {
    let workflow = &bundle.root().workflow;
    let origin = file.display().to_string();
    let new = NewRun {
        id: WorkflowExecutionId::new(),
        workflow_name: workflow.name(),
        source: &bundle.root().source,
        origin: &origin,
        input,
        tasks_total: i32::try_from(workflow.tasks().count()).context("too many tasks")?,
        idempotency_key,
    };
    Ok(weft_store::children::submit_bundle(pool, &new, bundle).await?)
}

/// Merges `--inputs FILE` (JSON values) and the `--input KEY=VALUE`
/// flags (text, parsed by each input's type when resolved); flags win.
/// (A name given twice keeps its last value: `resolve_given` says so.)
fn gather_inputs(args: &SubmitArgs) -> anyhow::Result<Vec<(String, Given)>> {
    let mut inputs: Vec<(String, Given)> = match &args.inputs_file {
        Some(path) => read_inputs_file(path)?
            .into_iter()
            .map(|(k, v)| (k, Given::Json(v)))
            .collect(),
        None => Vec::new(),
    };
    for pair in &args.inputs {
        let (key, value) = parse_pair(pair)?;
        inputs.push((key, Given::Text(value)));
    }
    Ok(inputs)
}

fn read_inputs_file(path: &Path) -> anyhow::Result<Map<String, Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?
    } else {
        serde_saphyr::from_str(&text)
            .with_context(|| format!("{} is not valid YAML", path.display()))?
    };
    match value {
        Value::Object(map) => Ok(map),
        other => anyhow::bail!(
            "{} must hold an object of inputs (name: value), not {}",
            path.display(),
            kind_of(&other)
        ),
    }
}

/// `KEY=VALUE` → (KEY, VALUE as written).
pub(crate) fn parse_pair(pair: &str) -> anyhow::Result<(String, String)> {
    let Some((key, raw)) = pair.split_once('=') else {
        anyhow::bail!("--input `{pair}` is not KEY=VALUE");
    };
    let key = key.trim();
    if key.is_empty() {
        anyhow::bail!("--input `{pair}` has an empty name before `=`");
    }
    Ok((key.to_owned(), raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::parse_pair;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        let pair = |p: &str| parse_pair(p).ok();
        assert_eq!(pair("n=10"), Some(("n".into(), "10".into())));
        assert_eq!(pair("s=a=b"), Some(("s".into(), "a=b".into())));
        assert_eq!(pair(" s =x"), Some(("s".into(), "x".into())));
        assert_eq!(pair("s="), Some(("s".into(), String::new())));
    }

    #[test]
    fn malformed_pairs_are_rejected_with_the_pair() {
        let err = parse_pair("novalue").unwrap_err().to_string();
        assert!(err.contains("novalue"), "{err}");
        assert!(parse_pair("=1").is_err());
    }
}
