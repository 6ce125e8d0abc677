//! The checks of a task's `wait:` (a duration, a time, a signal or an
//! approval): what a waiting task cannot have, and a well-formed wait.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::{Validator, is_slug};
use crate::duration::parse_duration;
use crate::expr::is_template;
use crate::spec::{RawTask, RawWait};
use crate::wait::{Wait, WaitKind};

impl Validator<'_> {
    /// A task's `wait:`, if any, after refusing what a waiting task
    /// cannot have (an action, a sub-workflow, items, a pool, a
    /// per-attempt timeout, an input) and a malformed `wait`.
    pub(super) fn wait(&mut self, name: &str, raw: &Spanned<RawTask>) -> Option<Wait> {
        let t = &raw.value;
        let w = t.wait.as_ref()?;
        let conflicts = [
            (
                "action",
                t.action.as_ref().map(|a| a.referenced),
                "a wait runs no action: remove `action`, or move the wait to a task of its own that this one needs",
            ),
            (
                "workflow",
                t.workflow.as_ref().map(|a| a.referenced),
                "a wait starts no sub-workflow: remove one of them",
            ),
            (
                "with_items",
                t.with_items.as_ref().map(|a| a.referenced),
                "a wait task waits once; fan out in the tasks after it",
            ),
            (
                "queue",
                t.queue.as_ref().map(|a| a.referenced),
                "a wait runs on no worker pool (the executors keep its time): remove `queue`",
            ),
            (
                "timeout",
                t.timeout.as_ref().map(|a| a.referenced),
                "a signal's or approval's time limit is `wait.timeout`, e.g. `wait: {signal: go, timeout: 1h}`",
            ),
            (
                "input",
                t.input.as_ref().map(|a| a.referenced),
                "a wait has no input; a signal's fields are declared under `wait.input`",
            ),
        ];
        for (field, at, hint) in conflicts {
            if let Some(at) = at {
                let p = self.at(&at, format!("task `{name}` has both `wait` and `{field}`"));
                self.push(p.hint(hint));
            }
        }
        let example = "e.g. `wait: 30s`, `wait: {until: \"{{ input.at }}\"}`, `wait: {signal: go, timeout: 1h}` or `wait: {approval: true}`";
        let spec = match &w.value {
            RawWait::Other(kind) => {
                let p = self.at(
                    &w.referenced,
                    format!("task `{name}`: `wait` must be a duration or a mapping, not {kind}"),
                );
                self.push(p.hint(example));
                return None;
            }
            RawWait::For(text) => {
                let problem = if is_template(text) {
                    format!(
                        "task `{name}`: `wait` cannot be a template (`{text}`); it must be a duration"
                    )
                } else {
                    match parse_duration(text) {
                        Ok(d) => {
                            return Some(Wait {
                                kind: WaitKind::For(d),
                                timeout: None,
                            });
                        }
                        Err(why) => format!("task `{name}`: bad `wait`: {why}"),
                    }
                };
                let p = self.at(&w.referenced, problem);
                self.push(p.hint("durations look like `30s`, `5m` or `1h`; to wait until a time computed by the run, write `wait: {until: \"{{ … }}\"}`"));
                return None;
            }
            RawWait::Spec(spec) => spec,
        };
        let chosen: Vec<&str> = [
            spec.until.as_ref().map(|_| "until"),
            spec.signal.as_ref().map(|_| "signal"),
            spec.approval.as_ref().map(|_| "approval"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if chosen.len() != 1 {
            let message = if chosen.is_empty() {
                format!(
                    "task `{name}`: `wait` says what to wait for with one of `until`, `signal` or `approval`"
                )
            } else {
                format!(
                    "task `{name}`: `wait` has {}; it waits for one thing",
                    chosen
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                )
            };
            let p = self.at(&w.referenced, message);
            self.push(p.hint(example));
            return None;
        }
        let timeout = spec
            .timeout
            .as_ref()
            .and_then(|d| self.duration(name, "wait.timeout", d));
        if let Some(d) = &spec.timeout {
            if timeout == Some(Duration::ZERO) {
                let p = self.at(
                    &d.referenced,
                    format!("task `{name}`: `wait.timeout` must be longer than 0"),
                );
                self.push(p);
            }
            if spec.until.is_some() {
                let p = self.at(
                    &d.referenced,
                    format!(
                        "task `{name}`: `wait.timeout` limits a signal or an approval, not `until`"
                    ),
                );
                self.push(p.hint("a wait `until` a time ends at that time: remove `timeout`"));
            }
        }
        if let Some(i) = &spec.input
            && spec.signal.is_none()
        {
            let p = self.at(&i.referenced, format!("task `{name}`: `wait.input` declares a signal's fields, but this wait is for no signal"));
            self.push(
                p.hint("an approval's result is always `{approved, by, comment}`; remove `input`"),
            );
        }
        if let Some(until) = &spec.until {
            if until.value.trim().is_empty() {
                let p = self.at(
                    &until.referenced,
                    format!("task `{name}`: `wait.until` is empty"),
                );
                self.push(p.hint(example));
                return None;
            }
            return Some(Wait {
                kind: WaitKind::Until,
                timeout: None,
            });
        }
        if let Some(approval) = &spec.approval {
            if !approval.value {
                let p = self.at(
                    &approval.referenced,
                    format!("task `{name}`: `wait: {{approval: false}}` waits for nothing"),
                );
                self.push(p.hint("write `approval: true`, or remove the wait"));
                return None;
            }
            return Some(Wait {
                kind: WaitKind::Approval,
                timeout,
            });
        }
        let signal = spec.signal.as_ref()?;
        if !is_slug(&signal.value) {
            let p = self.at(
                &signal.referenced,
                format!(
                    "task `{name}`: signal name `{}` may only use a-z, 0-9, `_`, `.` and `-`",
                    signal.value
                ),
            );
            self.push(p.hint("e.g. `signal: payment-received`; it is a name, not a template"));
        }
        let fields = spec
            .input
            .as_ref()
            .map(|i| {
                i.value
                    .iter()
                    .map(|(field, declared)| (field.clone(), self.input(field, declared, false)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Wait {
            kind: WaitKind::Signal {
                name: signal.value.clone(),
                fields,
            },
            timeout,
        })
    }
}
