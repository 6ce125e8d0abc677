//! Reading a workflow file — and the sub-workflows its `workflow:` tasks
//! start, each file once — and showing its diagnostics.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use miette::{GraphicalReportHandler, GraphicalTheme};
use weft_common::{Bundle, Diagnostics};

/// Reads and validates a workflow file and every file its `workflow:`
/// tasks reach (paths relative to the file that names them). `Ok(None)`:
/// one of them is invalid, and the diagnostics were printed to stderr.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<Bundle>> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match Bundle::load(key, &path.display().to_string(), source, read) {
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
