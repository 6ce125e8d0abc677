//! Schedules, pure: when a schedule ticks, which ticks to fire after a
//! delay or an outage, what to do while an earlier run still runs.
//!
//! A tick is a nominal time — the instant the cron expression (or the
//! `@every` interval) names — and is what identifies a scheduled run: the
//! store keys a schedule's runs by (schedule, tick), so a tick is fired
//! once whoever computes it. Everything here is a function of the
//! schedule's definition and of times the caller passes in (the
//! database's clock, never a local one), so every executor computes the
//! same ticks.
//!
//! - [`Timing::parse`] reads `--cron` and `--timezone`: a standard
//!   5-field cron expression, or 6 fields with seconds first, the
//!   `@hourly`-style nicknames, or `@every DURATION` (at least 1 s; ticks
//!   at whole multiples of the interval since the Unix epoch, so they do
//!   not depend on when the schedule was created).
//! - [`Timing::plan`] decides, at a claim, which due ticks start a run
//!   under a [`CatchUp`] policy and where the schedule's cursor goes next.
//! - [`jitter`] spreads a tick's start deterministically within
//!   `--jitter`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use sha2::{Digest as _, Sha256};

/// The most missed ticks `--catch-up all` fires at one claim: the newest
/// ones; older ones are recorded as missed.
pub const CATCH_UP_BOUND: usize = 1_000;

/// The shortest `@every` interval.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// What is wrong with a schedule's flags; each names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `--cron` does not parse.
    #[error("--cron `{expr}` is not a schedule: {reason}")]
    BadCron {
        /// As given.
        expr: String,
        /// Why.
        reason: String,
    },
    /// `--timezone` is not an IANA time zone name.
    #[error("--timezone `{tz}` is not a time zone name{hint}")]
    BadTimezone {
        /// As given.
        tz: String,
        /// " (did you mean …?)" or an example.
        hint: String,
    },
}

/// How a schedule ticks.
#[derive(Debug, Clone)]
enum Cadence {
    /// A cron expression, evaluated in the schedule's time zone.
    Cron(Box<Cron>),
    /// `@every`: whole multiples of this many milliseconds since the epoch.
    Every(i64),
}

/// A schedule's `--cron` and `--timezone`, parsed.
#[derive(Debug, Clone)]
pub struct Timing {
    cadence: Cadence,
    tz: Tz,
}

/// Which due ticks a claim fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Only ticks at most the grace late; ticks that came due while no
    /// executor ran are missed.
    None,
    /// One run, for the newest due tick, however late.
    #[default]
    Latest,
    /// Every due tick, the newest [`CATCH_UP_BOUND`] at most.
    All,
}

/// What a tick does while a run the schedule started earlier still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Start another run alongside.
    #[default]
    Allow,
    /// Start nothing; the tick is recorded as skipped.
    Skip,
    /// Cancel the earlier run (the ordinary cancellation) and start the new one.
    CancelPrevious,
}

macro_rules! words {
    ($ty:ty, $flag:literal, $($variant:ident => $word:literal),+) => {
        impl $ty {
            /// Every value, in the order `--help` lists them.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The word for it (flag value, database column).
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $word),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim() {
                    $($word => Ok(Self::$variant),)+
                    other => Err(format!(
                        "{} `{other}` is not one of: {}",
                        $flag,
                        [$($word),+].join(", ")
                    )),
                }
            }
        }
    };
}

words!(CatchUp, "--catch-up", None => "none", Latest => "latest", All => "all");
words!(Overlap, "--overlap", Allow => "allow", Skip => "skip", CancelPrevious => "cancel_previous");

/// What a claim does with a schedule's due ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The ticks to start a run for, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Due ticks not fired (their count, at most [`CATCH_UP_BOUND`] + 1
    /// counted: `missed_more` says there were more).
    pub missed: usize,
    /// More ticks were missed than counted.
    pub missed_more: bool,
    /// The oldest due tick not fired, if any.
    pub missed_from: Option<DateTime<Utc>>,
    /// The newest due tick not fired, if any.
    pub missed_to: Option<DateTime<Utc>>,
    /// The schedule's next tick: the first one after `now`.
    pub next_tick: DateTime<Utc>,
}

impl Timing {
    /// Parses `--cron` in `--timezone` (an IANA name; `UTC` when `None`).
    ///
    /// # Errors
    /// [`ScheduleError`] naming the flag and what is wrong.
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let tz = match timezone.map(str::trim) {
            None | Some("") => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| ScheduleError::BadTimezone {
                tz: name.to_owned(),
                hint: timezone_hint(name),
            })?,
        };
        let bad = |reason: String| ScheduleError::BadCron {
            expr: expr.to_owned(),
            reason,
        };
        let text = expr.trim();
        let cadence = if let Some(every) = text.strip_prefix("@every") {
            let every = every.trim();
            let interval = crate::parse_duration(every).map_err(bad)?;
            if interval < MIN_EVERY {
                return Err(bad(format!(
                    "`@every {every}` is shorter than the shortest interval, 1s"
                )));
            }
            let millis = i64::try_from(interval.as_millis())
                .map_err(|_| bad(format!("`@every {every}` is too long")))?;
            Cadence::Every(millis)
        } else {
            let fields = text.split_whitespace().count();
            if !text.starts_with('@') && !(5..=6).contains(&fields) {
                return Err(bad(format!(
                    "it has {fields} field{}; write 5 (minute hour day-of-month month day-of-week), \
                     6 with seconds first, a nickname such as `@hourly`, or `@every 10s`",
                    if fields == 1 { "" } else { "s" }
                )));
            }
            let cron = CronParser::builder()
                .seconds(Seconds::Optional)
                .year(Year::Disallowed)
                .build()
                .parse(text)
                .map_err(|e| bad(e.to_string()))?;
            Cadence::Cron(Box::new(cron))
        };
        let timing = Self { cadence, tz };
        // A pattern that matches no date (`0 0 30 2 *`) never fires.
        if timing.next_after(Utc::now()).is_none() {
            return Err(bad(
                "it matches no date: the schedule would never fire".into()
            ));
        }
        Ok(timing)
    }

    /// The time zone the cron expression is read in.
    #[must_use]
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first tick strictly after `t`; `None` if there is none.
    #[must_use]
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.cadence {
            Cadence::Every(ms) => {
                let at = t.timestamp_millis();
                let next = (at.div_euclid(*ms) + 1).checked_mul(*ms)?;
                Utc.timestamp_millis_opt(next).single()
            }
            Cadence::Cron(cron) => cron
                .find_next_occurrence(&t.with_timezone(&self.tz), false)
                .ok()
                .map(|at| at.with_timezone(&Utc)),
        }
    }

    /// The last tick at or before `t`.
    fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.cadence {
            Cadence::Every(ms) => {
                let at = t.timestamp_millis().div_euclid(*ms).checked_mul(*ms)?;
                Utc.timestamp_millis_opt(at).single()
            }
            Cadence::Cron(cron) => cron
                .find_previous_occurrence(&t.with_timezone(&self.tz), true)
                .ok()
                .map(|at| at.with_timezone(&Utc)),
        }
    }

    /// The ticks in `[from, to]`, newest first, at most `max` of them, and
    /// whether there are more.
    fn due_newest_first(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max: usize,
    ) -> (Vec<DateTime<Utc>>, bool) {
        let mut ticks = Vec::new();
        let mut cursor = self.latest_at_or_before(to);
        while let Some(tick) = cursor {
            if tick < from {
                return (ticks, false);
            }
            if ticks.len() == max {
                return (ticks, true);
            }
            ticks.push(tick);
            cursor = self.latest_at_or_before(tick - chrono::Duration::milliseconds(1));
        }
        (ticks, false)
    }

    /// What a claim at `now` (the database's clock) does with a schedule
    /// whose next tick is `next_tick`: the due ticks are those in
    /// `[next_tick, now]`; `catch_up` decides which of them start a run
    /// (under [`CatchUp::None`], those at most `grace` late), and the
    /// cursor moves to the first tick after `now`. `None` when the
    /// schedule never ticks again.
    #[must_use]
    pub fn plan(
        &self,
        next_tick: DateTime<Utc>,
        now: DateTime<Utc>,
        catch_up: CatchUp,
        grace: Duration,
    ) -> Option<Plan> {
        let next = self.next_after(now)?;
        // Newest first: the bound keeps the newest ticks, and counts one more.
        let (due, more) = self.due_newest_first(next_tick, now, CATCH_UP_BOUND + 1);
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let fired: usize = match catch_up {
            CatchUp::All => due.len().min(CATCH_UP_BOUND),
            CatchUp::Latest => due.len().min(1),
            CatchUp::None => due.iter().take_while(|t| now - **t <= grace).count(),
        };
        let mut fire: Vec<DateTime<Utc>> = due[..fired].to_vec();
        fire.reverse();
        let missed_ticks = &due[fired..];
        Some(Plan {
            fire,
            missed: missed_ticks.len(),
            missed_more: more,
            missed_from: missed_ticks.last().copied(),
            missed_to: missed_ticks.first().copied(),
            next_tick: next,
        })
    }
}

/// A tick as expressions and listings show it: RFC 3339 in UTC, with
/// fractions of a second only when it has them (`2026-12-01T10:00:00Z`).
#[must_use]
pub fn tick_text(tick: DateTime<Utc>) -> String {
    tick.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Where in `[0, max)` a tick of a schedule starts: derived from the
/// schedule and the tick, so every executor computes the same, and a
/// schedule's ticks spread over the window instead of all starting late
/// by the same amount.
#[must_use]
pub fn jitter(schedule: uuid::Uuid, tick: DateTime<Utc>, max: Duration) -> Duration {
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if max_ms == 0 {
        return Duration::ZERO;
    }
    let mut hash = Sha256::new();
    hash.update(schedule.as_bytes());
    hash.update(tick.timestamp_micros().to_be_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Duration::from_millis(u64::from_be_bytes(first) % max_ms)
}

/// " (did you mean `Europe/Paris`?)" for a misspelt zone, else an example.
fn timezone_hint(name: &str) -> String {
    let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    match crate::validate::closest(name, names) {
        Some(best) => format!(" (did you mean `{best}`?)"),
        None => " (an IANA name such as `UTC`, `Europe/Paris` or `America/New_York`)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("an RFC 3339 time")
            .with_timezone(&Utc)
    }

    #[test]
    fn five_fields_six_with_seconds_and_nicknames_parse() {
        let five = Timing::parse("*/15 * * * *", None).expect("5 fields");
        assert_eq!(
            five.next_after(at("2026-01-01T10:07:30Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
        let six = Timing::parse("*/10 * * * * *", None).expect("6 fields");
        assert_eq!(
            six.next_after(at("2026-01-01T10:07:31Z")),
            Some(at("2026-01-01T10:07:40Z"))
        );
        let hourly = Timing::parse("@hourly", None).expect("nickname");
        assert_eq!(
            hourly.next_after(at("2026-01-01T10:07:31Z")),
            Some(at("2026-01-01T11:00:00Z"))
        );
    }

    #[test]
    fn every_ticks_on_multiples_of_the_interval_since_the_epoch() {
        let t = Timing::parse("@every 10s", None).expect("every");
        assert_eq!(
            t.next_after(at("2026-01-01T10:07:31.5Z")),
            Some(at("2026-01-01T10:07:40Z"))
        );
        assert_eq!(
            t.next_after(at("2026-01-01T10:07:40Z")),
            Some(at("2026-01-01T10:07:50Z")),
            "strictly after"
        );
    }

    #[test]
    fn the_cron_is_read_in_the_time_zone() {
        let t = Timing::parse("0 9 * * *", Some("Europe/Paris")).expect("valid");
        // 09:00 in Paris in winter is 08:00 UTC, in summer 07:00 UTC.
        assert_eq!(
            t.next_after(at("2026-01-10T00:00:00Z")),
            Some(at("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            t.next_after(at("2026-07-10T00:00:00Z")),
            Some(at("2026-07-10T07:00:00Z"))
        );
    }

    #[test]
    fn bad_flags_are_named_with_what_is_wrong() {
        let e = Timing::parse("* * *", None).unwrap_err().to_string();
        assert!(e.starts_with("--cron `* * *`"), "{e}");
        assert!(e.contains("3 fields"), "{e}");
        let e = Timing::parse("61 * * * *", None).unwrap_err().to_string();
        assert!(e.starts_with("--cron"), "{e}");
        let e = Timing::parse("@every 100ms", None).unwrap_err().to_string();
        assert!(e.contains("shortest interval"), "{e}");
        let e = Timing::parse("@every soon", None).unwrap_err().to_string();
        assert!(e.starts_with("--cron"), "{e}");
        let e = Timing::parse("0 0 30 2 *", None).unwrap_err().to_string();
        assert!(e.contains("never fire"), "{e}");
        let e = Timing::parse("@hourly", Some("Europe/Pariss"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--timezone `Europe/Pariss`"), "{e}");
        assert!(e.contains("Europe/Paris"), "{e}");
        let e = Timing::parse("@hourly", Some("Mars/Olympus"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("IANA"), "{e}");
    }

    #[test]
    fn on_time_a_claim_fires_the_one_due_tick_whatever_the_policy() {
        let t = Timing::parse("@every 1s", None).expect("every");
        let tick = at("2026-01-01T10:00:05Z");
        let now = at("2026-01-01T10:00:05.020Z");
        for policy in CatchUp::ALL {
            let plan = t
                .plan(tick, now, *policy, Duration::from_secs(1))
                .expect("ticks");
            assert_eq!(plan.fire, vec![tick], "{policy}");
            assert_eq!(plan.missed, 0);
            assert_eq!(plan.next_tick, at("2026-01-01T10:00:06Z"));
        }
    }

    #[test]
    fn after_an_outage_the_policy_decides() {
        let t = Timing::parse("@every 1s", None).expect("every");
        let next = at("2026-01-01T10:00:05Z");
        let now = at("2026-01-01T10:00:10.500Z");
        let grace = Duration::from_millis(200);
        let all = t.plan(next, now, CatchUp::All, grace).expect("ticks");
        assert_eq!(all.fire.len(), 6, "05 … 10");
        assert_eq!(all.fire[0], next);
        assert_eq!(all.missed, 0);
        let latest = t.plan(next, now, CatchUp::Latest, grace).expect("ticks");
        assert_eq!(latest.fire, vec![at("2026-01-01T10:00:10Z")]);
        assert_eq!(latest.missed, 5);
        assert_eq!(latest.missed_from, Some(next));
        assert_eq!(latest.missed_to, Some(at("2026-01-01T10:00:09Z")));
        let none = t.plan(next, now, CatchUp::None, grace).expect("ticks");
        assert!(
            none.fire.is_empty(),
            "10:00:10 is 500 ms late, over the grace"
        );
        assert_eq!(none.missed, 6);
        for plan in [all, latest, none] {
            assert_eq!(plan.next_tick, at("2026-01-01T10:00:11Z"));
        }
    }

    #[test]
    fn catch_up_all_is_bounded_to_the_newest_ticks() {
        let t = Timing::parse("@every 1s", None).expect("every");
        let next = at("2026-01-01T00:00:00Z");
        let now = at("2026-01-02T00:00:00Z");
        let plan = t
            .plan(next, now, CatchUp::All, Duration::ZERO)
            .expect("ticks");
        assert_eq!(plan.fire.len(), CATCH_UP_BOUND);
        assert_eq!(plan.fire.last(), Some(&now));
        assert!(plan.missed_more && plan.missed >= 1);
    }

    #[test]
    fn jitter_is_deterministic_and_within_the_window() {
        let id = uuid::Uuid::from_u128(7);
        let max = Duration::from_secs(30);
        let mut seen = std::collections::BTreeSet::new();
        for s in 0..50 {
            let tick = at("2026-01-01T00:00:00Z") + chrono::Duration::seconds(s);
            let j = jitter(id, tick, max);
            assert!(j < max);
            assert_eq!(j, jitter(id, tick, max));
            seen.insert(j);
        }
        assert!(seen.len() > 10, "spread: {seen:?}");
        assert_eq!(
            jitter(id, at("2026-01-01T00:00:00Z"), Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn expressions_read_the_tick_and_none_for_a_submitted_run() {
        use crate::{Context, Evaluator, Workflow, WorkflowRef};
        use serde_json::json;
        let ok = "name: w\ntasks:\n  a: { action: echo, input: { at: \"{{ workflow.scheduled_at or 'now' }}\" } }\n";
        assert!(Workflow::parse(ok, "w.yaml").is_ok());
        let typo =
            "name: w\ntasks:\n  a: { action: echo, input: { at: \"{{ workflow.scheduled }}\" } }\n";
        assert!(Workflow::parse(typo, "w.yaml").is_err());
        let ctx = |scheduled_at: Option<&str>| Context {
            input: serde_json::Map::new(),
            tasks: std::collections::BTreeMap::new(),
            item: None,
            item_index: None,
            workflow: WorkflowRef {
                id: "r".into(),
                name: "w".into(),
                scheduled_at: scheduled_at.map(str::to_owned),
                exit: None,
            },
        };
        let template = json!("{{ workflow.scheduled_at or 'now' }}");
        let e = Evaluator::new();
        assert_eq!(
            e.render(&template, &ctx(Some("2026-12-01T02:00:00Z"))),
            Ok(json!("2026-12-01T02:00:00Z"))
        );
        assert_eq!(e.render(&template, &ctx(None)), Ok(json!("now")));
        assert_eq!(
            tick_text(at("2026-12-01T02:00:00Z")),
            "2026-12-01T02:00:00Z"
        );
    }

    #[test]
    fn policies_read_as_their_flag_values() {
        assert_eq!("cancel_previous".parse(), Ok(Overlap::CancelPrevious));
        assert_eq!("latest".parse(), Ok(CatchUp::Latest));
        let e = "sometimes".parse::<Overlap>().unwrap_err();
        assert!(
            e.contains("--overlap") && e.contains("allow, skip, cancel_previous"),
            "{e}"
        );
    }
}
