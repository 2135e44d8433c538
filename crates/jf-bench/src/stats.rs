//! Percentiles of latency samples.

use std::time::Duration;

use serde::Serialize;

/// The distribution of one scenario's latencies, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The summary of `samples`, or none when there are none.
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut sorted: Vec<f64> = samples.iter().map(|sample| millis(*sample)).collect();
    sorted.sort_by(f64::total_cmp);
    let (first, last) = (sorted.first()?, sorted.last()?);
    Some(Summary {
        n: sorted.len(),
        min_ms: *first,
        p50_ms: percentile(&sorted, 50.0),
        p90_ms: percentile(&sorted, 90.0),
        p99_ms: percentile(&sorted, 99.0),
        max_ms: *last,
        mean_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
    })
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `percent`
/// of the values at or below it. With few samples, p99 is simply the largest, as it should be.
pub fn percentile(sorted: &[f64], percent: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 90.0), 90.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), 2.0);
    }

    #[test]
    fn summarizes_durations() {
        let samples: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        let summary = summarize(&samples).expect("samples");
        assert_eq!(summary.n, 10);
        assert_eq!(summary.p50_ms, 5.0);
        assert_eq!(summary.p99_ms, 10.0);
        assert_eq!(summary.max_ms, 10.0);
        assert!(summarize(&[]).is_none());
    }
}
