//! `weft graph FILE`: the DAG in the terminal, as Graphviz dot, or Mermaid.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use weft_common::{Task, Trigger, Workflow};

use crate::cli::FilePath;
use crate::workflow_file;

/// Arguments of `weft graph`.
#[derive(Debug, Args)]
pub(crate) struct GraphArgs {
    /// The workflow file to draw.
    pub(crate) file: FilePath,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

/// How to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Layers in the terminal, each task after everything it needs.
    Text,
    /// Graphviz (`weft graph f.yaml --format dot | dot -Tsvg > f.svg`).
    Dot,
    /// Mermaid (paste into Markdown).
    Mermaid,
}

/// Draws the DAG.
pub(crate) fn run(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let Some(bundle) = workflow_file::load(&args.file)? else {
        return Ok(ExitCode::FAILURE);
    };
    let workflow = &bundle.root().workflow;
    let drawing = match args.format {
        Format::Text => text(workflow),
        Format::Dot => dot(workflow),
        Format::Mermaid => mermaid(workflow),
    };
    print!("{drawing}");
    Ok(ExitCode::SUCCESS)
}

/// What a task does beyond its action, in a few words.
fn notes(task: &Task) -> Vec<String> {
    let mut notes = Vec::new();
    if task.is_exit_handler() {
        notes.push("on_exit".to_owned());
    }
    if task.with_items().is_some() {
        notes.push(match task.concurrency() {
            Some(c) => format!("with_items ×{c} at a time"),
            None => "with_items".to_owned(),
        });
    }
    if task.trigger() != Trigger::AllSuccess {
        notes.push(format!("trigger {}", task.trigger()));
    }
    if let Some(when) = task.when() {
        notes.push(format!("when {when}"));
    }
    match (task.retry().attempts, task.retry().max_duration) {
        (u32::MAX, Some(max)) => notes.push(format!("retried for up to {max:?}")),
        (1, _) => {}
        (attempts, _) => notes.push(format!("{attempts} attempts")),
    }
    if let Some(t) = task.timeout() {
        notes.push(format!("timeout {t:?}"));
    }
    if task.queue() != "default" {
        notes.push(format!("queue {}", task.queue()));
    }
    if task.allow_failure() {
        notes.push("allow_failure".to_owned());
    }
    notes
}

/// Each task's layer: 0 for roots, else one more than its deepest need.
/// Exit handlers come after every main task: their roots one layer below
/// the deepest main task.
fn layers(workflow: &Workflow) -> HashMap<&str, usize> {
    let mut layer: HashMap<&str, usize> = HashMap::new();
    for exit_phase in [false, true] {
        let base = if exit_phase {
            layer.values().copied().max().map_or(0, |d| d + 1)
        } else {
            0
        };
        for task in workflow
            .tasks()
            .filter(|t| t.is_exit_handler() == exit_phase)
        {
            let depth = task
                .needs()
                .iter()
                .map(|n| layer.get(n.as_str()).map_or(base, |d| d + 1))
                .max()
                .unwrap_or(base);
            layer.insert(task.name(), depth);
        }
    }
    layer
}

fn text(workflow: &Workflow) -> String {
    let layer = layers(workflow);
    let width = workflow.tasks().map(|t| t.name().len()).max().unwrap_or(0);
    let action_width = workflow
        .tasks()
        .map(|t| t.action().len())
        .max()
        .unwrap_or(0);
    let mut out = format!("{} ({} tasks)\n", workflow.name(), workflow.tasks().count());
    let depth = layer.values().copied().max().unwrap_or(0);
    for level in 0..=depth {
        let mut first = true;
        for task in workflow.tasks().filter(|t| layer[t.name()] == level) {
            let prefix = if first {
                format!("{level:>3} │ ")
            } else {
                "    │ ".to_owned()
            };
            first = false;
            let needs = if task.needs().is_empty() {
                String::new()
            } else {
                format!(" ← {}", task.needs().join(", "))
            };
            let notes = notes(task);
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!("  [{}]", notes.join("; "))
            };
            let _ = writeln!(
                out,
                "{prefix}{:<width$}  {:<action_width$}{needs}{notes}",
                task.name(),
                task.action()
            );
        }
    }
    out
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(workflow: &Workflow) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
        quote(workflow.name())
    );
    for task in workflow.tasks() {
        let mut label = format!("{}\\n{}", quote(task.name()), quote(task.action()));
        for note in notes(task) {
            let _ = write!(label, "\\n{}", quote(&note));
        }
        let shape = if task.with_items().is_some() {
            ", shape=box3d, style=\"\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{label}\"{shape}];",
            quote(task.name())
        );
    }
    for task in workflow.tasks() {
        for need in task.needs() {
            let attrs = match task.trigger() {
                Trigger::AllSuccess => String::new(),
                other => format!(" [label=\"{other}\", style=dashed]"),
            };
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\"{attrs};",
                quote(need),
                quote(task.name())
            );
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid(workflow: &Workflow) -> String {
    let mut out = format!("---\ntitle: {}\n---\nflowchart LR\n", workflow.name());
    for task in workflow.tasks() {
        let mut label = format!("{}<br/><i>{}</i>", task.name(), task.action());
        for note in notes(task) {
            let _ = write!(label, "<br/>{}", note.replace('"', "#quot;"));
        }
        let (open, close) = if task.with_items().is_some() {
            ("[[", "]]")
        } else {
            ("[", "]")
        };
        let _ = writeln!(out, "    {}{open}\"{label}\"{close}", task.name());
    }
    for task in workflow.tasks() {
        for need in task.needs() {
            match task.trigger() {
                Trigger::AllSuccess => {
                    let _ = writeln!(out, "    {need} --> {}", task.name());
                }
                other => {
                    let _ = writeln!(out, "    {need} -. {other} .-> {}", task.name());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
name: g
tasks:
  fetch: { action: shell, input: { command: ["true"] } }
  each: { needs: [fetch], with_items: [1, 2], concurrency: 2, action: echo }
  alert: { needs: [each], trigger: one_failed, action: noop }
"#;

    fn workflow() -> Workflow {
        Workflow::parse(YAML, "g.yaml").unwrap_or_else(|d| panic!("{d}"))
    }

    #[test]
    fn text_shows_layers_fan_out_and_triggers() {
        let t = text(&workflow());
        assert!(t.contains("  0 │ fetch"), "{t}");
        assert!(
            t.contains("each   echo  ← fetch  [with_items ×2 at a time]"),
            "{t}"
        );
        assert!(
            t.contains("alert  noop  ← each  [trigger one_failed]"),
            "{t}"
        );
    }

    #[test]
    fn dot_and_mermaid_have_every_edge() {
        let d = dot(&workflow());
        assert!(d.contains("\"fetch\" -> \"each\";"), "{d}");
        assert!(
            d.contains("\"each\" -> \"alert\" [label=\"one_failed\", style=dashed];"),
            "{d}"
        );
        assert!(d.contains("shape=box3d"), "{d}");
        let m = mermaid(&workflow());
        assert!(m.contains("fetch --> each"), "{m}");
        assert!(m.contains("each -. one_failed .-> alert"), "{m}");
        assert!(m.contains("each[[\"each"), "{m}");
    }
}
