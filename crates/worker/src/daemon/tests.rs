use super::*;

#[test]
fn a_refused_report_becomes_a_failure_without_its_result_that_says_why() {
    let (status, error) = refused_report(
        ExecutionStatus::Succeeded,
        "PRECONDITION-FAILED: message size 140000000 is larger than configured max size 134217728"
            .into(),
        None,
    );
    assert_eq!(status, ExecutionStatus::Failed);
    assert!(
        error.starts_with("the broker refused this execution's report (PRECONDITION-FAILED")
            && error.ends_with("; its result was dropped"),
        "{error}"
    );
    // A cancellation stays one (it must not be retried); the action's
    // own error is kept, shortened.
    let (status, error) = refused_report(
        ExecutionStatus::Canceled,
        "refused".into(),
        Some(&"z".repeat(5000)),
    );
    assert_eq!(status, ExecutionStatus::Canceled);
    assert!(
        error.ends_with(&format!("the action's error: {}…", "z".repeat(1000))),
        "{error}"
    );
}
