//! The benchmarks' report: one line per figure as it is measured, or one
//! JSON array at the end (`--json`), for BENCHMARKS.md and scripts.

use serde_json::{Value, json};

/// One measured figure.
#[derive(Debug)]
struct Figure {
    scenario: String,
    figure: &'static str,
    value: f64,
    unit: &'static str,
}

/// Collects figures; prints each as it comes unless the output is JSON.
#[derive(Debug)]
pub struct Report {
    json: bool,
    figures: Vec<Figure>,
}

impl Report {
    /// A report printed as text, or as JSON at [`Report::finish`].
    #[must_use]
    pub fn new(json: bool) -> Self {
        Self {
            json,
            figures: Vec::new(),
        }
    }

    /// Records one figure.
    pub fn add(&mut self, scenario: &str, figure: &'static str, value: f64, unit: &'static str) {
        if !self.json {
            println!("{scenario:<34} {figure:<14} {value:>10.2} {unit}");
        }
        self.figures.push(Figure {
            scenario: scenario.to_owned(),
            figure,
            value,
            unit,
        });
    }

    /// Records the named percentiles (`("p50", 0.50)`, …) of `samples`, in
    /// milliseconds. No samples, no figures.
    pub fn percentiles(&mut self, scenario: &str, samples: &[f64], which: &[(&'static str, f64)]) {
        let mut ms = samples.to_vec();
        ms.sort_by(f64::total_cmp);
        if ms.is_empty() {
            return;
        }
        for (label, p) in which {
            let at = ((ms.len() as f64 - 1.0) * p).round() as usize;
            self.add(scenario, label, ms[at.min(ms.len() - 1)], "ms");
        }
    }

    /// Prints a line of text (not in JSON output).
    pub fn note(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    /// Prints the JSON array, if JSON was asked for.
    pub fn finish(&self) {
        if self.json {
            let figures: Vec<Value> = self
                .figures
                .iter()
                .map(|f| {
                    json!({"scenario": f.scenario, "figure": f.figure, "value": f.value, "unit": f.unit})
                })
                .collect();
            println!("{}", Value::Array(figures));
        }
    }
}
