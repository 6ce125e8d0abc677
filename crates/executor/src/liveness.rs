//! Whether this executor is caught up with `weft.executor`, and so may judge
//! silence.
//!
//! The reaper reads a worker's silence in the database: the last heartbeat
//! an executor recorded, the deadline set when its start was recorded. Both
//! travel through `weft.executor` behind every other message, so while an
//! executor is down, or behind a backlog, the database shows healthy
//! workers as silent and finished actions as running — and a completion
//! may be waiting right behind. The rule: an executor reaps nothing (no
//! silence, no deadline) and re-sends no dispatch until it has been caught
//! up for at least the heartbeat grace — since it started, and since it was
//! last behind. Caught up means: the broker could be asked, and the
//! messages ready in `weft.executor` plus those this executor is still
//! applying are at most its prefetch, and no handler is retrying a
//! transient failure. Within one grace of being caught up, every live
//! worker has had a heartbeat recorded at its arrival, on the database's
//! clock.
//!
//! [`Liveness`] is the pure decision (driven with explicit instants in
//! tests); [`Handlers`] is what the consumer's handlers report to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How far this executor is behind, as last observed; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Since when every observation found it caught up (`None`: behind, or
    /// not observed yet — an executor starts behind).
    caught_up_since: Option<Instant>,
    /// The most messages waiting that still count as caught up.
    threshold: u64,
}

impl Liveness {
    /// An executor that has not looked yet: behind. `threshold` is the most
    /// messages waiting (ready in the queue plus being applied) that still
    /// count as caught up — the prefetch: a full prefetch window is
    /// normal work, more is a backlog.
    #[must_use]
    pub const fn new(threshold: u64) -> Self {
        Self {
            caught_up_since: None,
            threshold,
        }
    }

    /// One that has been caught up since `since` (for tests that drive
    /// [`crate::Reaper`] by hand).
    #[must_use]
    pub const fn caught_up_since(since: Instant, threshold: u64) -> Self {
        Self {
            caught_up_since: Some(since),
            threshold,
        }
    }

    /// Records an observation at `now`: `backlog` is the messages waiting,
    /// `None` when they could not be counted (the broker unreachable, a
    /// handler retrying a failure) — which counts as behind.
    pub fn observe(&mut self, backlog: Option<u64>, now: Instant) {
        match backlog {
            Some(waiting) if waiting <= self.threshold => {
                self.caught_up_since.get_or_insert(now);
            }
            _ => self.caught_up_since = None,
        }
    }

    /// Whether silence may be judged at `now`: caught up for at least
    /// `grace`.
    #[must_use]
    pub fn may_reap(&self, now: Instant, grace: Duration) -> bool {
        self.caught_up_since
            .is_some_and(|since| now.saturating_duration_since(since) >= grace)
    }
}

/// What the consumer's handlers tell the reaper: how many deliveries are
/// being applied, and whether one had to retry a transient failure since
/// the last look. Cheap to clone; shared by every handler.
#[derive(Debug, Clone, Default)]
pub(crate) struct Handlers {
    inner: Arc<HandlersInner>,
}

#[derive(Debug, Default)]
struct HandlersInner {
    applying: AtomicU64,
    stalled: AtomicBool,
}

/// A delivery being applied; counted until dropped.
#[derive(Debug)]
pub(crate) struct Applying(Arc<HandlersInner>);

impl Drop for Applying {
    fn drop(&mut self) {
        self.0.applying.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Handlers {
    /// Counts a delivery as being applied until the guard is dropped.
    pub(crate) fn applying(&self) -> Applying {
        self.inner.applying.fetch_add(1, Ordering::Relaxed);
        Applying(Arc::clone(&self.inner))
    }

    /// A handler could not apply its delivery now and retries: messages
    /// wait behind it.
    pub(crate) fn stalled(&self) {
        self.inner.stalled.store(true, Ordering::Relaxed);
    }

    /// The messages waiting, given those `ready` in the queue (`None`:
    /// unknown), or `None` if a handler stalled since the last call.
    pub(crate) fn backlog(&self, ready: Option<u32>) -> Option<u64> {
        let stalled = self.inner.stalled.swap(false, Ordering::Relaxed);
        let ready = ready?;
        (!stalled).then(|| u64::from(ready) + self.inner.applying.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    #[test]
    fn a_fresh_executor_waits_one_grace_after_its_first_caught_up_look() {
        let t0 = Instant::now();
        let mut liveness = Liveness::new(512);
        assert!(!liveness.may_reap(t0, GRACE), "nothing observed yet");
        liveness.observe(Some(3), t0);
        assert!(!liveness.may_reap(t0, GRACE));
        assert!(!liveness.may_reap(t0 + GRACE - Duration::from_millis(1), GRACE));
        liveness.observe(Some(0), t0 + Duration::from_secs(5));
        assert!(
            liveness.may_reap(t0 + GRACE, GRACE),
            "later caught-up looks keep the first instant"
        );
    }

    #[test]
    fn a_backlog_or_an_unknown_backlog_starts_the_wait_again() {
        let t0 = Instant::now();
        let mut liveness = Liveness::caught_up_since(t0, 512);
        assert!(liveness.may_reap(t0 + GRACE, GRACE));
        liveness.observe(Some(513), t0 + GRACE);
        assert!(
            !liveness.may_reap(t0 + GRACE * 10, GRACE),
            "behind a backlog"
        );
        liveness.observe(Some(512), t0 + GRACE * 2);
        assert!(!liveness.may_reap(t0 + GRACE * 2, GRACE));
        assert!(liveness.may_reap(t0 + GRACE * 3, GRACE));
        liveness.observe(None, t0 + GRACE * 3);
        assert!(
            !liveness.may_reap(t0 + GRACE * 4, GRACE),
            "the broker could not be asked"
        );
    }

    #[test]
    fn handlers_report_what_they_apply_and_their_stalls_once() {
        let handlers = Handlers::default();
        assert_eq!(handlers.backlog(Some(7)), Some(7));
        let one = handlers.applying();
        let two = handlers.applying();
        assert_eq!(handlers.backlog(Some(7)), Some(9));
        drop(one);
        assert_eq!(
            handlers.backlog(None),
            None,
            "the queue could not be counted"
        );
        handlers.stalled();
        assert_eq!(handlers.backlog(Some(0)), None, "a handler retried since");
        assert_eq!(handlers.backlog(Some(0)), Some(1), "reported once");
        drop(two);
        assert_eq!(handlers.backlog(Some(0)), Some(0));
    }
}
