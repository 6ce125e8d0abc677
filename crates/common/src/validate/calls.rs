//! The checks of a `workflow:` task: the sub-workflow file it names (read
//! at submit, so never an expression), its `max_depth`, and what such a
//! task cannot have (a worker pool).

use serde_saphyr::{Location, Spanned};

use super::Validator;
use crate::expr::is_template;
use crate::spec::RawTask;
use crate::workflow::{Call, DEFAULT_MAX_DEPTH};

impl Validator<'_> {
    /// The sub-workflow a task starts (`workflow:`, `max_depth`), if any.
    pub(super) fn call(&mut self, name: &str, raw: &Spanned<RawTask>) -> Option<Call> {
        let t = &raw.value;
        let max_depth = match &t.max_depth {
            None => DEFAULT_MAX_DEPTH,
            Some(d) if t.workflow.is_none() => {
                let p = self.at(
                    &d.referenced,
                    format!("task `{name}` sets `max_depth` but has no `workflow`"),
                );
                self.push(p.hint(
                    "`max_depth` bounds how deep the runs a `workflow:` task starts may nest",
                ));
                DEFAULT_MAX_DEPTH
            }
            Some(d) if d.value < 1 => {
                let p = self.at(
                    &d.referenced,
                    format!(
                        "task `{name}`: `max_depth` must be at least 1, not {}",
                        d.value
                    ),
                );
                self.push(p.hint("1 lets the task start a child run, but that child start none"));
                DEFAULT_MAX_DEPTH
            }
            Some(d) => u32::try_from(d.value).unwrap_or(u32::MAX),
        };
        let w = t.workflow.as_ref()?;
        if let Some(q) = &t.queue {
            let p = self.at(
                &q.referenced,
                format!("task `{name}` sets `queue` but starts a sub-workflow"),
            );
            self.push(p.hint("a `workflow:` task runs on no worker pool (the executors start its child run): remove `queue`; the child's tasks set their own"));
        }
        let path = w.value.trim();
        if path.is_empty() || is_template(path) {
            let p = self.at(
                &w.referenced,
                format!(
                    "task `{name}`: `workflow` must name a file, not `{}`",
                    w.value
                ),
            );
            self.push(p.hint("e.g. `workflow: child.yaml`, relative to this file; it is read at submit, so it cannot be an expression"));
            return None;
        }
        let span = |at: &Location| self.at(at, "").span.unwrap_or((0, 1));
        Some(Call {
            path: path.to_owned(),
            max_depth,
            path_span: span(&w.referenced),
            input_span: t.input.as_ref().map(|i| span(&i.referenced)),
        })
    }
}
