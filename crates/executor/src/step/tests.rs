use super::*;
use weft_common::RetryPolicy;

#[test]
fn jittered_delays_spread_on_both_sides_of_the_delay() {
    let policy = RetryPolicy {
        attempts: 3,
        delay: std::time::Duration::from_secs(10),
        backoff: 1.0,
        max_delay: None,
        jitter: 0.5,
        ..RetryPolicy::default()
    };
    let delays: Vec<f64> = (0..2_000)
        .map(|_| policy.delay_before(2, rand_unit()).as_secs_f64())
        .collect();
    let (min, max) = delays
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), d| (lo.min(*d), hi.max(*d)));
    // ±50 % around 10 s: [5, 15], filled on both sides.
    assert!((5.0..6.0).contains(&min), "shortest {min}");
    assert!((14.0..=15.0).contains(&max), "longest {max}");
    let below = delays.iter().filter(|d| **d < 10.0).count();
    assert!(
        (800..1_200).contains(&below),
        "{below} of 2000 below the delay"
    );
}
