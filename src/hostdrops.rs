//! What the host dropped while the reflector ran: UDP and UDP6 error
//! counters (/proc/net/snmp, /proc/net/snmp6), softnet backlog drops and
//! squeezes summed over CPUs (/proc/net/softnet_stat), and optionally one
//! NIC's drop and error counters (/sys/class/net/IF/statistics).
//!
//! Read by the reporting thread (once per interval, at the end, and per
//! scrape), never by a worker. The /proc/net files are per network
//! namespace; softnet_stat and sysfs statistics are per host and device.

use std::{fs, io, path::PathBuf};

/// The counters, in output order. Names say what the kernel calls them.
pub const NAMES: [&str; 16] = [
    "udp_in_errors",
    "udp_rcvbuf_errors",
    "udp_sndbuf_errors",
    "udp_no_ports",
    "udp_in_csum_errors",
    "udp6_in_errors",
    "udp6_rcvbuf_errors",
    "udp6_sndbuf_errors",
    "udp6_no_ports",
    "udp6_in_csum_errors",
    "softnet_dropped",
    "softnet_time_squeeze",
    "nic_rx_dropped",
    "nic_tx_dropped",
    "nic_rx_errors",
    "nic_tx_errors",
];
/// The first NIC counter in [`NAMES`]: the rest need `--interface`.
const NIC_FIRST: usize = 12;
/// Field names in /proc/net/snmp's `Udp:` table, in [`NAMES`] order.
const SNMP_FIELDS: [&str; 5] = [
    "InErrors",
    "RcvbufErrors",
    "SndbufErrors",
    "NoPorts",
    "InCsumErrors",
];
/// Files under /sys/class/net/IF/statistics, in [`NAMES`] order.
const NIC_FILES: [&str; 4] = ["rx_dropped", "tx_dropped", "rx_errors", "tx_errors"];

/// One reading (or a difference of two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCounters {
    pub values: [u64; NAMES.len()],
    /// Whether the NIC counters are part of it (`--interface` given).
    pub nic: bool,
}

impl HostCounters {
    /// `(name, value)` for every counter read (the NIC ones only with a NIC).
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let n = if self.nic { NAMES.len() } else { NIC_FIRST };
        NAMES[..n].iter().copied().zip(self.values)
    }

    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &HostCounters) -> HostCounters {
        HostCounters {
            values: std::array::from_fn(|i| self.values[i].wrapping_sub(earlier.values[i])),
            nic: self.nic,
        }
    }
}

/// Reads the host counters.
#[derive(Debug, Clone)]
pub struct HostReader {
    proc_net: PathBuf,
    nic: Option<PathBuf>,
}

impl HostReader {
    /// `interface`: also read that NIC's statistics; it must exist.
    pub fn new(interface: Option<&str>) -> io::Result<HostReader> {
        let nic = match interface {
            Some(name) => {
                let dir = PathBuf::from("/sys/class/net")
                    .join(name)
                    .join("statistics");
                if !dir.is_dir() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no network interface named {name:?} (see `ip link`)"),
                    ));
                }
                Some(dir)
            }
            None => None,
        };
        Ok(HostReader {
            proc_net: PathBuf::from("/proc/net"),
            nic,
        })
    }

    /// One reading. A file that cannot be read (no IPv6, say) reads as zeros,
    /// so the deltas stay zero rather than the reflector failing.
    pub fn read(&self) -> HostCounters {
        let mut v = [0u64; NAMES.len()];
        let text = |f: &str| fs::read_to_string(self.proc_net.join(f)).unwrap_or_default();
        let udp = parse_snmp_udp(&text("snmp"));
        v[..5].copy_from_slice(&udp);
        let udp6 = parse_snmp6_udp(&text("snmp6"));
        v[5..10].copy_from_slice(&udp6);
        let (dropped, squeeze) = parse_softnet(&text("softnet_stat"));
        v[10] = dropped;
        v[11] = squeeze;
        if let Some(dir) = &self.nic {
            for (i, f) in NIC_FILES.iter().enumerate() {
                v[NIC_FIRST + i] = fs::read_to_string(dir.join(f))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
            }
        }
        HostCounters {
            values: v,
            nic: self.nic.is_some(),
        }
    }
}

/// The `Udp:` header and value lines of /proc/net/snmp.
fn parse_snmp_udp(text: &str) -> [u64; 5] {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(header), Some(values)) = (lines.next(), lines.next()) else {
        return [0; 5];
    };
    let header: Vec<&str> = header.split_whitespace().collect();
    let values: Vec<&str> = values.split_whitespace().collect();
    SNMP_FIELDS.map(|f| {
        header
            .iter()
            .position(|h| *h == f)
            .and_then(|i| values.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// `Udp6InErrors 0`-style lines of /proc/net/snmp6.
fn parse_snmp6_udp(text: &str) -> [u64; 5] {
    SNMP_FIELDS.map(|f| {
        text.lines()
            .filter_map(|l| l.split_once(char::is_whitespace))
            .find(|(k, _)| k.strip_prefix("Udp6") == Some(f))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// Columns 2 (dropped) and 3 (time_squeeze), hex, summed over the CPU lines
/// (see softnet_seq_show in net/core/net-procfs.c).
fn parse_softnet(text: &str) -> (u64, u64) {
    let col = |l: &str, i: usize| {
        l.split_whitespace()
            .nth(i)
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .unwrap_or(0)
    };
    text.lines()
        .fold((0, 0), |(d, s), l| (d + col(l, 1), s + col(l, 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_formats() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
            Udp: 100 7 5 90 4 3 1 0 0\n\
            UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
            UdpLite: 0 0 99 0 99 99 99 0 0\n";
        assert_eq!(parse_snmp_udp(snmp), [5, 4, 3, 7, 1]);
        let snmp6 = "Udp6InDatagrams                 \t10\nUdp6NoPorts   2\nUdp6InErrors 6\n\
            Udp6RcvbufErrors 5\nUdp6SndbufErrors 1\nUdp6InCsumErrors 0\nUdpLite6InErrors 99\n";
        assert_eq!(parse_snmp6_udp(snmp6), [6, 5, 1, 2, 0]);
        let softnet = "0000a000 00000002 00000010 00000000\n0000b000 00000001 00000001 00000000\n";
        assert_eq!(parse_softnet(softnet), (3, 17));
        assert_eq!(parse_snmp_udp(""), [0; 5]);
    }

    #[test]
    fn reads_this_host_and_refuses_an_unknown_interface() {
        let r = HostReader::new(None).unwrap();
        let a = r.read();
        assert_eq!(a.named().count(), NIC_FIRST);
        assert_eq!(r.read().since(&a).named().count(), NIC_FIRST);
        let lo = HostReader::new(Some("lo")).unwrap().read();
        assert_eq!(lo.named().count(), NAMES.len());
        let e = HostReader::new(Some("no-such-if0")).unwrap_err();
        assert!(e.to_string().contains("no-such-if0"), "{e}");
    }
}
