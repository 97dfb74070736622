//! HdrHistogram's percentile distribution text (`.hgrm`), as Java's
//! `AbstractHistogram.outputPercentileDistribution(out, 5, scale)` writes it
//! and HdrHistogram's plotter (and hdr-plot) read it.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Quantile ticks per half distance to 100%, the Java default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The distribution of `h`, its values divided by `scale` (1000.0 turns
/// nanoseconds into microseconds), with as many decimals as `h` keeps
/// significant figures.
pub fn percentile_distribution(h: &Histogram<u64>, scale: f64) -> String {
    let d = usize::from(h.sigfig());
    let mut out = String::new();
    // `write!` into a String cannot fail.
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / scale;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.d$} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.d$} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, stdev) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean() / scale, h.stdev() / scale)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.d$}, StdDeviation   = {stdev:12.d$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.d$}, Total count    = {:12}]",
        h.max() as f64 / scale,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    );
    out
}

/// Java's `subBucketCount`: the power of two that holds `2 * 10^sigfig`.
fn sub_buckets(sigfig: u8) -> u32 {
    (2 * 10u32.pow(u32::from(sigfig))).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_java_layout() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for v in 1..=100u64 {
            h.record(v * 1_000).unwrap(); // 1..=100 us, in ns
        }
        let text = percentile_distribution(&h, 1000.0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       1.000 0.000000000000          1           1.00"
        );
        assert_eq!(
            lines[3],
            "      10.007 0.100000000000         10           1.11"
        );
        let rows = &lines[2..lines.len() - 3];
        for r in rows {
            let cols: Vec<&str> = r.split_whitespace().collect();
            assert!(
                cols.len() == 4 || (cols.len() == 3 && r == rows.last().unwrap()),
                "{r:?}"
            );
            assert_eq!(
                r.find('.'),
                Some(8),
                "value right-aligned in 12 columns with 3 decimals: {r:?}"
            );
        }
        assert_eq!(
            *rows.last().unwrap(),
            "     100.031 1.000000000000        100"
        );
        // TotalCount never decreases; percentiles climb to 1.
        let totals: Vec<u64> = rows
            .iter()
            .map(|r| r.split_whitespace().nth(2).unwrap().parse().unwrap())
            .collect();
        assert!(totals.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            lines[lines.len() - 3],
            "#[Mean    =       50.504, StdDeviation   =       28.866]"
        );
        assert_eq!(
            lines[lines.len() - 2],
            "#[Max     =      100.031, Total count    =          100]"
        );
        assert_eq!(
            lines[lines.len() - 1],
            format!(
                "#[Buckets = {:12}, SubBuckets     =         2048]",
                h.buckets()
            )
        );
    }

    #[test]
    fn an_empty_histogram_has_header_and_footer_only() {
        let h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        let text = percentile_distribution(&h, 1000.0);
        assert_eq!(text.lines().count(), 5);
        assert!(text.contains("Total count    =            0]"));
    }

    #[test]
    fn sub_buckets_match_java() {
        assert_eq!(
            (
                sub_buckets(1),
                sub_buckets(2),
                sub_buckets(3),
                sub_buckets(5)
            ),
            (32, 256, 2048, 262144)
        );
    }
}
