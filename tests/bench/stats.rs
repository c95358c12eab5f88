//! Order statistics over the runs of one measurement, and how numbers are
//! printed in the report.

/// The order statistics of one series of runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub runs: usize,
    pub median: f64,
    /// Nearest-rank 90th percentile: the smallest value with at least 90 %
    /// of the runs at or below it.
    pub p90: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// `None` for an empty series (no run succeeded).
    #[must_use]
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            f64::midpoint(v[n / 2 - 1], v[n / 2])
        };
        let rank = (n * 9).div_ceil(10).max(1);
        Some(Self {
            runs: n,
            median,
            p90: v[rank - 1],
            min: v[0],
            max: v[n - 1],
            mean: v.iter().sum::<f64>() / count(n),
        })
    }
}

/// `n` as a float, for means and rates.
#[must_use]
pub fn count(n: usize) -> f64 {
    u32::try_from(n).map_or(f64::MAX, f64::from)
}

/// Milliseconds with a precision that suits the size: `0.42 ms`, `3.1 ms`,
/// `123 ms`, `5.01 s`.
#[must_use]
pub fn ms(value: f64) -> String {
    if value < 1.0 {
        format!("{value:.2} ms")
    } else if value < 10.0 {
        format!("{value:.1} ms")
    } else if value < 1000.0 {
        format!("{value:.0} ms")
    } else {
        format!("{:.2} s", value / 1000.0)
    }
}

/// Bytes in KiB or MiB.
#[must_use]
pub fn bytes(value: f64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if value >= MIB {
        format!("{:.2} MiB", value / MIB)
    } else {
        format!("{:.0} KiB", value / 1024.0)
    }
}

/// A ratio such as `1×`, `0.52×`, `1.8×`, `870×`.
#[must_use]
pub fn ratio(value: f64) -> String {
    if !value.is_finite() {
        "—".to_owned()
    } else if value >= 100.0 {
        format!("{value:.0}×")
    } else if value >= 10.0 {
        format!("{value:.1}×")
    } else {
        format!("{value:.2}×")
    }
}

/// `✓` when `ok`, else `✗`.
#[must_use]
pub fn mark(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn summary_of_odd_and_even_series() {
        use super::Summary;
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.runs, s.median, s.min, s.max), (3, 3.0, 1.0, 5.0));
        assert!((s.mean - 3.0).abs() < 1e-9);
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert!((s.median - 2.5).abs() < 1e-9);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn p90_is_nearest_rank() {
        use super::Summary;
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!((Summary::of(&ten).unwrap().p90 - 9.0).abs() < 1e-9);
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert!((Summary::of(&twenty).unwrap().p90 - 18.0).abs() < 1e-9);
        assert!((Summary::of(&[7.0]).unwrap().p90 - 7.0).abs() < 1e-9);
        let three = Summary::of(&[1.0, 2.0, 3.0]).unwrap();
        assert!((three.p90 - 3.0).abs() < 1e-9);
    }

    #[test]
    fn formatting() {
        use super::{bytes, ms, ratio};
        let cases = [
            (ms(0.4234), "0.42 ms"),
            (ms(3.25), "3.2 ms"),
            (ms(123.4), "123 ms"),
            (ms(5012.0), "5.01 s"),
            (bytes(2048.0), "2 KiB"),
            (bytes(3.5 * 1024.0 * 1024.0), "3.50 MiB"),
            (ratio(1.0), "1.00×"),
            (ratio(12.34), "12.3×"),
            (ratio(870.2), "870×"),
            (ratio(f64::NAN), "—"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
