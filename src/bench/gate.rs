//! `--max-loss` and `--max-p99`: turn a run into a pass or a failure, so a
//! pipeline, a health check or a probe can act on bench's exit status.

use hdrhistogram::Histogram;

/// The limits a run must stay within (none by default).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Largest `lost / sent` accepted, 0 to 1.
    pub max_loss: Option<f64>,
    /// Largest RTT p99 accepted, microseconds.
    pub max_p99_us: Option<f64>,
}

impl Limits {
    /// What the run broke, as one line, or `None` when it kept every limit.
    ///
    /// A run that sent nothing has a loss ratio of 1 for the gate (nothing
    /// was shown to come back); a run with no round trip has no p99 and
    /// breaks `--max-p99`.
    pub fn verdict(&self, sent: u64, lost: u64, rtt_ns: &Histogram<u64>) -> Option<String> {
        let mut broken = Vec::new();
        if let Some(max) = self.max_loss {
            let ratio = if sent == 0 {
                1.0
            } else {
                lost as f64 / sent as f64
            };
            if ratio > max {
                broken.push(format!(
                    "loss ratio {ratio:.6} ({lost} of {sent} sent) is above --max-loss {max} by {:.6}",
                    ratio - max
                ));
            }
        }
        if let Some(max) = self.max_p99_us {
            if rtt_ns.is_empty() {
                broken.push(format!(
                    "no round trip was measured, so p99 cannot be within --max-p99 {max} us"
                ));
            } else {
                let p99 = rtt_ns.value_at_quantile(0.99) as f64 / 1000.0;
                if p99 > max {
                    broken.push(format!(
                        "RTT p99 {p99:.1} us is above --max-p99 {max} us by {:.1} us",
                        p99 - max
                    ));
                }
            }
        }
        (!broken.is_empty()).then(|| format!("bench: FAILED: {}", broken.join("; ")))
    }
}

/// `--max-loss`: a ratio from 0 to 1.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a ratio from 0 to 1 (examples: 0, 0.001, 0.01)"
        )),
    }
}

/// `--max-p99`: microseconds, greater than 0.
pub fn parse_micros(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "'{s}' is not a positive number of microseconds (example: 250)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtt(us: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 10_000_000_000, 3).unwrap();
        for &u in us {
            h.record(u * 1000).unwrap();
        }
        h
    }

    #[test]
    fn no_limit_never_fails() {
        assert_eq!(Limits::default().verdict(0, 0, &rtt(&[])), None);
        assert_eq!(Limits::default().verdict(10, 10, &rtt(&[])), None);
    }

    #[test]
    fn loss_at_the_limit_passes_and_above_it_fails_by_the_excess() {
        let l = Limits {
            max_loss: Some(0.1),
            ..Limits::default()
        };
        assert_eq!(l.verdict(100, 10, &rtt(&[50])), None);
        let v = l.verdict(100, 30, &rtt(&[50])).unwrap();
        assert!(
            v.contains("--max-loss 0.1") && v.contains("by 0.200000"),
            "{v}"
        );
        assert!(v.contains("30 of 100"), "{v}");
        // Nothing sent proves nothing.
        assert!(l.verdict(0, 0, &rtt(&[])).is_some());
    }

    #[test]
    fn p99_above_the_limit_fails_and_no_sample_fails() {
        let l = Limits {
            max_p99_us: Some(100.0),
            ..Limits::default()
        };
        let fast: Vec<u64> = (0..1000).map(|i| 10 + i % 50).collect();
        assert_eq!(l.verdict(1000, 0, &rtt(&fast)), None);
        let slow: Vec<u64> = (0..1000).map(|i| if i < 980 { 10 } else { 400 }).collect();
        let v = l.verdict(1000, 0, &rtt(&slow)).unwrap();
        assert!(
            v.contains("p99 400.") && v.contains("--max-p99 100 us by 300."),
            "{v}"
        );
        assert!(l
            .verdict(10, 10, &rtt(&[]))
            .unwrap()
            .contains("no round trip"));
    }

    #[test]
    fn both_broken_are_named_on_one_line() {
        let l = Limits {
            max_loss: Some(0.0),
            max_p99_us: Some(1.0),
        };
        let v = l.verdict(10, 1, &rtt(&[5; 9])).unwrap();
        assert!(!v.contains('\n') && v.contains("--max-loss") && v.contains("--max-p99"));
    }

    #[test]
    fn limits_parse_or_say_what_is_valid() {
        assert_eq!(parse_ratio("0.01"), Ok(0.01));
        assert_eq!(parse_ratio("1"), Ok(1.0));
        for bad in ["-0.1", "1.5", "x", "NaN"] {
            assert!(parse_ratio(bad).unwrap_err().contains("0 to 1"), "{bad}");
        }
        assert_eq!(parse_micros("250"), Ok(250.0));
        for bad in ["0", "-3", "inf", "x"] {
            assert!(parse_micros(bad).is_err(), "{bad}");
        }
    }
}
