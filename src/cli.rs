//! Command-line flags (clap types) and their validation into [`ServeConfig`].
//!
//! Raw flags and validated configuration are separate types: everything the
//! workers read has been checked here, so a bad value fails before any socket
//! is opened, with a message that names the flag.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use clap::{builder::PossibleValue, Args, Parser, Subcommand, ValueEnum};

use crate::{
    parse::{format_cpu_list, parse_secs, parse_secs_or_zero, CpuList},
    reflect::Mode,
    Error,
};

/// A high-performance, batched UDP reflector for Linux.
///
/// With no subcommand it runs `serve`: every datagram received is answered
/// (RFC 862 echo by default) from the address it was sent to, and every
/// datagram is counted as reflected or dropped, with the reason.
#[derive(Debug, Parser)]
#[command(
    name = "udp-reflector",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reflect datagrams (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Drive any UDP echo server (or, with --stamp, STAMP session-reflector)
    /// and measure rate, loss and round-trip time.
    Bench(crate::bench::BenchArgs),
}

/// Which receive path the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// io_uring if the kernel allows it, otherwise recvmmsg (says why, once).
    Auto,
    /// io_uring multishot recvmsg over a provided buffer ring; an error if refused.
    Uring,
    /// recvmmsg/sendmmsg.
    Mmsg,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on, repeatable: ADDR:PORT, optionally followed by
    /// ",mode=MODE" to give this listener its own mode
    /// (e.g. "[::]:862,mode=stamp"). Default: 0.0.0.0 and [::] on the
    /// mode's port (echo, discard: 7007; sockperf: 11111; stamp: 862).
    #[arg(long, value_name = "ADDR:PORT[,mode=MODE]")]
    pub listen: Vec<ListenSpec>,

    /// How to answer, for every listener without its own ",mode=".
    #[arg(long, value_enum, default_value_t = ModeArg(Mode::Echo))]
    pub mode: ModeArg,

    /// Number of workers, one per core, pinned to the first N usable cores.
    /// Default: one per usable core.
    #[arg(long, value_name = "N", conflicts_with = "cpus")]
    pub workers: Option<usize>,

    /// Cores to run one worker each on, such as "0,2-3".
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<CpuList>,

    /// Receive path.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// Largest number of replies sent by one sendmmsg (and, for mmsg, read by
    /// one recvmmsg).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,

    /// Largest datagram payload answered; larger ones are counted as
    /// `truncated` and not echoed. The default holds a 9000-byte jumbo-frame
    /// datagram.
    #[arg(long, value_name = "BYTES", default_value_t = 9216,
          value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub max_datagram: u32,

    /// Receive buffers per worker for the uring backend (entries of its
    /// provided buffer ring, shared by the worker's sockets); a power of two.
    /// Few buffers stay warm in the cache; when they run out the datagrams
    /// wait in the socket queue (counted in ring_stalls, not lost). The mmsg
    /// backend uses --batch slots per socket.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = parse_ring_entries)]
    pub buffers: u16,

    /// SO_RCVBUF for every socket (SO_RCVBUFFORCE when privileged). The
    /// kernel's grant is reported at start. Default: the system default.
    #[arg(long, value_name = "BYTES")]
    pub rcvbuf: Option<u32>,

    /// Steer each datagram to the worker pinned to the CPU that processed it
    /// in the kernel (SO_INCOMING_CPU, Linux >= 6.2), instead of the default
    /// flow hash. Use with NIC queues whose interrupts (RSS, RPS) go to the
    /// workers' CPUs: each packet then stays on one core end to end.
    #[arg(long)]
    pub incoming_cpu: bool,

    /// Send every reply as its own message. By default, the replies of a
    /// batch to one peer with the same length (each peer's order kept) leave
    /// as one UDP GSO train (UDP_SEGMENT), which the kernel cuts into the same
    /// datagrams: cheaper per packet, identical on the wire.
    #[arg(long)]
    pub no_gso: bool,

    /// Stop by itself after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,

    /// Print a line every SECS: packets/s both ways and every drop counter
    /// that moved. 0 turns it off. Default: 1 on a terminal, off otherwise.
    #[arg(long, value_name = "SECS", value_parser = parse_secs_or_zero)]
    pub stats_interval: Option<Duration>,

    /// Print the interval lines and the final summary as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `--mode`'s value: a [`Mode`], whose names and help come from
/// [`Mode::name`] and [`Mode::about`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeArg(pub Mode);

impl ValueEnum for ModeArg {
    fn value_variants<'a>() -> &'a [Self] {
        const ALL: [ModeArg; Mode::ALL.len()] = {
            let mut all = [ModeArg(Mode::Echo); Mode::ALL.len()];
            let mut i = 0;
            while i < all.len() {
                all[i] = ModeArg(Mode::ALL[i]);
                i += 1;
            }
            all
        };
        &ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.name()).help(self.0.about()))
    }
}

/// One `--listen` value.
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
        let addr: SocketAddr = addr.parse().map_err(|_| {
            format!("'{addr}' is not ADDR:PORT (examples: 0.0.0.0:7007, [::1]:7007)")
        })?;
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

fn parse_ring_entries(s: &str) -> Result<u16, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(2..=32768).contains(&n) || !n.is_power_of_two() {
        return Err(format!("'{s}' must be a power of two from 2 to 32768"));
    }
    Ok(n as u16)
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
    pub duration: Option<Duration>,
    pub stats_interval: Option<Duration>,
    pub json: bool,
}

impl ServeArgs {
    /// Checks the flags against this host: the CPUs this process may use.
    pub fn validate(&self, stdout_is_terminal: bool) -> Result<ServeConfig, Error> {
        let allowed = crate::sys::affinity::allowed_cpus()
            .map_err(|e| Error::io("reading the CPU affinity mask", e))?;
        let cpus = match (&self.cpus, self.workers) {
            (Some(CpuList(list)), _) => {
                if list.is_empty() {
                    return Err(Error::Invalid {
                        flag: "--cpus",
                        reason: "empty list".into(),
                    });
                }
                if let Some(&cpu) = list.iter().find(|c| !allowed.contains(c)) {
                    return Err(Error::Cpu { cpu, allowed });
                }
                list.clone()
            }
            (None, Some(0)) => {
                return Err(Error::Invalid {
                    flag: "--workers",
                    reason: "must be at least 1".into(),
                })
            }
            (None, Some(n)) if n > allowed.len() => {
                return Err(Error::Invalid {
                    flag: "--workers",
                    reason: format!(
                        "{n} workers but only {} usable cores ({}); one worker per core",
                        allowed.len(),
                        format_cpu_list(&allowed)
                    ),
                })
            }
            (None, Some(n)) => allowed[..n].to_vec(),
            (None, None) => allowed,
        };
        let listeners: Vec<Listener> = if self.listen.is_empty() {
            let mode = self.mode.0;
            let port = mode.default_port();
            vec![
                Listener {
                    addr: SocketAddr::from(([0, 0, 0, 0], port)),
                    mode,
                },
                Listener {
                    addr: SocketAddr::from(([0u16; 8], port)),
                    mode,
                },
            ]
        } else {
            self.listen
                .iter()
                .map(|l| Listener {
                    addr: l.addr,
                    mode: l.mode.unwrap_or(self.mode.0),
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
        let stats_interval = match self.stats_interval {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None if stdout_is_terminal && !self.json => Some(Duration::from_secs(1)),
            None => None,
        };
        Ok(ServeConfig {
            listeners,
            cpus,
            backend: self.backend,
            batch: self.batch as usize,
            max_datagram: self.max_datagram as usize,
            buffers: self.buffers,
            rcvbuf: self.rcvbuf,
            incoming_cpu: self.incoming_cpu,
            gso: !self.no_gso,
            duration: self.duration,
            stats_interval,
            json: self.json,
        })
    }
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
