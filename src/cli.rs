//! Command-line flags (clap types only), turned into a validated
//! [`ServeConfig`] by [`crate::config`].
//!
//! Raw flags and validated configuration are separate types, and only
//! main.rs imports this module: the command line sits on top of the graph.

use std::{net::SocketAddr, time::Duration};

use clap::{builder::PossibleValue, Args, Parser, Subcommand, ValueEnum};

use crate::{
    config::{self, BackendChoice, ListenSpec, ServeConfig},
    parse::{parse_secs, parse_secs_or_zero, CpuList},
    policy::{AllowList, Cidr, PolicyConfig, PortSet},
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
    Bench(BenchCommand),
}

/// `bench FLAGS` runs the load generator; `bench merge FILE...` merges the
/// results of several runs.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchCommand {
    #[command(subcommand)]
    pub tool: Option<BenchTool>,
    #[command(flatten)]
    pub run: Option<crate::bench::BenchArgs>,
}

#[derive(Debug, Subcommand)]
pub enum BenchTool {
    /// Merge `bench --json` results and `bench --hlog` interval logs of
    /// several runs into one report; its percentiles come from the added
    /// histograms.
    Merge(crate::bench::merge::MergeArgs),
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
    #[arg(long, value_enum, default_value_t = BackendArg(BackendChoice::Auto))]
    pub backend: BackendArg,

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

    /// Send every reply as its own message. Replies to one peer always leave
    /// in the order their requests arrived. By default, each run of replies
    /// in a batch to one peer with one length (a shorter one may end it)
    /// leaves as one UDP GSO train (UDP_SEGMENT), which the kernel cuts into
    /// the same datagrams: cheaper per packet, identical on the wire.
    #[arg(long)]
    pub no_gso: bool,

    /// Receive one datagram per read. By default every socket enables
    /// UDP_GRO (where the kernel has it, Linux >= 5.0): a train of one flow's
    /// datagrams (a GSO send on loopback, or datagrams a NIC's GRO merged)
    /// arrives in one buffer and is reflected as one UDP_SEGMENT train of the
    /// same size, from the address it was sent to. Every counter still
    /// counts datagrams.
    #[arg(long)]
    pub no_gro: bool,

    /// Workers never sleep: they poll for completions (uring) or read their
    /// sockets without blocking (mmsg) in a loop, and yield only to stop.
    /// Also sets SO_BUSY_POLL and SO_PREFER_BUSY_POLL where permitted
    /// (CAP_NET_ADMIN) and io_uring NAPI busy polling where the kernel has it
    /// (Linux >= 6.9): both matter on NICs, not on loopback. Takes the
    /// wakeup out of the round trip, at a cost: each worker keeps its core
    /// at 100% all the time, loaded or idle.
    #[arg(long, conflicts_with = "coalesce_us")]
    pub busy_poll: bool,

    /// uring backend only: let each wait gather completions for up to N
    /// microseconds (io_uring's min-wait, Linux >= 6.12) before the worker
    /// wakes, so a loaded worker handles more datagrams per wakeup. Less CPU
    /// per packet, up to N µs more latency. Off by default.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub coalesce_us: Option<u32>,

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

    /// Check the flags and this host (CPUs, io_uring), print the resolved
    /// configuration and exit: 0 when serve would start with it, 2 (with
    /// the reason) when not. Binds nothing. For systemd's ExecStartPre, CI
    /// and container health.
    #[arg(long)]
    pub check: bool,

    /// Answer only sources in this network, repeatable, IPv4 or IPv6
    /// (ADDR/PREFIX, or one ADDR). Other sources are counted as
    /// no_reply_not_allowed. Default: any source the rules below let through.
    #[arg(long, value_name = "CIDR", help_heading = "Source policy")]
    pub allow: Vec<Cidr>,

    /// Never answer these source ports, those of services that answer
    /// anything (echo, daytime, qotd, chargen, time, ntp, ssdp, memcached):
    /// a request "from" one is a spoofed attempt to make two services talk
    /// to each other forever. "none" refuses none.
    #[arg(long, value_name = "LIST", help_heading = "Source policy",
          default_value = "7,13,17,19,37,123,1900,11211", value_parser = parse_port_list)]
    pub refuse_source_ports: PortSet,

    /// Also answer datagrams sent to a broadcast or multicast address
    /// (refused by default: one such request draws a reply from every
    /// reflector on the segment).
    #[arg(long, help_heading = "Source policy")]
    pub answer_broadcast: bool,

    /// Answer at most N datagrams a second from each source address (token
    /// bucket per worker, bursts of N; bounded memory); the rest are counted
    /// as no_reply_rate_limited. Default: no limit.
    #[arg(long, value_name = "N", help_heading = "Source policy",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pps_per_source: Option<u32>,

    /// Where reflectors of this host announce their ports to each other, so
    /// that two of them on different ports never answer each other ("off":
    /// do not take part). Default: /run/udp-reflector as root, else
    /// $XDG_RUNTIME_DIR/udp-reflector.
    #[arg(
        long,
        value_name = "DIR|off",
        help_heading = "Source policy",
        env = "UDP_REFLECTOR_REGISTRY"
    )]
    pub registry: Option<std::path::PathBuf>,

    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (port 0 picks a
    /// free one, printed at start): every counter per worker and in total,
    /// the latency histogram, the host's drop counters, build info.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,

    /// Also report this NIC's rx/tx drop and error counters (from
    /// /sys/class/net/IF/statistics) with the host-wide drops.
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,
}

/// `--refuse-source-ports`: "7,19,1900", or "none".
fn parse_port_list(s: &str) -> Result<PortSet, String> {
    if s.trim() == "none" || s.trim().is_empty() {
        return Ok(PortSet::default());
    }
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("'{p}' is not a port (examples: 7,19,1900 or none)"))
        })
        .collect::<Result<Vec<u16>, String>>()
        .map(PortSet::from_ports)
}

/// A clap value for a type that names itself: the values, their names and
/// their help come from the type's `ALL`, `name()` and `about()`.
macro_rules! named_value {
    ($(#[$doc:meta])* $arg:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $arg(pub $inner);

        impl ValueEnum for $arg {
            fn value_variants<'a>() -> &'a [Self] {
                const ALL: [$arg; <$inner>::ALL.len()] = {
                    let mut all = [$arg(<$inner>::ALL[0]); <$inner>::ALL.len()];
                    let mut i = 0;
                    while i < all.len() {
                        all[i] = $arg(<$inner>::ALL[i]);
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
    };
}

named_value!(
    /// `--mode`'s value.
    ModeArg(Mode)
);
named_value!(
    /// `--backend`'s value.
    BackendArg(BackendChoice)
);

fn parse_ring_entries(s: &str) -> Result<u16, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(2..=32768).contains(&n) || !n.is_power_of_two() {
        return Err(format!("'{s}' must be a power of two from 2 to 32768"));
    }
    Ok(n as u16)
}

impl ServeArgs {
    /// Checks the flags against this host: the CPUs this process may use.
    pub fn validate(&self, stdout_is_terminal: bool) -> Result<ServeConfig, Error> {
        let listeners = config::listeners(&self.listen, self.mode.0)?;
        config::can_answer(&listeners, self.max_datagram as usize, self.rcvbuf)?;
        if self.coalesce_us.is_some() && self.backend.0 == BackendChoice::Mmsg {
            return Err(Error::Invalid {
                flag: "--coalesce-us",
                reason: "needs the uring backend (io_uring's min-wait); recvmmsg has no equivalent"
                    .into(),
            });
        }
        Ok(ServeConfig {
            cpus: config::worker_cpus(self.cpus.as_ref().map(|c| &c.0[..]), self.workers)?,
            listeners,
            backend: self.backend.0,
            batch: self.batch as usize,
            max_datagram: self.max_datagram as usize,
            buffers: self.buffers,
            rcvbuf: self.rcvbuf,
            incoming_cpu: self.incoming_cpu,
            gso: !self.no_gso,
            gro: !self.no_gro,
            busy_poll: self.busy_poll,
            coalesce_us: self.coalesce_us,
            duration: self.duration,
            stats_interval: config::stats_interval(
                self.stats_interval,
                stdout_is_terminal,
                self.json,
            )?,
            json: self.json,
            policy: PolicyConfig {
                service_ports: self.refuse_source_ports.clone(),
                allow: AllowList::new(&self.allow),
                answer_broadcast: self.answer_broadcast,
                max_pps_per_source: self.max_pps_per_source,
            },
            registry: match &self.registry {
                Some(d) if d.as_os_str() == "off" => None,
                Some(d) => Some(d.clone()),
                None => crate::registry::default_dir(crate::sys::is_root()),
            },
            metrics: self.metrics,
            interface: config::interface(self.interface.as_deref())?,
        })
    }
}
