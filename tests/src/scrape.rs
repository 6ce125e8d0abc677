//! Reading daemons' latency histograms from their `/metrics` endpoints:
//! two scrapes around a scenario give the histogram of that scenario
//! alone ([`Histograms::since`]), from which the benchmarks read each
//! hop's median and mean ([`Histogram::quantile`], [`Histogram::mean`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One histogram series: cumulative bucket counts by upper bound, its sum
/// and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(le, cumulative count)`, by ascending `le`; `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    /// The sum of the observations.
    pub sum: f64,
    /// How many observations.
    pub count: f64,
}

impl Histogram {
    /// The mean observation, `None` when there is none.
    #[must_use]
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q` quantile (0–1), interpolated linearly within its bucket as
    /// Prometheus' `histogram_quantile` does; `None` without observations.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = q * self.count;
        let mut lower = (0.0, 0.0);
        for &(le, cumulative) in &self.buckets {
            if cumulative >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = cumulative - lower.1;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    0.0
                };
                return Some(lower.0 + (le - lower.0) * fraction);
            }
            lower = (le, cumulative);
        }
        Some(lower.0)
    }

    /// This histogram minus an earlier one of the same series.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(l, _)| {
                    (*l - le).abs() < f64::EPSILON || (l.is_infinite() && le.is_infinite())
                })
                .map_or(0.0, |(_, c)| *c)
        };
        Self {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| (le, c - before(le)))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// Adds another series with the same buckets (another daemon's).
    fn add(&mut self, other: &Self) {
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
        } else {
            for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
                mine.1 += theirs.1;
            }
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// Every histogram series of one or more scrapes, by name and labels
/// (`weft_executor_apply_seconds{kind="execution_completed"}`); the same
/// series of several daemons are summed.
#[derive(Debug, Clone, Default)]
pub struct Histograms(BTreeMap<String, Histogram>);

impl Histograms {
    /// Scrapes every address and sums the series.
    ///
    /// # Errors
    /// If an endpoint cannot be read.
    pub async fn scrape(addrs: &[SocketAddr]) -> anyhow::Result<Self> {
        let mut all = Self::default();
        for addr in addrs {
            let text = get_metrics(*addr).await?;
            for (series, histogram) in parse(&text).0 {
                all.0.entry(series).or_default().add(&histogram);
            }
        }
        Ok(all)
    }

    /// The series named `series` (name and labels as Prometheus prints
    /// them, without `le`), empty if absent.
    #[must_use]
    pub fn get(&self, series: &str) -> Histogram {
        self.0.get(series).cloned().unwrap_or_default()
    }

    /// What was observed after `earlier`, series by series.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(k, h)| (k.clone(), h.since(&earlier.get(k))))
                .collect(),
        )
    }
}

/// Parses the histogram series of a Prometheus text exposition.
#[must_use]
pub fn parse(text: &str) -> Histograms {
    let mut all: BTreeMap<String, Histogram> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match key.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (key, ""),
        };
        let mut le = None;
        let rest: Vec<&str> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .filter(|l| match l.strip_prefix("le=") {
                Some(bound) => {
                    le = bound.trim_matches('"').parse::<f64>().ok();
                    false
                }
                None => true,
            })
            .collect();
        let series = |base: &str| {
            if rest.is_empty() {
                base.to_owned()
            } else {
                format!("{base}{{{}}}", rest.join(","))
            }
        };
        if let Some(base) = name.strip_suffix("_bucket") {
            if let Some(le) = le {
                all.entry(series(base))
                    .or_default()
                    .buckets
                    .push((le, value));
            }
        } else if let Some(base) = name.strip_suffix("_sum") {
            all.entry(series(base)).or_default().sum = value;
        } else if let Some(base) = name.strip_suffix("_count") {
            all.entry(series(base)).or_default().count = value;
        }
    }
    all.retain(|_, h| !h.buckets.is_empty());
    for h in all.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Histograms(all)
}

async fn get_metrics(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the metrics endpoint {addr}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("a metrics response without a body")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "{addr}/metrics answered {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE weft_x_seconds histogram
weft_x_seconds_bucket{kind="a",le="0.001"} 2
weft_x_seconds_bucket{kind="a",le="0.002"} 6
weft_x_seconds_bucket{kind="a",le="+Inf"} 8
weft_x_seconds_sum{kind="a"} 0.02
weft_x_seconds_count{kind="a"} 8
weft_y_total 3
"#;

    #[test]
    fn a_histogram_is_read_with_its_labels_and_its_quantiles_interpolated() {
        let all = parse(TEXT);
        let h = all.get(r#"weft_x_seconds{kind="a"}"#);
        assert_eq!(h.count, 8.0);
        assert_eq!(h.mean(), Some(0.0025));
        // The 4th of 8 observations lies halfway through the second bucket.
        let median = h.quantile(0.5).unwrap();
        assert!((median - 0.0015).abs() < 1e-9, "{median}");
        assert_eq!(all.get("weft_y_total"), Histogram::default());
    }

    #[test]
    fn since_keeps_only_what_was_observed_after_the_earlier_scrape() {
        let before = parse(TEXT);
        let after = parse(&TEXT.replace("} 6", "} 10").replace("} 8", "} 12"));
        let h = after.since(&before).get(r#"weft_x_seconds{kind="a"}"#);
        assert_eq!(
            h.buckets,
            vec![(0.001, 0.0), (0.002, 4.0), (f64::INFINITY, 4.0)]
        );
        assert_eq!(h.count, 4.0);
    }
}
