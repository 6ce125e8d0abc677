//! `weft status ID --task NAME`: a task's attempt history, one line per
//! execution, read from [`weft_store::inspect::attempts`].

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use weft_common::abbrev::abbreviate;
use weft_common::{RunRef, WorkflowExecutionId};
use weft_store::inspect::attempts::{self, Attempt, AttemptFilter};
use weft_store::{PgConnection, PgPool};

use crate::remote::{Client, run_path};

/// Prints every execution of `task` of run `run` (a table, or JSON).
pub(crate) async fn show(
    pool: &PgPool,
    run: WorkflowExecutionId,
    task: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut conn = pool.acquire().await.context("connecting")?;
    if let Err(problem) = check_task(&mut conn, run, task).await? {
        eprintln!("error: {problem}");
        return Ok(ExitCode::FAILURE);
    }
    let filter = AttemptFilter {
        task: Some(task),
        ..AttemptFilter::default()
    };
    let rows = attempts::attempts(&mut conn, run, &filter).await?;
    print(&rows, task, json)
}

/// The most attempts asked of the server at once.
const REMOTE_PAGE: usize = 1_000;

/// [`show`] through a `weft server`: `GET /api/v1/runs/{run}/attempts`,
/// page after page.
pub(crate) async fn show_remote(
    client: &Client,
    run: &RunRef,
    task: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let path = format!("{}/attempts", run_path(run));
    let mut rows: Vec<Attempt> = Vec::new();
    loop {
        let query = [
            ("task", task.to_owned()),
            ("limit", REMOTE_PAGE.to_string()),
            ("offset", rows.len().to_string()),
        ];
        let page: AttemptPage = client.get(&path, &query).await?;
        let page = page.into_items();
        let last = page.len() < REMOTE_PAGE;
        rows.extend(page);
        if last {
            break;
        }
    }
    print(&rows, task, json)
}

/// A page of attempts: a bare array, or `{items, …}`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum AttemptPage {
    Items(Vec<Attempt>),
    Page { items: Vec<Attempt> },
}

impl AttemptPage {
    fn into_items(self) -> Vec<Attempt> {
        match self {
            Self::Items(items) | Self::Page { items } => items,
        }
    }
}

fn print(rows: &[Attempt], task: &str, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
    } else if rows.is_empty() {
        outln!("task `{task}` has no executions yet")?;
    } else {
        print!("{}", table(rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `Err` with what to tell the user when run `run` has no task `task`: no
/// such run, a run not started yet, or the names of its tasks.
pub(crate) async fn check_task(
    conn: &mut PgConnection,
    run: WorkflowExecutionId,
    task: &str,
) -> anyhow::Result<Result<(), String>> {
    Ok(match attempts::task_problem(conn, run, task).await? {
        None => Ok(()),
        Some(problem) => Err(problem),
    })
}

/// The longest error shown in the table (the JSON has it whole).
const ERROR_CHARS: usize = 60;

/// One aligned line per attempt under a header. Plain columns rather than
/// a drawn table: a fan-out of 10,000 items prints 10,000 lines at once.
fn table(rows: &[Attempt]) -> String {
    let header = [
        "item", "round", "attempt", "status", "worker", "queued", "started", "finished",
        "duration", "error",
    ]
    .map(str::to_owned);
    let lines: Vec<[String; 10]> = rows.iter().map(row).collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(&header).chain(&lines) {
        let mut text = String::new();
        for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

fn row(a: &Attempt) -> [String; 10] {
    let status = if a.kept_from.is_some() {
        format!("{} (kept)", a.status)
    } else {
        a.status.to_string()
    };
    [
        item_cell(a.item_index, a.item.as_deref()),
        a.round.to_string(),
        a.attempt.to_string(),
        status,
        a.worker.clone().unwrap_or_default(),
        time(a.queued_at),
        time(a.started_at),
        time(a.finished_at),
        a.duration_ms.map(duration).unwrap_or_default(),
        a.error
            .as_deref()
            .map(|e| abbreviate(e, ERROR_CHARS))
            .unwrap_or_default(),
    ]
}

/// `3 ("c.csv")`: an item's index and value (as item errors name it);
/// empty for a plain task.
pub(crate) fn item_cell(index: Option<i32>, label: Option<&str>) -> String {
    match (index, label) {
        (Some(i), Some(label)) => format!("{i} ({label})"),
        (Some(i), None) => i.to_string(),
        (None, _) => String::new(),
    }
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

/// `85 ms`, `2.4 s`, `3m05s`.
pub(crate) fn duration(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(0), "0 ms");
        assert_eq!(duration(999), "999 ms");
        assert_eq!(duration(2_450), "2.5 s");
        assert_eq!(duration(185_000), "3m05s");
    }

    #[test]
    fn an_item_shows_its_index_and_value() {
        assert_eq!(item_cell(Some(3), Some("\"c.csv\"")), "3 (\"c.csv\")");
        assert_eq!(item_cell(Some(0), Some("1")), "0 (1)");
        assert_eq!(item_cell(Some(3), None), "3");
        assert_eq!(item_cell(None, None), "");
    }
}
