//! What the validation tests share: parse expecting problems (each as
//! `line: message (hint)`), find one on a line, parse expecting none.

use weft_common::Workflow;

/// Parses `yaml` expecting problems; returns them as `line: message (hint)`.
pub(crate) fn problems(yaml: &str) -> Vec<String> {
    match Workflow::parse(yaml, "t.yaml") {
        Ok(_) => panic!("expected problems in:\n{yaml}"),
        Err(d) => d
            .problems()
            .iter()
            .map(|p| {
                format!(
                    "{}: {} ({})",
                    p.line,
                    p.message,
                    p.hint.clone().unwrap_or_default()
                )
            })
            .collect(),
    }
}

pub(crate) fn has(problems: &[String], line: usize, parts: &[&str]) {
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&format!("{line}: "))
                && parts.iter().all(|part| p.contains(part))),
        "no problem on line {line} mentioning {parts:?} in {problems:#?}"
    );
}

pub(crate) fn ok(yaml: &str) -> Workflow {
    Workflow::parse(yaml, "t.yaml").unwrap_or_else(|d| panic!("{d}"))
}
