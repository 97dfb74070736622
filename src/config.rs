//! Validated configuration of `serve`: what the rest of the crate reads.
//!
//! The command line (cli.rs) parses flags into values and hands them here;
//! everything the workers read has been checked against this host, so a bad
//! value fails before any socket is opened, with a message that names the
//! flag.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use crate::{parse::format_cpu_list, policy::PolicyConfig, reflect::Mode, Error};

/// Which receive path the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Uring,
    Mmsg,
}

impl BackendChoice {
    /// Every choice, in the order `--help` lists them.
    pub const ALL: [BackendChoice; 3] = [
        BackendChoice::Auto,
        BackendChoice::Uring,
        BackendChoice::Mmsg,
    ];

    /// The choice's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Uring => "uring",
            BackendChoice::Mmsg => "mmsg",
        }
    }

    /// One line saying what the choice does (`--help`).
    pub fn about(self) -> &'static str {
        match self {
            BackendChoice::Auto => {
                "io_uring if the kernel allows it, otherwise recvmmsg (says why, once)"
            }
            BackendChoice::Uring => {
                "io_uring multishot recvmsg over a provided buffer ring; an error if refused"
            }
            BackendChoice::Mmsg => "recvmmsg/sendmmsg",
        }
    }
}

/// One `--listen` value: an address and, optionally, its own mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSpec {
    pub addr: SocketAddr,
    pub mode: Option<Mode>,
}

impl FromStr for ListenSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, opts) = match s.split_once(',') {
            Some((a, o)) => (a, Some(o)),
            None => (s, None),
        };
        let addr: SocketAddr = parse_scoped(addr)?;
        let mode = match opts {
            None => None,
            Some(o) => {
                let m = o
                    .strip_prefix("mode=")
                    .ok_or_else(|| format!("unknown option '{o}' (valid: mode=MODE)"))?;
                Some(m.parse::<Mode>().map_err(|e| e.to_string())?)
            }
        };
        Ok(ListenSpec { addr, mode })
    }
}

/// `ADDR:PORT`, where an IPv6 address may carry its scope as an interface
/// name (`[fe80::1%eth0]:7007`) as well as a number (`[fe80::1%2]:7007`).
fn parse_scoped(addr: &str) -> Result<SocketAddr, String> {
    let bad = || {
        format!(
            "'{addr}' is not ADDR:PORT (examples: 0.0.0.0:7007, [::1]:7007, [fe80::1%eth0]:7007)"
        )
    };
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    // [IP%NAME]:PORT with an interface name.
    let inner = addr.strip_prefix('[').ok_or_else(bad)?;
    let (host, port) = inner.split_once("]:").ok_or_else(bad)?;
    let (ip, scope) = host.split_once('%').ok_or_else(bad)?;
    let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| bad())?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let index = crate::sys::interface_index(scope).ok_or_else(|| {
        format!(
            "'{scope}' in '{addr}' is not a network interface of this host (`ip link` lists them)"
        )
    })?;
    Ok(SocketAddr::V6(std::net::SocketAddrV6::new(
        ip, port, 0, index,
    )))
}

/// The smallest `--max-datagram` with which a mode can answer at all.
fn min_datagram(mode: Mode) -> usize {
    match mode {
        Mode::Echo | Mode::Discard => 1,
        Mode::Sockperf => crate::reflect::sockperf::HEADER_LEN,
        Mode::Stamp => crate::reflect::stamp::REFLECTOR_LEN,
    }
}

/// Refuses configurations that can never answer, in one line that says why.
pub fn can_answer(
    listeners: &[Listener],
    max_datagram: usize,
    rcvbuf: Option<u32>,
) -> Result<(), Error> {
    if rcvbuf == Some(0) {
        return Err(Error::Invalid {
            flag: "--rcvbuf",
            reason: "0 bytes hold no datagram (leave --rcvbuf out for the system default)".into(),
        });
    }
    for l in listeners {
        let need = min_datagram(l.mode);
        if max_datagram < need {
            return Err(Error::Invalid {
                flag: "--max-datagram",
                reason: format!(
                    "{max_datagram} bytes cannot hold a {} reply (at least {need} bytes), so {} would never answer",
                    l.mode.name(),
                    l.addr
                ),
            });
        }
        match l.addr {
            SocketAddr::V4(a) if a.ip().is_multicast() => {
                return Err(Error::Invalid {
                    flag: "--listen",
                    reason: format!(
                        "{a} is a multicast group, which the reflector never joins: nothing would \
                         arrive (listen on 0.0.0.0:{} or on an address of the interface)",
                        a.port()
                    ),
                })
            }
            SocketAddr::V6(a) if a.ip().is_multicast() => {
                return Err(Error::Invalid {
                    flag: "--listen",
                    reason: format!(
                        "{a} is a multicast group, which the reflector never joins: nothing would \
                         arrive (listen on [::]:{} or on an address of the interface)",
                        a.port()
                    ),
                })
            }
            SocketAddr::V6(a) if a.ip().segments()[0] & 0xffc0 == 0xfe80 && a.scope_id() == 0 => {
                return Err(Error::Invalid {
                    flag: "--listen",
                    reason: format!(
                        "{a} is link-local, which exists once per interface: name the interface, \
                         as in [{}%eth0]:{}",
                        a.ip(),
                        a.port()
                    ),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// One validated listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub mode: Mode,
}

/// Validated configuration of `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listeners: Vec<Listener>,
    pub cpus: Vec<usize>,
    pub backend: BackendChoice,
    pub batch: usize,
    pub max_datagram: usize,
    pub buffers: u16,
    pub rcvbuf: Option<u32>,
    pub incoming_cpu: bool,
    pub gso: bool,
    pub gro: bool,
    pub busy_poll: bool,
    pub coalesce_us: Option<u32>,
    pub duration: Option<Duration>,
    pub stats_interval: Option<Duration>,
    pub json: bool,
    /// Who gets an answer (src/policy.rs).
    pub policy: PolicyConfig,
    /// The runtime registry's directory; `None`: not taking part.
    pub registry: Option<std::path::PathBuf>,
    /// `--metrics`: where to serve Prometheus metrics.
    pub metrics: Option<SocketAddr>,
    /// `--interface`: a NIC whose statistics join the host drops.
    pub interface: Option<String>,
}

/// Checks that every CPU of `--cpus` exists and may be used by this process.
pub fn check_cpus(list: &[usize]) -> Result<Vec<usize>, Error> {
    if list.is_empty() {
        return Err(Error::Invalid {
            flag: "--cpus",
            reason: "empty list".into(),
        });
    }
    let allowed = allowed_cpus()?;
    if let Some(&cpu) = list.iter().find(|c| !allowed.contains(c)) {
        return Err(Error::Cpu { cpu, allowed });
    }
    Ok(list.to_vec())
}

fn allowed_cpus() -> Result<Vec<usize>, Error> {
    crate::sys::affinity::allowed_cpus().map_err(|e| Error::io("reading the CPU affinity mask", e))
}

/// The workers' cores: `--cpus` as given, else the first `--workers` usable
/// cores, else every usable core.
pub fn worker_cpus(cpus: Option<&[usize]>, workers: Option<usize>) -> Result<Vec<usize>, Error> {
    if let Some(list) = cpus {
        return check_cpus(list);
    }
    let allowed = allowed_cpus()?;
    match workers {
        Some(0) => Err(Error::Invalid {
            flag: "--workers",
            reason: "must be at least 1".into(),
        }),
        Some(n) if n > allowed.len() => Err(Error::Invalid {
            flag: "--workers",
            reason: format!(
                "{n} workers but only {} usable cores ({}); one worker per core",
                allowed.len(),
                format_cpu_list(&allowed)
            ),
        }),
        Some(n) => Ok(allowed[..n].to_vec()),
        None => Ok(allowed),
    }
}

/// The listeners: every `--listen` with its mode (or `mode`), or, with none,
/// 0.0.0.0 and [::] on `mode`'s default port ([::] only if this host has
/// IPv6).
pub fn listeners(specs: &[ListenSpec], mode: Mode) -> Result<Vec<Listener>, Error> {
    let listeners: Vec<Listener> = if specs.is_empty() {
        let port = mode.default_port();
        let mut default = vec![Listener {
            addr: SocketAddr::from(([0, 0, 0, 0], port)),
            mode,
        }];
        // A host booted with ipv6.disable=1 has no AF_INET6 at all: the
        // default serves IPv4 there (an explicit IPv6 --listen stays an
        // error, from bind).
        match crate::sys::socket::ipv6_available() {
            Ok(()) => default.push(Listener {
                addr: SocketAddr::from(([0u16; 8], port)),
                mode,
            }),
            Err(e) => eprintln!(
                "udp-reflector: IPv6 is unavailable on this host ({e}); listening on IPv4 only"
            ),
        }
        default
    } else {
        specs
            .iter()
            .map(|l| Listener {
                addr: l.addr,
                mode: l.mode.unwrap_or(mode),
            })
            .collect()
    };
    for (i, l) in listeners.iter().enumerate() {
        if l.addr.port() != 0 && listeners[..i].iter().any(|o| o.addr == l.addr) {
            return Err(Error::Invalid {
                flag: "--listen",
                reason: format!("{} is given twice", l.addr),
            });
        }
    }
    if listeners.len() > 64 {
        return Err(Error::Invalid {
            flag: "--listen",
            reason: "at most 64 listeners".into(),
        });
    }
    Ok(listeners)
}

/// The shortest `--stats-interval`: shorter ones print faster than anyone
/// reads them.
pub const MIN_STATS_INTERVAL: Duration = Duration::from_millis(10);
/// `--interface`: the NIC must exist (its statistics are read in sysfs).
pub fn interface(name: Option<&str>) -> Result<Option<String>, Error> {
    match name {
        None => Ok(None),
        Some(n) => crate::hostdrops::HostReader::new(Some(n))
            .map(|_| Some(n.to_string()))
            .map_err(|e| Error::Invalid {
                flag: "--interface",
                reason: e.to_string(),
            }),
    }
}

/// `--stats-interval` in effect: 0 turns it off; by default 1 s on a
/// terminal (without --json), off otherwise; at least 10 ms.
pub fn stats_interval(
    flag: Option<Duration>,
    stdout_is_terminal: bool,
    json: bool,
) -> Result<Option<Duration>, Error> {
    Ok(match flag {
        Some(d) if d.is_zero() => None,
        Some(d) if d < MIN_STATS_INTERVAL => {
            return Err(Error::Invalid {
                flag: "--stats-interval",
                reason: format!("{d:?} is below the 10 ms minimum (0 turns the lines off)"),
            })
        }
        Some(d) => Some(d),
        None if stdout_is_terminal && !json => Some(Duration::from_secs(1)),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs_take_an_optional_mode() {
        let l: ListenSpec = "[::1]:862,mode=stamp".parse().unwrap();
        assert_eq!(l.addr, "[::1]:862".parse().unwrap());
        assert_eq!(l.mode, Some(Mode::Stamp));
        assert!("127.0.0.1:7,mode=nope"
            .parse::<ListenSpec>()
            .unwrap_err()
            .contains("nope"));
        assert!("127.0.0.1"
            .parse::<ListenSpec>()
            .unwrap_err()
            .contains("ADDR:PORT"));
    }
}
