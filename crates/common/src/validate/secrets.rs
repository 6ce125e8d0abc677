//! Where secret inputs flow (`secret: true`). A task whose `input` or
//! `with_items` reads one has its rendered input sealed; a secret that
//! would land in a task's result (`echo` returns its input) or in the
//! workflow's `output:` gets a warning — it is shown there as `***`; a
//! secret read where a value is stored or shown in plain text (a lock or
//! limit key, a wait's time) or handed to a sub-workflow is refused.

use std::collections::BTreeSet;

use serde_saphyr::Location;

use super::Validator;
use crate::workflow::Task;

/// One place an expression reads a secret input (or the whole `input`).
#[derive(Debug)]
pub(crate) struct SecretRead {
    task: Option<String>,
    field: &'static str,
    /// The secret input read; `None`: the whole `input`.
    input: Option<String>,
    location: Location,
}

impl SecretRead {
    fn what(&self) -> String {
        match &self.input {
            Some(name) => format!("secret input `{name}`"),
            None => "the whole `input`, which holds secret inputs,".to_owned(),
        }
    }
}

impl Validator<'_> {
    /// Notes that `field` of `task` (`None`: the workflow) reads
    /// `input.<second>` (`second` `None`: the whole input), if that is a
    /// secret.
    pub(super) fn note_secret_read(
        &mut self,
        task: Option<&str>,
        field: &'static str,
        second: Option<&str>,
        location: Location,
    ) {
        if self.secret_inputs.is_empty() {
            return;
        }
        let input = match second {
            Some(name) if self.secret_inputs.contains(name) => Some(name.to_owned()),
            Some(_) => return,
            None => None,
        };
        self.secret_reads.push(SecretRead {
            task: task.map(str::to_owned),
            field,
            input,
            location,
        });
    }

    /// Warns or refuses where secrets flow (see the module); returns the
    /// tasks whose rendered input holds a secret.
    pub(super) fn check_secret_reads(&mut self, tasks: &[Task]) -> BTreeSet<String> {
        let mut readers = BTreeSet::new();
        for read in std::mem::take(&mut self.secret_reads) {
            let what = read.what();
            let field = read.field;
            let Some(name) = read.task.as_deref() else {
                match field {
                    "output" => {
                        let p = self.at(
                            &read.location,
                            format!("the workflow's `output` reads {what}: the run's output will show it as `***`"),
                        );
                        self.warnings.push(p.hint(
                            "leave secrets out of `output`: it is stored and shown to everyone who can read the run",
                        ));
                    }
                    _ => {
                        let p = self.at(
                            &read.location,
                            format!(
                                "`{field}` cannot read {what}: it is stored and shown in plain text"
                            ),
                        );
                        self.push(p.hint("key the limit on an input that is not secret"));
                    }
                }
                continue;
            };
            let task = tasks.iter().find(|t| t.name == name);
            match field {
                "input" | "with_items" => {
                    readers.insert(name.to_owned());
                    if task.is_some_and(|t| t.call.is_some()) {
                        let p = self.at(
                            &read.location,
                            format!("task `{name}`: `{field}` passes {what} to a sub-workflow, which cannot take secrets yet"),
                        );
                        self.push(p.hint("run the step that needs the secret in this workflow"));
                    } else if field == "input" && task.is_some_and(|t| t.action == "echo") {
                        let p = self.at(
                            &read.location,
                            format!("task `{name}`: `input` reads {what}, and `echo` returns its input as the task's result: the result will show it as `***`"),
                        );
                        self.warnings.push(p.hint(
                            "pass secrets only to the actions that use them, not into a result",
                        ));
                    }
                }
                "mutex" | "semaphore.key" | "wait.until" => {
                    let p = self.at(
                        &read.location,
                        format!("task `{name}`: `{field}` cannot read {what}: it is stored and shown in plain text"),
                    );
                    self.push(p.hint("use an input that is not secret here"));
                }
                // `when` and `retry.when` decide, and store nothing of it
                // but a reason, which is redacted.
                _ => {}
            }
        }
        readers
    }
}
