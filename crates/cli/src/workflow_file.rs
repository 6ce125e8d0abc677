//! Reading a workflow file — and the sub-workflows its `workflow:` tasks
//! start, each file once — and showing its diagnostics.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use miette::{GraphicalReportHandler, GraphicalTheme};
use weft_common::{Bundle, Diagnostics, REGISTERED_PREFIX};
use weft_store::registry::{self, WorkflowRef};

use crate::config::DbArgs;

/// Reads and validates a workflow file and every file its `workflow:`
/// tasks reach (paths relative to the file that names them). `Ok(None)`:
/// one of them is invalid, and the diagnostics were printed to stderr.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<Bundle>> {
    load_with(path, None)
}

/// [`load`], looking up `workflow: registered:NAME[@VERSION]` tasks in the
/// database `db` names (each a registered version's stored text).
pub(crate) fn load_with(path: &Path, db: Option<&DbArgs>) -> anyhow::Result<Option<Bundle>> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let reader = |target: &Path| match target
        .to_str()
        .and_then(|t| t.strip_prefix(REGISTERED_PREFIX))
    {
        Some(reference) => registered(db, reference),
        None => read(target),
    };
    match Bundle::load(key, &path.display().to_string(), source, reader) {
        Ok(bundle) => {
            for file in bundle.files() {
                if let Some(warnings) = file.workflow.warnings() {
                    eprint!("{}", render(warnings, std::io::stderr().is_terminal()));
                }
            }
            Ok(Some(bundle))
        }
        Err(all) => {
            for diagnostics in &all {
                eprint!("{}", render(diagnostics, std::io::stderr().is_terminal()));
            }
            Ok(None)
        }
    }
}

/// A registered workflow a `workflow: registered:…` task names: its key
/// (`registered:NAME@VERSION`, so two references to one version are one
/// file) and its stored text. Blocking: it runs while a bundle is read.
fn registered(db: Option<&DbArgs>, reference: &str) -> Result<(PathBuf, String), String> {
    let Some(db) = db else {
        return Err("a registered workflow is looked up in the database: `weft validate`, `weft submit` and `weft workflow apply` do".to_owned());
    };
    let Some(wanted) = WorkflowRef::parse(reference) else {
        return Err(format!("`{reference}` is not NAME or NAME@VERSION"));
    };
    let lookup = async {
        let pool = db.connect().await.map_err(|e| format!("{e:#}"))?;
        let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
        let Some(version) = registry::get(&mut conn, &wanted)
            .await
            .map_err(|e| e.to_string())?
        else {
            let names = registry::names(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            return Err(format!(
                "no workflow `{wanted}` is registered{}",
                crate::commands::workflow::did_you_mean(&wanted.name, &names)
            ));
        };
        if version.links.is_some() {
            return Err(format!(
                "`{}@{}` starts sub-workflows of its own: calling it by name is not supported yet; name its file instead",
                version.name, version.version
            ));
        }
        let (source, _) = weft_store::runs::definition(&mut conn, version.definition_id)
            .await
            .map_err(|e| e.to_string())?;
        drop(conn);
        pool.close().await;
        Ok((
            PathBuf::from(format!(
                "{REGISTERED_PREFIX}{}@{}",
                version.name, version.version
            )),
            source,
        ))
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(lookup)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(lookup),
    }
}

/// A sub-workflow file: its canonical path (two paths to one file are one
/// file) and its text.
fn read(path: &Path) -> Result<(PathBuf, String), String> {
    let key = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let source = std::fs::read_to_string(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok((key, source))
}

/// Every problem with its snippet, caret and hint, then a count.
pub(crate) fn render(diagnostics: &Diagnostics, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme);
    let mut out = String::new();
    for report in diagnostics.reports() {
        if handler.render_report(&mut out, report).is_err() {
            out.push_str(&report.to_string());
        }
        out.push('\n');
    }
    let n = diagnostics.problems().len();
    let what = if diagnostics.is_warning() {
        "warning"
    } else {
        "problem"
    };
    out.push_str(&format!(
        "{}: {n} {what}{}\n",
        diagnostics.origin(),
        if n == 1 { "" } else { "s" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_common::Workflow;

    #[test]
    fn a_diagnostic_shows_file_line_caret_and_hint() {
        let source = "name: x\ntasks:\n  a:\n    action: echo\n    neeeds: [b]\n";
        let Err(d) = Workflow::parse(source, "x.yaml") else {
            panic!("must be invalid")
        };
        let text = render(&d, false);
        assert!(text.contains("[x.yaml:5:5]"), "{text}");
        assert!(text.contains("neeeds: [b]"), "{text}");
        assert!(text.contains("did you mean `needs`?"), "{text}");
        assert!(text.contains("x.yaml: 1 problem"), "{text}");
    }

    #[test]
    fn the_caret_is_under_the_words_inside_the_string() {
        let source = "name: x\ninput: { xs: [1] }\ntasks:\n  a:\n    action: echo\n    input: { n: \"{{ input.xs | lenght }}\" }\n";
        let Err(d) = Workflow::parse(source, "x.yaml") else {
            panic!("must be invalid")
        };
        let text = render(&d, false);
        assert!(text.contains("[x.yaml:6:32]"), "{text}");
        assert!(text.contains("did you mean `length`?"), "{text}");
    }

    #[test]
    fn warnings_render_like_problems_and_say_so() {
        let source = "name: x\ninput: { who: w }\ntasks:\n  a:\n    action: shell\n    input: { script: \"echo {{ input.who }}\" }\n";
        let workflow = Workflow::parse(source, "x.yaml").expect("valid");
        let text = render(workflow.warnings().expect("a warning"), false);
        assert!(text.contains("[x.yaml:6:28]"), "{text}");
        assert!(text.contains("x.yaml: 1 warning"), "{text}");
    }
}
