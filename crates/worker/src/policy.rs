//! What a worker agrees to run: the actions it accepts (`--actions`,
//! `shell` only when listed) and how `shell` runs (a clean environment,
//! `--pass-env`, a working directory of its own or one under
//! `--shell-cwd-root`).
//!
//! A dispatch of an action the policy refuses is declined like one of an
//! action the worker does not have: another worker of the pool that runs
//! it gets it, or the attempt fails naming the pool and the policy.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::action::ActionRegistry;

/// The built-in action that runs programs; off unless listed.
pub const SHELL: &str = "shell";

/// The environment variables every `shell` command gets from the worker's
/// own environment (when set there), beside the task's `env` and the
/// names of `--pass-env`.
pub const BASE_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// What a worker runs and how (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerPolicy {
    /// The actions this worker accepts. `None`: every action it has but
    /// `shell`.
    pub actions: Option<BTreeSet<String>>,
    /// How `shell` runs, when it is accepted.
    pub shell: ShellPolicy,
}

/// How the `shell` action runs its commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellPolicy {
    /// Names of the worker's environment variables a command also gets
    /// (`--pass-env`), beside [`BASE_ENV`] and the task's `env`.
    pub pass_env: Vec<String>,
    /// Where a task's `cwd` may point (`--shell-cwd-root`): a directory
    /// at or under it. Without it, `cwd` is refused; every command runs in
    /// a fresh directory of its own, removed when it ends.
    pub cwd_root: Option<PathBuf>,
}

/// An `--actions` list naming an action the worker does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--actions lists {}, which this worker does not have (it has: {})",
    quoted(.unknown), .known.join(", ")
)]
pub struct UnknownActions {
    /// The listed names it does not have.
    pub unknown: Vec<String>,
    /// The actions it has.
    pub known: Vec<String>,
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which of a worker's actions its policy accepts and which it refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Accepted, sorted.
    pub accepted: Vec<String>,
    /// Refused, sorted: the worker has them, its policy says no.
    pub refused: Vec<String>,
}

impl WorkerPolicy {
    /// Accepts every action of `registry`, `shell` included: for a
    /// program that trusts whatever it registered (tests, `weft dev`).
    #[must_use]
    pub fn every_action_of(registry: &ActionRegistry) -> Self {
        Self {
            actions: Some(registry.names().into_iter().map(str::to_owned).collect()),
            ..Self::default()
        }
    }

    /// Splits `known` (the worker's actions) into accepted and refused.
    ///
    /// # Errors
    /// When `--actions` lists a name the worker does not have: a typo
    /// would otherwise quietly refuse what the operator meant to allow.
    pub fn split<'a>(
        &self,
        known: impl IntoIterator<Item = &'a str>,
    ) -> Result<Allowed, UnknownActions> {
        let known: BTreeSet<&str> = known.into_iter().collect();
        if let Some(listed) = &self.actions {
            let unknown: Vec<String> = listed
                .iter()
                .filter(|a| !known.contains(a.as_str()))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(UnknownActions {
                    unknown,
                    known: known.iter().map(|a| (*a).to_owned()).collect(),
                });
            }
        }
        let (accepted, refused) = known
            .into_iter()
            .map(str::to_owned)
            .partition(|a| self.accepts(a));
        Ok(Allowed { accepted, refused })
    }

    fn accepts(&self, action: &str) -> bool {
        match &self.actions {
            Some(listed) => listed.contains(action),
            None => action != SHELL,
        }
    }
}

impl fmt::Display for WorkerPolicy {
    /// The policy as its flags say it, for logs and errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.actions {
            Some(listed) => write!(
                f,
                "--actions {}",
                listed.iter().cloned().collect::<Vec<_>>().join(",")
            ),
            None => write!(f, "every action but `{SHELL}` (no --actions)"),
        }
    }
}

impl ShellPolicy {
    /// The directory a command asked to run in (`cwd`) may be used: it
    /// exists and, symbolic links resolved, lies at or under the root.
    ///
    /// # Errors
    /// Why not, in words for the attempt's error.
    pub fn allowed_cwd(&self, cwd: &str) -> Result<PathBuf, String> {
        let Some(root) = &self.cwd_root else {
            return Err(format!(
                "`cwd` ({cwd}) is not allowed on this worker: commands run in a directory of \
                 their own unless the worker is started with --shell-cwd-root DIR"
            ));
        };
        let resolved = Path::new(cwd)
            .canonicalize()
            .map_err(|e| format!("`cwd` ({cwd}) cannot be used: {e}"))?;
        let root = root
            .canonicalize()
            .map_err(|e| format!("--shell-cwd-root {} cannot be used: {e}", root.display()))?;
        if resolved.starts_with(&root) {
            Ok(resolved)
        } else {
            Err(format!(
                "`cwd` ({cwd}) is outside this worker's --shell-cwd-root ({})",
                root.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(names: &[&str]) -> WorkerPolicy {
        WorkerPolicy {
            actions: Some(names.iter().map(|n| (*n).to_owned()).collect()),
            ..WorkerPolicy::default()
        }
    }

    const KNOWN: [&str; 4] = ["echo", "noop", "resize", "shell"];

    #[test]
    fn without_a_list_everything_but_shell_is_accepted() {
        let allowed = WorkerPolicy::default().split(KNOWN).unwrap();
        assert_eq!(allowed.accepted, ["echo", "noop", "resize"]);
        assert_eq!(allowed.refused, ["shell"]);
    }

    #[test]
    fn a_list_accepts_exactly_what_it_names_shell_included() {
        let allowed = listed(&["shell", "echo"]).split(KNOWN).unwrap();
        assert_eq!(allowed.accepted, ["echo", "shell"]);
        assert_eq!(allowed.refused, ["noop", "resize"]);
        assert_eq!(
            listed(&["shell", "echo"]).to_string(),
            "--actions echo,shell"
        );
    }

    #[test]
    fn a_listed_action_the_worker_lacks_is_an_error_naming_it() {
        let err = listed(&["echo", "shel"]).split(KNOWN).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--actions lists `shel`, which this worker does not have \
             (it has: echo, noop, resize, shell)"
        );
    }

    #[test]
    fn cwd_is_refused_without_a_root_and_outside_it() {
        let none = ShellPolicy::default();
        assert!(
            none.allowed_cwd("/tmp")
                .unwrap_err()
                .contains("--shell-cwd-root")
        );

        let root = std::env::temp_dir().join(format!("weft-policy-{}", std::process::id()));
        let inside = root.join("jobs");
        std::fs::create_dir_all(&inside).unwrap();
        let policy = ShellPolicy {
            cwd_root: Some(root.clone()),
            ..ShellPolicy::default()
        };
        assert_eq!(
            policy.allowed_cwd(inside.to_str().unwrap()).unwrap(),
            inside.canonicalize().unwrap()
        );
        // `..` out of the root is resolved before the check.
        let escape = format!("{}/jobs/../..", root.display());
        assert!(policy.allowed_cwd(&escape).unwrap_err().contains("outside"));
        assert!(
            policy
                .allowed_cwd(&format!("{}/missing", root.display()))
                .unwrap_err()
                .contains("cannot be used")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
