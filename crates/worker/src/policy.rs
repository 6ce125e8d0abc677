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

/// A policy a worker cannot start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `--actions` names actions the worker does not have: a typo would
    /// otherwise quietly refuse what the operator meant to allow.
    #[error(
        "--actions lists {}, which this worker does not have (it has: {})",
        quoted(.unknown), .known.join(", ")
    )]
    UnknownActions {
        /// The listed names it does not have.
        unknown: Vec<String>,
        /// The actions it has.
        known: Vec<String>,
    },
    /// `--shell-cwd-root` is not a directory that can be used.
    #[error("--shell-cwd-root {path}: {problem}")]
    CwdRoot {
        /// As given.
        path: String,
        /// Why not.
        problem: String,
    },
    /// A `--pass-env` name that cannot be an environment variable's.
    #[error("--pass-env `{name}`: {problem}")]
    PassEnv {
        /// As given.
        name: String,
        /// Why not.
        problem: &'static str,
    },
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
    /// [`PolicyError::UnknownActions`] when `--actions` lists a name the
    /// worker does not have.
    pub fn split<'a>(
        &self,
        known: impl IntoIterator<Item = &'a str>,
    ) -> Result<Allowed, PolicyError> {
        let known: BTreeSet<&str> = known.into_iter().collect();
        if let Some(listed) = &self.actions {
            let unknown: Vec<String> = listed
                .iter()
                .filter(|a| !known.contains(a.as_str()))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(PolicyError::UnknownActions {
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
    /// The policy as a worker starts with it: `--pass-env` names that can
    /// be variables' names, and `--shell-cwd-root` an existing directory,
    /// resolved once (symbolic links and `..`), so that a bad setting
    /// stops the worker at start rather than fail tasks one by one.
    ///
    /// # Errors
    /// The first setting that cannot be used.
    pub fn checked(&self) -> Result<Self, PolicyError> {
        for name in &self.pass_env {
            let problem = if name.is_empty() {
                Some("is empty")
            } else if name.contains(['=', '\0']) {
                Some("cannot contain `=` or NUL")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(PolicyError::PassEnv {
                    name: name.clone(),
                    problem,
                });
            }
        }
        let cwd_root = match &self.cwd_root {
            None => None,
            Some(root) => {
                let bad = |problem: String| PolicyError::CwdRoot {
                    path: root.display().to_string(),
                    problem,
                };
                let resolved = root.canonicalize().map_err(|e| bad(e.to_string()))?;
                if !resolved.is_dir() {
                    return Err(bad("is not a directory".to_owned()));
                }
                Some(resolved)
            }
        };
        Ok(Self {
            pass_env: self.pass_env.clone(),
            cwd_root,
        })
    }

    /// The directory a command asked to start in (`cwd`) may be used: an
    /// absolute path to a directory which, symbolic links and `..`
    /// resolved, lies at or under the root. The root sets where commands
    /// start; it does not confine them (a command may `cd` anywhere its
    /// user may).
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
        if !Path::new(cwd).is_absolute() {
            return Err(format!(
                "`cwd` ({cwd}) must be an absolute path (under {})",
                root.display()
            ));
        }
        let resolved = Path::new(cwd)
            .canonicalize()
            .map_err(|e| format!("`cwd` ({cwd}) cannot be used: {e}"))?;
        if !resolved.starts_with(root) {
            return Err(format!(
                "`cwd` ({cwd}) is outside this worker's --shell-cwd-root ({})",
                root.display()
            ));
        }
        if !resolved.is_dir() {
            return Err(format!("`cwd` ({cwd}) is not a directory"));
        }
        Ok(resolved)
    }
}

/// Makes this process's `/proc` files (its environment, command line and
/// memory) unreadable to the programs `shell` starts, which run as the
/// same user: without it a command could read the worker's broker URL,
/// password included, from `/proc/$PPID/environ`. Linux's
/// `PR_SET_DUMPABLE` = 0 (it also turns off the worker's core dumps);
/// the children, dumpable again after their `exec`, are not affected.
///
/// # Errors
/// If the kernel refuses.
pub(crate) fn hide_from_children() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{DumpableBehavior, set_dumpable_behavior};
        set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    }
    Ok(())
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
    fn cwd_is_refused_without_a_root_outside_it_relative_or_not_a_directory() {
        let none = ShellPolicy::default();
        assert!(
            none.allowed_cwd("/tmp")
                .unwrap_err()
                .contains("--shell-cwd-root")
        );

        let base = std::env::temp_dir().join(format!("weft-policy-{}", std::process::id()));
        let root = base.join("root");
        let inside = root.join("jobs");
        let outside = base.join("elsewhere");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(inside.join("file"), "").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let policy = ShellPolicy {
            cwd_root: Some(root.clone()),
            ..ShellPolicy::default()
        }
        .checked()
        .unwrap();
        let at = |p: &std::path::Path| policy.allowed_cwd(p.to_str().unwrap());
        assert_eq!(at(&inside).unwrap(), inside.canonicalize().unwrap());
        // `..` and a symbolic link out of the root are resolved first.
        assert!(at(&inside.join("../..")).unwrap_err().contains("outside"));
        assert!(at(&root.join("link")).unwrap_err().contains("outside"));
        assert!(
            at(&inside.join("file"))
                .unwrap_err()
                .contains("not a directory")
        );
        assert!(
            at(&root.join("missing"))
                .unwrap_err()
                .contains("cannot be used")
        );
        assert!(policy.allowed_cwd("jobs").unwrap_err().contains("absolute"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_bad_root_or_pass_env_name_stops_the_worker_at_start() {
        let missing = ShellPolicy {
            cwd_root: Some("/no/such/weft/root".into()),
            ..ShellPolicy::default()
        };
        assert!(
            missing
                .checked()
                .unwrap_err()
                .to_string()
                .starts_with("--shell-cwd-root /no/such/weft/root: ")
        );
        let bad = ShellPolicy {
            pass_env: vec!["A=B".into()],
            ..ShellPolicy::default()
        };
        assert_eq!(
            bad.checked().unwrap_err().to_string(),
            "--pass-env `A=B`: cannot contain `=` or NUL"
        );
    }

    #[test]
    fn the_worker_hides_its_proc_files() {
        super::hide_from_children().unwrap();
        #[cfg(target_os = "linux")]
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }
}
