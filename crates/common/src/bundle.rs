//! A workflow together with every sub-workflow it starts, transitively:
//! what `weft submit` reads, validates and stores with a run.
//!
//! A task with `workflow: PATH` names a file relative to the file that
//! holds the task. [`Bundle::load`] follows those paths from the root file
//! (the reading itself is the caller's: this crate does no IO), parses each
//! distinct file once — a workflow that calls itself, directly or through
//! others, is read once and linked back to itself — and checks each call's
//! `input:` against the declared inputs of the workflow it starts. Every
//! problem of every file is reported, each in its own file's diagnostics.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::diagnostic::{Diagnostics, Problem};
use crate::validate::closest;
use crate::workflow::{Task, Workflow};

/// The prefix of a `workflow:` value that names a registered workflow
/// (`registered:NAME` or `registered:NAME@VERSION`) instead of a file: the
/// reader is given it as it is, not joined to the calling file's folder.
pub const REGISTERED_PREFIX: &str = "registered:";

/// One file of a [`Bundle`].
#[derive(Debug, Clone)]
pub struct BundleFile {
    /// The file's identity as the reader resolved it (a canonical path):
    /// two paths to one file are one file.
    pub key: PathBuf,
    /// The name shown in diagnostics and stored as the definition's origin.
    pub origin: String,
    /// The YAML as read.
    pub source: String,
    /// The validated workflow.
    pub workflow: Workflow,
    /// For each `workflow:` task, the index in [`Bundle::files`] of the
    /// file it starts.
    pub calls: BTreeMap<String, usize>,
}

/// A root workflow and the sub-workflows it reaches, each once.
#[derive(Debug, Clone)]
pub struct Bundle {
    files: Vec<BundleFile>,
}

impl Bundle {
    /// Reads and validates `root` (already read: `key`, `source`) and every
    /// file its `workflow:` tasks reach. `read` resolves a path (already
    /// joined to the calling file's folder) to its identity and text, or
    /// says why it cannot.
    ///
    /// # Errors
    /// The diagnostics of every file that has a problem: a file that does
    /// not validate, a `workflow:` path that cannot be read (reported at
    /// the path, in the calling file), a call whose `input:` gives an input
    /// the child does not declare or omits one it requires.
    pub fn load(
        key: PathBuf,
        origin: &str,
        source: String,
        mut read: impl FnMut(&Path) -> Result<(PathBuf, String), String>,
    ) -> Result<Self, Vec<Diagnostics>> {
        let mut failed: Vec<Diagnostics> = Vec::new();
        // Files read so far, parsed or not: (key, origin, source, workflow).
        let mut read_files: Vec<(PathBuf, String, String, Option<Workflow>)> = Vec::new();
        let mut by_key: HashMap<PathBuf, usize> = HashMap::new();
        let mut calls: Vec<BTreeMap<String, usize>> = Vec::new();
        by_key.insert(key.clone(), 0);
        read_files.push((key, origin.to_owned(), source, None));
        calls.push(BTreeMap::new());
        let mut problems: Vec<Vec<Problem>> = vec![Vec::new()];
        let mut next = 0;
        while next < read_files.len() {
            let index = next;
            next += 1;
            let (key, origin, source, _) = &read_files[index];
            let workflow = match Workflow::parse(source, origin) {
                Ok(workflow) => workflow,
                Err(diagnostics) => {
                    failed.push(diagnostics);
                    continue;
                }
            };
            let folder = key.parent().map(Path::to_path_buf).unwrap_or_default();
            let source = source.clone();
            let mut found = Vec::new();
            for task in workflow.tasks() {
                let Some(call) = task.call() else { continue };
                let registered = call.path().starts_with(REGISTERED_PREFIX);
                let target = if registered {
                    PathBuf::from(call.path())
                } else {
                    folder.join(call.path())
                };
                match read(&target) {
                    Ok((child_key, child_source)) => {
                        let child = match by_key.get(&child_key) {
                            Some(&child) => child,
                            None => {
                                let child = read_files.len();
                                by_key.insert(child_key.clone(), child);
                                let child_origin = child_key.display().to_string();
                                read_files.push((child_key, child_origin, child_source, None));
                                calls.push(BTreeMap::new());
                                problems.push(Vec::new());
                                child
                            }
                        };
                        found.push((task.name().to_owned(), child));
                    }
                    Err(why) => {
                        let (offset, len) = call.path_span;
                        problems[index].push(
                            Problem::at(
                                &source,
                                offset,
                                len,
                                format!(
                                    "task `{}`: cannot read workflow `{}`: {why}",
                                    task.name(),
                                    call.path()
                                ),
                            )
                            .hint(if registered {
                                "`registered:NAME[@VERSION]` names a workflow stored with `weft workflow apply`; \
                                 `weft workflow list` shows them"
                                    .to_owned()
                            } else {
                                format!(
                                    "the path is relative to this file's folder ({})",
                                    folder.display()
                                )
                            }),
                        );
                    }
                }
            }
            calls[index].extend(found);
            read_files[index].3 = Some(workflow);
        }
        // Each call's input against the child's declared inputs.
        for (index, (_, _, source, workflow)) in read_files.iter().enumerate() {
            let Some(workflow) = workflow else { continue };
            for (task_name, child) in &calls[index] {
                let (Some(task), Some(child_workflow)) =
                    (workflow.task(task_name), &read_files[*child].3)
                else {
                    continue;
                };
                problems[index].extend(check_call_input(source, task, child_workflow));
            }
        }
        for (index, found) in problems.into_iter().enumerate() {
            if !found.is_empty() {
                let (_, origin, source, _) = &read_files[index];
                failed.push(Diagnostics::new(origin, source, found));
            }
        }
        if !failed.is_empty() {
            return Err(failed);
        }
        let files = read_files
            .into_iter()
            .zip(calls)
            .filter_map(|((key, origin, source, workflow), calls)| {
                Some(BundleFile {
                    key,
                    origin,
                    source,
                    workflow: workflow?,
                    calls,
                })
            })
            .collect();
        Ok(Self { files })
    }

    /// Every file, the root first.
    #[must_use]
    pub fn files(&self) -> &[BundleFile] {
        &self.files
    }

    /// The root file.
    #[must_use]
    pub fn root(&self) -> &BundleFile {
        &self.files[0]
    }

    /// Whether the root starts any sub-workflow.
    #[must_use]
    pub fn has_calls(&self) -> bool {
        self.files.len() > 1 || !self.files[0].calls.is_empty()
    }
}

/// The problems of a `workflow:` task's `input:` against the inputs the
/// child declares: a literal map must name only declared inputs and every
/// required one; a lone expression is checked when the child starts.
fn check_call_input(source: &str, task: &Task, child: &Workflow) -> Vec<Problem> {
    let Some(call) = task.call() else {
        return Vec::new();
    };
    let (offset, len) = call.input_span.unwrap_or(call.path_span);
    let at = |message: String| Problem::at(source, offset, len, message);
    let declared: Vec<&str> = child.inputs().keys().map(String::as_str).collect();
    let given =
        match task.input() {
            Value::Object(map) => map,
            Value::String(_) => return Vec::new(),
            other => {
                return vec![at(format!(
                "task `{}`: the input of a sub-workflow must be a map of its inputs, not {}",
                task.name(),
                crate::expr::kind_of(other)
            ))
            .hint(format!(
                "workflow `{}` declares: {}",
                child.name(),
                list_or_none(&declared)
            ))];
            }
        };
    let mut problems = Vec::new();
    for name in given.keys() {
        if !child.inputs().contains_key(name) {
            let mut p = at(format!(
                "task `{}` gives input `{name}`, which workflow `{}` ({}) does not declare",
                task.name(),
                child.name(),
                call.path()
            ));
            p = match closest(name, declared.iter().copied()) {
                Some(best) => p.hint(format!("did you mean `{best}`?")),
                None => p.hint(format!("it declares: {}", list_or_none(&declared))),
            };
            problems.push(p);
        }
    }
    for (name, default) in child.inputs() {
        if default.is_none() && !given.contains_key(name) {
            problems.push(
                at(format!(
                    "task `{}` does not give input `{name}`, which workflow `{}` ({}) requires",
                    task.name(),
                    child.name(),
                    call.path()
                ))
                .hint(format!("add `{name}: …` under the task's `input:`")),
            );
        }
    }
    problems
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "no inputs".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> HashMap<PathBuf, String> {
        list.iter()
            .map(|(k, v)| (PathBuf::from(k), (*v).to_owned()))
            .collect()
    }

    fn load(list: &[(&str, &str)]) -> Result<Bundle, Vec<Diagnostics>> {
        let fs = files(list);
        let root = PathBuf::from(list[0].0);
        let source = fs[&root].clone();
        Bundle::load(root.clone(), list[0].0, source, |path| {
            // A tiny canonicalisation: `a/./b` and `a/x/../b` are `a/b`.
            let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
            for c in path.components() {
                match c {
                    std::path::Component::CurDir => {}
                    std::path::Component::ParentDir => {
                        parts.pop();
                    }
                    other => parts.push(other.as_os_str()),
                }
            }
            let key: PathBuf = parts.iter().collect();
            fs.get(&key)
                .map(|s| (key.clone(), s.clone()))
                .ok_or_else(|| "no such file".to_owned())
        })
    }

    const CHILD: &str = "name: child\ninput:\n  n: null\n  label: x\noutput: \"{{ input.n }}\"\ntasks:\n  a:\n    action: echo\n";

    #[test]
    fn a_parent_links_each_task_to_its_child_file() {
        let parent = "name: parent\ntasks:\n  one:\n    workflow: lib/child.yaml\n    input: {n: 1}\n  many:\n    with_items: [1, 2]\n    workflow: ./lib/child.yaml\n    input: {n: \"{{ item }}\"}\n";
        let bundle = load(&[("w/parent.yaml", parent), ("w/lib/child.yaml", CHILD)])
            .unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(
            bundle.files().len(),
            2,
            "one file, however often it is called"
        );
        assert_eq!(bundle.root().calls.get("one"), Some(&1));
        assert_eq!(bundle.root().calls.get("many"), Some(&1));
        assert!(bundle.has_calls());
        let task = bundle.root().workflow.task("one").expect("task");
        assert_eq!(task.action(), "workflow:lib/child.yaml");
        assert_eq!(task.call().map(|c| c.max_depth()), Some(10));
    }

    #[test]
    fn a_workflow_may_call_itself() {
        let flip = "name: flip\ntasks:\n  again:\n    workflow: flip.yaml\n    max_depth: 3\n";
        let bundle = load(&[("flip.yaml", flip)]).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(bundle.files().len(), 1);
        assert_eq!(bundle.root().calls.get("again"), Some(&0));
        assert_eq!(
            bundle
                .root()
                .workflow
                .task("again")
                .and_then(|t| t.call())
                .map(|c| c.max_depth()),
            Some(3)
        );
    }

    #[test]
    fn a_missing_file_is_reported_at_its_path_in_the_caller() {
        let parent = "name: parent\ntasks:\n  one:\n    workflow: nope.yaml\n";
        let Err(diagnostics) = load(&[("parent.yaml", parent)]) else {
            panic!("must fail")
        };
        let problem = &diagnostics[0].problems()[0];
        assert!(
            problem.message.contains("cannot read workflow `nope.yaml`"),
            "{problem:?}"
        );
        assert_eq!((problem.line, problem.column), (4, 15));
        assert_eq!(diagnostics[0].origin(), "parent.yaml");
    }

    #[test]
    fn inputs_are_checked_against_the_childs_declaration() {
        let parent =
            "name: parent\ntasks:\n  one:\n    workflow: child.yaml\n    input: {m: 1, lable: y}\n";
        let Err(diagnostics) = load(&[("parent.yaml", parent), ("child.yaml", CHILD)]) else {
            panic!("must fail")
        };
        let messages: Vec<String> = diagnostics[0]
            .problems()
            .iter()
            .map(|p| format!("{} | {}", p.message, p.hint.clone().unwrap_or_default()))
            .collect();
        let all = messages.join("\n");
        assert!(
            all.contains("gives input `lable`") && all.contains("did you mean `label`?"),
            "{all}"
        );
        assert!(all.contains("gives input `m`"), "{all}");
        assert!(
            all.contains("does not give input `n`, which workflow `child` (child.yaml) requires"),
            "{all}"
        );
        assert!(
            diagnostics[0].problems().iter().all(|p| p.line == 5),
            "{all}"
        );
    }

    #[test]
    fn an_invalid_child_is_reported_in_its_own_file() {
        let parent = "name: parent\ntasks:\n  one:\n    workflow: child.yaml\n";
        let child = "name: child\ntasks:\n  a:\n    acton: echo\n";
        let Err(diagnostics) = load(&[("parent.yaml", parent), ("child.yaml", child)]) else {
            panic!("must fail")
        };
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].origin(), "child.yaml");
    }

    #[test]
    fn action_and_workflow_exclude_each_other_and_max_depth_needs_a_workflow() {
        let both = "name: p\ntasks:\n  one:\n    action: echo\n    workflow: c.yaml\n  two:\n    action: echo\n    max_depth: 2\n  three:\n    workflow: c.yaml\n    max_depth: 0\n  four:\n    workflow: c.yaml\n    queue: gpu\n";
        let Err(d) = Workflow::parse(both, "p.yaml") else {
            panic!("must fail")
        };
        let all: Vec<&str> = d.problems().iter().map(|p| p.message.as_str()).collect();
        assert!(
            all.iter()
                .any(|m| m.contains("task `four` sets `queue` but starts a sub-workflow")),
            "{all:?}"
        );
        assert!(
            all.iter()
                .any(|m| m.contains("has both an `action` and a `workflow`")),
            "{all:?}"
        );
        assert!(
            all.iter()
                .any(|m| m.contains("sets `max_depth` but has no `workflow`")),
            "{all:?}"
        );
        assert!(
            all.iter()
                .any(|m| m.contains("`max_depth` must be at least 1")),
            "{all:?}"
        );
    }
}
