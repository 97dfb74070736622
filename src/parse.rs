//! Small value parsers shared by both subcommands: CPU lists and seconds.
//!
//! A leaf module: it imports nothing from the crate, so the command line,
//! the configuration and the reports can all use it.

use std::{str::FromStr, time::Duration};

/// A list of CPU numbers such as "0,2-3".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a CPU list (examples: 0 | 0,2 | 0-3 | 0,2-3)");
        let mut cpus = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
                None => {
                    let c: usize = part.parse().map_err(|_| bad())?;
                    (c, c)
                }
            };
            if lo > hi || hi - lo > 4096 {
                return Err(bad());
            }
            for c in lo..=hi {
                if !cpus.contains(&c) {
                    cpus.push(c);
                }
            }
        }
        Ok(CpuList(cpus))
    }
}

/// Formats CPUs back into the compact "0,2-3" form.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        out.push(if sorted[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", sorted[i])
        });
        i += 1;
    }
    out.join(",")
}

/// Seconds (fractions allowed), greater than 0.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    match parse_secs_or_zero(s)? {
        d if d.is_zero() => Err("must be greater than 0".into()),
        d => Ok(d),
    }
}

/// Seconds (fractions allowed), 0 included.
pub fn parse_secs_or_zero(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!("'{s}' must be between 0 and 1e9 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_format_round_trip() {
        assert_eq!("0,2-3".parse::<CpuList>().unwrap().0, vec![0, 2, 3]);
        assert_eq!("1-1".parse::<CpuList>().unwrap().0, vec![1]);
        assert_eq!(format_cpu_list(&[3, 0, 2, 5]), "0,2-3,5");
        for bad in ["", "a", "3-1", "1,,2", "-1"] {
            assert!(bad.parse::<CpuList>().is_err(), "{bad:?} accepted");
        }
    }
}
