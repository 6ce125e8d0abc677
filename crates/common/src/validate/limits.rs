//! The checks of limits shared across runs: a workflow's `limit:` and a
//! task's `mutex` or `semaphore`.

use indexmap::IndexMap;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::Validator;
use crate::shared_limit::{LimitOrder, RunLimit, TaskLock};
use crate::spec::{RawLimit, RawTask};

impl Validator<'_> {
    /// The workflow's `limit`: a `key` template that reads only the run's
    /// input (and `workflow`), `runs` and `runs_total` of at least 1, an
    /// `order` of `fifo` or `fair`.
    pub(super) fn limit(
        &mut self,
        written: Option<&Spanned<RawLimit>>,
        inputs: &IndexMap<String, Option<Value>>,
    ) -> Option<RunLimit> {
        let raw = written?;
        let l = &raw.value;
        let before = self.problems.len();
        match &l.key {
            None => {
                let p = self.at(&raw.referenced, "`limit` has no `key`");
                self.push(p.hint(
                    "say what runs share the limit: `limit: { key: \"{{ input.customer }}\", runs: 2 }` (a constant key puts every run in one line)",
                ));
            }
            Some(key) => self.check_limit_key(key, inputs),
        }
        let count = |this: &mut Self, field: &str, n: Option<&Spanned<i64>>| -> Option<u32> {
            let n = n?;
            let problem = if n.value < 1 {
                format!(
                    "`limit.{field}` must be at least 1, not {}: it is how many runs may hold a slot at once",
                    n.value
                )
            } else if let Ok(v) = i32::try_from(n.value) {
                return u32::try_from(v).ok();
            } else {
                format!(
                    "`limit.{field}` must be at most {}, not {}",
                    i32::MAX,
                    n.value
                )
            };
            let p = this.at(&n.referenced, problem);
            this.push(p.hint("omit `limit` for no limit across runs"));
            None
        };
        let runs = count(self, "runs", l.runs.as_ref());
        let runs_total = count(self, "runs_total", l.runs_total.as_ref());
        if l.runs.is_none() {
            let p = self.at(&raw.referenced, "`limit` has no `runs`");
            self.push(p.hint("say how many runs of one key may run at once: `runs: 2`"));
        }
        if let (Some(r), Some(t), Some(written)) = (runs, runs_total, l.runs_total.as_ref())
            && t < r
        {
            let p = self.at(
                &written.referenced,
                format!("`limit.runs_total` ({t}) is less than `limit.runs` ({r})"),
            );
            self.push(p.hint("`runs_total` caps every key together: make it at least `runs`"));
        }
        let order = match &l.order {
            None => LimitOrder::Fifo,
            Some(o) => LimitOrder::parse(&o.value).unwrap_or_else(|| {
                let p = self.at(
                    &o.referenced,
                    format!("`limit.order` is `{}`; it must be `fifo` or `fair`", o.value),
                );
                self.push(p.hint(
                    "`fifo`: the run that waited longest goes next; `fair`: round-robin between keys",
                ));
                LimitOrder::Fifo
            }),
        };
        if self.problems.len() != before {
            return None;
        }
        let key = l.key.as_ref()?.value.clone();
        Some(RunLimit {
            label: RunLimit::label_of(&key),
            key,
            runs: runs?,
            runs_total,
            order,
        })
    }

    /// A task's `mutex` or `semaphore` (its template is checked with the
    /// task's other expressions): not both, not on an exit handler (it
    /// must run), not on a fan-out (one lock per task: items would share
    /// it; not supported yet), a semaphore with a `key` and a `limit` ≥ 1.
    pub(super) fn task_lock(&mut self, name: &str, raw: &Spanned<RawTask>) -> Option<TaskLock> {
        let t = &raw.value;
        let (kind, at, key, limit) = match (&t.mutex, &t.semaphore) {
            (None, None) => return None,
            (Some(m), Some(_)) => {
                let p = self.at(
                    &m.referenced,
                    format!("task `{name}` has both a `mutex` and a `semaphore`"),
                );
                self.push(p.hint("a mutex is a semaphore with `limit: 1`: keep one of them"));
                return None;
            }
            (Some(m), None) => ("mutex", m.referenced, Some(m.value.clone()), 1),
            (None, Some(s)) => {
                let limit = match &s.value.limit {
                    None => {
                        let p = self.at(
                            &s.referenced,
                            format!("task `{name}`: `semaphore` has no `limit`"),
                        );
                        self.push(p.hint("say how many tasks may hold it at once: `semaphore: { key: db, limit: 3 }`"));
                        return None;
                    }
                    Some(l) if l.value < 1 || l.value > i64::from(i32::MAX) => {
                        let p = self.at(
                            &l.referenced,
                            format!(
                                "task `{name}`: `semaphore.limit` must be at least 1, not {}",
                                l.value
                            ),
                        );
                        self.push(p.hint("a `mutex: NAME` is the same as `limit: 1`"));
                        return None;
                    }
                    Some(l) => u32::try_from(l.value).unwrap_or(1),
                };
                if s.value.key.is_none() {
                    let p = self.at(
                        &s.referenced,
                        format!("task `{name}`: `semaphore` has no `key`"),
                    );
                    self.push(p.hint(
                        "name what it guards: `semaphore: { key: \"{{ input.db }}\", limit: 3 }`",
                    ));
                    return None;
                }
                (
                    "semaphore",
                    s.referenced,
                    s.value.key.as_ref().map(|k| k.value.clone()),
                    limit,
                )
            }
        };
        if self.exit_phase {
            let p = self.at(&at, format!("exit handler `{name}` cannot take a `{kind}`"));
            self.push(
                p.hint("exit handlers run whatever else holds what: move the lock to a main task"),
            );
            return None;
        }
        if t.with_items.is_some() {
            let p = self.at(
                &at,
                format!("task `{name}`: a fan-out (`with_items`) cannot take a `{kind}` yet"),
            );
            self.push(p.hint("lock a plain task instead (one lock per task), e.g. one that needs the fan-out or that it needs"));
            return None;
        }
        Some(TaskLock {
            kind,
            key: key?,
            limit,
        })
    }
}
