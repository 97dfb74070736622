//! `udp-reflector bench`: a load generator for any RFC 862 echo server.
//!
//! Each datagram carries its own flow, sequence number and send time
//! (`header.rs`), so the server needs to understand nothing. Per flow, a
//! tracker (`tracker.rs`) turns echoes into received, lost, duplicated,
//! reordered and late; round-trip times go into an HdrHistogram.
//!
//! # What the numbers mean
//!
//! - `sent`: datagrams the kernel accepted (`sendmmsg`'s count; GSO trains
//!   counted segment by segment) after the warmup, until the end of
//!   `--duration`.
//! - `received`: of those, the ones whose first intact echo was read within
//!   `--timeout` of being sent. `lost`: the others. Always
//!   `sent == received + lost`.
//! - `late` (a subset of `lost`): echoes read after their datagram had
//!   timed out; `duplicates`: further copies of an echo already counted;
//!   `reordered` (a subset of `received`): echoes of a lower sequence than
//!   one already received on the same flow; `corrupt`: echoes of ours that
//!   came back changed (not counted received); `invalid`: datagrams that are
//!   not ours at all (ignored).
//! - Warmup datagrams carry a flag and are counted apart, in the same way
//!   (`warmup_sent`, `warmup_received`, ...), so `sent + warmup_sent` is
//!   everything the server was offered, and `echoes` (every datagram read)
//!   is everything it answered that reached us.
//! - Every datagram read lands in exactly one counter: `echoes == received +
//!   duplicates + late + warmup_received + warmup_duplicates + warmup_late +
//!   corrupt + invalid`.
//! - `rtt_us`: from the send stamp (CLOCK_MONOTONIC, taken just before the
//!   `sendmmsg`) to the moment bench read the echo, for `received` only.
//! - After the last send, bench keeps reading until every datagram is
//!   received or timed out (at most `--timeout`), so nothing in flight is
//!   miscounted as lost.
//!
//! Against our reflector on loopback: `sent + warmup_sent ==
//! rx_packets + rxq_overflow`, and `echoes + local_drops == tx_packets`
//! (`local_drops`: echoes bench's own sockets dropped, queue full) once
//! every reply has arrived; a reply still queued when bench stops reading
//! is in neither. Without loss, `received + warmup_received == tx_packets`.
//!
//! # `--stamp`
//!
//! bench speaks STAMP (RFC 8762) as an unauthenticated Session-Sender
//! instead (`stamp.rs`): every counter above keeps its meaning, each flow is
//! one STAMP session (one source port) numbered from 0, and a reply that is
//! not a STAMP reflection of one of our packets is `invalid` (an echo of it
//! included). `rtt_us` becomes (T4 − T1) − (T3 − T2), the round trip
//! without the reflector's residence time, and bench adds `forward_us`
//! (T2 − T1), `reverse_us` (T4 − T3) and `residence_us` (T3 − T2). T1 (read
//! just before each `sendmmsg`) and T4 (read when the reply is read, like
//! the echo mode's RTT end) are CLOCK_REALTIME; T2 and T3 are the
//! reflector's. On one host the clocks are one; across hosts the one-way
//! delays are only as good as the clocks' synchronisation, and a negative
//! one is counted (`negative`) and recorded as 0.

mod gate;
mod header;
mod hgrm;
mod intervals;
mod latency;
pub mod merge;
#[cfg(test)]
mod proptests;
mod protocol;
mod report;
mod socket;
mod stamp;
mod threads;
mod tracker;

use std::{
    io::IsTerminal,
    net::SocketAddr,
    path::PathBuf,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use clap::Args;

use self::{
    header::{Phase, HEADER_LEN},
    socket::FlowSocket,
    threads::{Flow, Shared, Threads, ABORT, STOP_SENDING},
    tracker::Tracker,
};
use crate::{
    parse::{parse_secs, parse_secs_or_zero, CpuList},
    sys::udp::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS, MAX_PAYLOAD_V4, MAX_PAYLOAD_V6},
    Error,
};

/// Bytes one send batch may hold.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Receive slots with GRO: each holds up to 64 KiB (a whole train).
const GRO_SLOTS: usize = 32;
/// Receive buffer asked for each flow socket.
const RCVBUF: u32 = 4 << 20;

/// Flags of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Echo server to drive (with --stamp: STAMP session-reflector),
    /// HOST:PORT: an address (`127.0.0.1:7007`, `[::1]:7007`) or a host name
    /// (`reflector-a:7007`), resolved once at start; the address used is
    /// printed.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_target)]
    pub target: TargetSpec,

    /// Sockets to send from, each with its own source port (so a server's
    /// SO_REUSEPORT group spreads them over its workers).
    #[arg(long, value_name = "N", default_value_t = 8, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub flows: u16,

    /// UDP payload bytes per datagram: at least the 32-byte bench header
    /// (default 64), or with --stamp at least the 44-byte STAMP packet
    /// (default 44).
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true,
          value_parser = parse_size)]
    pub size: Option<usize>,

    /// Seconds to measure (fractions allowed), after the warmup.
    #[arg(long, value_name = "SECS", default_value = "5", allow_negative_numbers = true,
          value_parser = parse_secs)]
    pub duration: Duration,

    /// Seconds to send before measuring. Warmup datagrams are flagged and
    /// reported apart (warmup_sent, warmup_received, ...).
    #[arg(long, value_name = "SECS", default_value = "0", allow_negative_numbers = true,
          value_parser = parse_secs_or_zero)]
    pub warmup: Duration,

    /// Open loop: offer PPS datagrams per second in total, spread evenly
    /// over the flows, whatever comes back; 0 sends as fast as the kernel
    /// takes them.
    #[arg(
        long,
        value_name = "PPS",
        allow_negative_numbers = true,
        conflicts_with = "window"
    )]
    pub rate: Option<u64>,

    /// Closed loop: keep at most N datagrams in flight on each flow (so
    /// flows x N in total); a datagram leaves flight when its echo arrives
    /// or it times out. `--flows 1 --window 1` is a ping-pong latency test.
    /// Default (without --rate): 32.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub window: Option<u32>,

    /// Seconds after which a datagram without an echo counts as lost; also
    /// the longest wait for echoes after the last send.
    #[arg(long, value_name = "SECS", default_value = "1", allow_negative_numbers = true,
          value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Datagrams per sendmmsg (capped so that one batch holds at most 4 MiB).
    #[arg(long, value_name = "N", default_value_t = 64, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,

    /// Send each batch as UDP GSO trains (UDP_SEGMENT) of up to 64
    /// datagrams, so one core offers far more than it could one datagram
    /// per buffer. Falls back to plain sends if the kernel refuses.
    #[arg(long)]
    pub gso: bool,

    /// Read one datagram per slot. By default bench reads with UDP_GRO
    /// (where the kernel has it): a train of echoes (a GSO reply on
    /// loopback, or datagrams a NIC's GRO merged) is read in one go and split
    /// back into its datagrams, each counted as usual.
    #[arg(long)]
    pub no_gro: bool,

    /// Never sleep while waiting for echoes: the receiving loop polls its
    /// sockets without blocking, so the RTT of a ping-pong (`--flows 1
    /// --window 1`) leaves out bench's own wakeup. Costs a whole core per
    /// receiving thread while it runs.
    #[arg(long)]
    pub busy_poll: bool,

    /// Cores to pin threads to, such as "0,2-3". Open loop runs a sender
    /// and a receiver thread per pair of cores, in list order (a single
    /// core takes both; an odd last core is left unused); closed loop one
    /// thread per core. Flows are dealt out round-robin. Default: one
    /// sender and one receiver (open) or one thread (closed), unpinned.
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<CpuList>,

    /// Print the result as one JSON object on stdout (and no live lines).
    #[arg(long)]
    pub json: bool,

    /// Also write the round-trip time distribution to FILE in HdrHistogram's
    /// percentile text format (.hgrm, microseconds), for its plotter.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,

    /// Also write one round-trip time histogram per second to FILE, in
    /// HdrHistogram's interval-log format (nanoseconds), so that runs from
    /// several hosts can be added exactly (`udp-reflector bench merge`).
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,

    /// Speak STAMP (RFC 8762) as an unauthenticated Session-Sender, to any
    /// STAMP Session-Reflector (such as `udp-reflector serve --mode stamp`,
    /// port 862). Each flow is one session, its sequence numbers from 0.
    /// Reports one-way delays, forward T2-T1 and reverse T4-T3, and the
    /// reflector's residence time T3-T2; the RTT becomes (T4-T1)-(T3-T2).
    /// T1 and T4 are this host's CLOCK_REALTIME, T2 and T3 the reflector's:
    /// across hosts, one-way delays need synchronised clocks. Packets are
    /// 44 bytes unless --size asks for more (zero padding).
    #[arg(long)]
    pub stamp: bool,

    /// Exit with status 1 (and one line on stderr saying by how much) when
    /// the measured loss ratio (lost / sent) is above RATIO, 0 to 1. For CI
    /// gates, health checks and probes.
    #[arg(long, value_name = "RATIO", allow_negative_numbers = true,
          value_parser = gate::parse_ratio)]
    pub max_loss: Option<f64>,

    /// Exit with status 1 (and one line on stderr saying by how much) when
    /// the round-trip time's p99 is above MICROS microseconds, or when no
    /// round trip was measured.
    #[arg(long, value_name = "MICROS", allow_negative_numbers = true,
          value_parser = gate::parse_micros)]
    pub max_p99: Option<f64>,
}

/// `--target` as given: an address, or a host name and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Addr(SocketAddr),
    Name(String, u16),
}

fn parse_target(s: &str) -> Result<TargetSpec, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(TargetSpec::Addr(a));
    }
    let bad = || {
        format!("'{s}' is not HOST:PORT (examples: 127.0.0.1:7007, [::1]:7007, reflector-a:7007)")
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || host.contains(':') || host.contains('[') {
        return Err(bad());
    }
    Ok(TargetSpec::Name(host.to_string(), port))
}

impl TargetSpec {
    fn port(&self) -> u16 {
        match self {
            TargetSpec::Addr(a) => a.port(),
            TargetSpec::Name(_, p) => *p,
        }
    }

    /// The address to send to: a name is resolved once, its first address used.
    fn resolve(&self) -> Result<(SocketAddr, Option<String>), String> {
        match self {
            TargetSpec::Addr(a) => Ok((*a, None)),
            TargetSpec::Name(host, port) => {
                use std::net::ToSocketAddrs;
                let mut addrs = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| format!("cannot resolve '{host}': {e}"))?;
                let a = addrs
                    .next()
                    .ok_or_else(|| format!("'{host}' resolves to no address"))?;
                Ok((a, Some(host.clone())))
            }
        }
    }
}

/// The number and the upper bound; the lower bound depends on --stamp and
/// is checked in [`BenchArgs::validate`].
fn parse_size(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of bytes"))?;
    if n > MAX_PAYLOAD_V6 {
        return Err(format!(
            "{n} is larger than a UDP datagram can carry; use {HEADER_LEN} to {MAX_PAYLOAD_V6}"
        ));
    }
    Ok(n)
}

/// The `--size` in effect, or why it cannot be.
fn check_size(size: Option<usize>, stamp: bool) -> Result<usize, String> {
    let (min, what) = if stamp {
        (
            stamp::STAMP_LEN,
            "STAMP test packet (RFC 8762, unauthenticated)",
        )
    } else {
        (
            HEADER_LEN,
            "bench header (magic, run, flow, sequence, send time)",
        )
    };
    match size {
        None if stamp => Ok(stamp::STAMP_LEN),
        None => Ok(64),
        Some(n) if n < min => Err(format!(
            "{n} is smaller than the {min}-byte {what}; use {min} to {MAX_PAYLOAD_V6}"
        )),
        Some(n) => Ok(n),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_secs(s)? {
        d if d < Duration::from_millis(1) || d > Duration::from_secs(60) => {
            Err(format!("'{s}' must be between 0.001 and 60 seconds"))
        }
        d => Ok(d),
    }
}

/// How the load is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Open loop, datagrams per second in total (0: unlimited).
    Rate(u64),
    /// Closed loop, datagrams in flight per flow.
    Window(u32),
}

/// Validated configuration of `bench`.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: SocketAddr,
    /// The host name `--target` gave, when it was one.
    pub target_name: Option<String>,
    pub flows: usize,
    /// Bytes per datagram.
    pub size: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub load: Load,
    /// Datagrams per send call.
    pub batch: usize,
    /// Datagrams per GSO train, when --gso applies.
    pub gso_segments: Option<usize>,
    pub cpus: Option<Vec<usize>>,
    /// Thread groups: flows are split between them.
    pub groups: usize,
    pub json: bool,
    pub live: bool,
    pub hgrm: Option<PathBuf>,
    pub hlog: Option<PathBuf>,
    /// log2 of each tracker's ring.
    pub tracker_log2: u32,
    /// Random per run, in every header.
    pub run: u32,
    /// STAMP Session-Sender instead of bench headers.
    pub stamp: bool,
    /// Read with UDP_GRO (trains split back into datagrams).
    pub gro: bool,
    /// Receiving loops poll without sleeping.
    pub busy_poll: bool,
    /// --max-loss and --max-p99.
    pub limits: gate::Limits,
}

impl BenchArgs {
    /// Checks the flags against each other and this host.
    pub fn validate(&self, stdout_is_terminal: bool) -> Result<Config, Error> {
        if self.target.port() == 0 {
            return Err(Error::Invalid {
                flag: "--target",
                reason: "port 0 cannot be sent to".into(),
            });
        }
        let (target, target_name) = self.target.resolve().map_err(|reason| Error::Invalid {
            flag: "--target",
            reason,
        })?;
        let size = check_size(self.size, self.stamp).map_err(|reason| Error::Invalid {
            flag: "--size",
            reason,
        })?;
        if target.is_ipv4() && size > MAX_PAYLOAD_V4 {
            return Err(Error::Invalid {
                flag: "--size",
                reason: format!(
                    "{size} is larger than an IPv4 UDP datagram can carry (at most {MAX_PAYLOAD_V4})"
                ),
            });
        }
        let flows = usize::from(self.flows);
        let cpus = match &self.cpus {
            None => None,
            Some(CpuList(list)) => Some(crate::config::check_cpus(list)?),
        };
        let load = match (self.rate, self.window) {
            (Some(r), _) => Load::Rate(r),
            (None, Some(w)) => Load::Window(w),
            (None, None) => Load::Window(32),
        };
        let ncpus = cpus.as_ref().map_or(1, Vec::len);
        let groups = match load {
            Load::Rate(_) => (ncpus / 2).max(1),
            Load::Window(_) => ncpus,
        }
        .min(flows);
        let batch = (self.batch as usize).min(MAX_BATCH_BYTES / size).max(1);
        let gso_segments = self
            .gso
            .then(|| batch.min(GSO_MAX_SEGMENTS).min(GSO_MAX_BYTES / size));
        if gso_segments == Some(1) {
            eprintln!(
                "bench: --gso has no effect here: a train of {size}-byte datagrams holds only one (batch {batch})"
            );
        }
        let gso_segments = gso_segments.filter(|&s| s > 1);
        // Tracker rings: enough for everything a flow may have in flight, at
        // most 2^27 bytes over all flows, at most 4 MiB per flow.
        let max_log2 = (27 - flows.next_power_of_two().trailing_zeros()).clamp(16, 22);
        let tracker_log2 = match load {
            Load::Rate(r) if r > 0 => {
                let per_flow = r.div_ceil(flows as u64) as f64;
                let need = (4.0 * per_flow * (self.timeout.as_secs_f64() + 1.0)) as u64;
                need.next_power_of_two()
                    .trailing_zeros()
                    .clamp(16, max_log2)
            }
            Load::Window(w) => max_log2.max(u64::from(w).next_power_of_two().trailing_zeros() + 2),
            Load::Rate(_) => max_log2,
        };
        Ok(Config {
            target,
            target_name,
            flows,
            size,
            duration: self.duration,
            warmup: self.warmup,
            timeout: self.timeout,
            load,
            batch,
            gso_segments,
            cpus,
            groups,
            json: self.json,
            live: stdout_is_terminal && !self.json,
            hgrm: self.hgrm.clone(),
            hlog: self.hlog.clone(),
            tracker_log2,
            run: run_id(),
            stamp: self.stamp,
            gro: !self.no_gro,
            busy_poll: self.busy_poll,
            limits: gate::Limits {
                max_loss: self.max_loss,
                max_p99_us: self.max_p99,
            },
        })
    }
}

/// A run id unlikely to repeat: the clock's nanoseconds mixed with the pid.
fn run_id() -> u32 {
    let x = crate::sys::clock::realtime_ns() ^ (u64::from(std::process::id()) << 32);
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x ^ (x >> 29)) as u32
}

impl Config {
    fn warmup_ns(&self) -> u64 {
        self.warmup.as_nanos() as u64
    }

    /// When sending stops, in nanoseconds since the epoch.
    pub fn end_ns(&self) -> u64 {
        (self.warmup + self.duration).as_nanos() as u64
    }

    pub fn phase_at(&self, now_ns: u64) -> Phase {
        if now_ns < self.warmup_ns() {
            Phase::Warmup
        } else {
            Phase::Measured
        }
    }

    pub fn tracker_cap(&self) -> u64 {
        1 << self.tracker_log2
    }

    pub fn tracker(&self) -> Tracker {
        Tracker::new(self.tracker_log2, self.timeout.as_nanos() as u64)
    }

    /// Round-trip times above this are saturated: twice the timeout, at least 1 s.
    pub fn rtt_high_ns(&self) -> u64 {
        (2 * self.timeout.as_nanos() as u64).max(1_000_000_000)
    }

    /// Messages read per recvmmsg (with GRO, each may hold a train).
    pub fn rx_slots(&self) -> usize {
        let slots = self
            .batch
            .clamp(16, 256)
            .min((MAX_BATCH_BYTES / self.rx_slot_len()).max(1));
        if self.gro {
            slots.min(GRO_SLOTS)
        } else {
            slots
        }
    }

    /// Bytes per receive slot: a datagram, or with GRO a whole train.
    pub fn rx_slot_len(&self) -> usize {
        if self.gro {
            MAX_PAYLOAD_V6
        } else {
            self.size
        }
    }
}

/// How a run ended against `--max-loss` and `--max-p99`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within every limit given (or none given).
    Pass,
    /// One line saying which limit broke and by how much.
    Fail(String),
}

/// Runs the load generator, prints its report and judges it against the
/// limits.
pub fn run(args: &BenchArgs) -> Result<Verdict, Error> {
    let cfg = args.validate(std::io::stdout().is_terminal())?;
    if let Some(name) = &cfg.target_name {
        eprintln!(
            "bench: {name} resolved to {}; sending there",
            cfg.target.ip()
        );
    }
    let hgrm = match &cfg.hgrm {
        Some(path) => Some(
            std::fs::File::create(path).map_err(|e| Error::io("creating the --hgrm file", e))?,
        ),
        None => None,
    };
    let hlog = match &cfg.hlog {
        Some(path) => Some(
            std::fs::File::create(path).map_err(|e| Error::io("creating the --hlog file", e))?,
        ),
        None => None,
    };
    let mut socks = Vec::with_capacity(cfg.flows);
    for _ in 0..cfg.flows {
        let s = FlowSocket::connect(&cfg.target)
            .map_err(|e| Error::io("connecting a flow socket to --target", e))?;
        // The kernel caps this at net.core.rmem_max; the default is what remains.
        let _ = s.set_rcvbuf(RCVBUF);
        socks.push(Arc::new(s));
    }
    let mut cfg = cfg;
    if cfg.gso_segments.is_some() {
        if let Err(e) = socks
            .iter()
            .try_for_each(|s| s.set_gso_segment(cfg.size as u16))
        {
            eprintln!("bench: --gso: this kernel refuses UDP_SEGMENT ({e}); sending without it");
            socks.iter().for_each(|s| {
                let _ = s.set_gso_segment(0);
            });
            cfg.gso_segments = None;
        }
    }
    if cfg.gro {
        if let Err(e) = socks.iter().try_for_each(|s| s.set_gro(true)) {
            if !cfg.json {
                eprintln!(
                    "bench: this kernel refuses UDP_GRO ({e}); reading one datagram at a time"
                );
            }
            socks.iter().for_each(|s| {
                let _ = s.set_gro(false);
            });
            cfg.gro = false;
        }
    }
    crate::sys::signals::block_stop_signals()
        .map_err(|e| Error::io("blocking SIGINT and SIGTERM", e))?;
    let flows = socks
        .iter()
        .enumerate()
        .map(|(i, s)| Flow {
            id: i as u16,
            sock: s.clone(),
        })
        .collect::<Vec<_>>();
    // Before the epoch starts: nothing here delays the first send.
    let about = format!(
        "--target {} --flows {} --size {}",
        cfg.target, cfg.flows, cfg.size
    );
    let mut intervals = intervals::Intervals::new(
        latency::new_histogram(cfg.rtt_high_ns()),
        hlog,
        std::time::SystemTime::now(),
        &about,
    )
    .map_err(|e| Error::io("writing the --hlog file", e))?;
    let shared = Arc::new(Shared::new(cfg.flows));
    let threads = threads::start(&cfg, flows, &shared)
        .map_err(|e| Error::io("starting a bench thread", e))?;
    let (stopped_at, hlog_error) = supervise(&cfg, &threads, &shared, &mut intervals);
    let lives = threads.lives.clone();
    let totals = threads.join();
    let mut latency = latency::Latency::new(&cfg);
    for live in &lives {
        latency.add(&live.latency.lock().unwrap_or_else(|p| p.into_inner()));
    }
    let local_drops = socks
        .iter()
        .map(|s| u64::from(s.drops().unwrap_or(0)))
        .sum();
    let (m, w) = (
        &totals.counts[Phase::Measured as usize],
        &totals.counts[Phase::Warmup as usize],
    );
    let end = intervals::Counts {
        sent: m.sent + w.sent,
        received: m.received + w.received,
        lost: m.lost + w.lost,
    };
    let last = intervals.sample(shared.epoch.elapsed(), end, &latency.rtt);
    if let Some(e) = hlog_error.map(Err).unwrap_or(last).err() {
        return Err(Error::io("writing the --hlog file", e));
    }
    let measured = match stopped_at {
        Some(at) => at.saturating_sub(cfg.warmup).min(cfg.duration),
        None => cfg.duration,
    };
    let r = report::Report {
        cfg: &cfg,
        totals: &totals,
        latency: &latency,
        measured,
        local_drops,
        gso: cfg.gso_segments.is_some() && !shared.gso_refused(),
        interrupted: stopped_at.is_some(),
        intervals: &intervals.items,
    };
    if cfg.json {
        println!("{}", r.json());
    } else {
        print!("{}", r.text());
    }
    if let Some(mut f) = hgrm {
        use std::io::Write;
        f.write_all(hgrm::percentile_distribution(&latency.rtt, 1000.0).as_bytes())
            .map_err(|e| Error::io("writing the --hgrm file", e))?;
    }
    let m = &totals.counts[Phase::Measured as usize];
    Ok(match cfg.limits.verdict(m.sent, m.lost, &latency.rtt) {
        None => Verdict::Pass,
        Some(line) => Verdict::Fail(line),
    })
}

/// Waits for the threads, printing a live line each second if asked, and
/// turns SIGINT/SIGTERM into "stop sending" (first) and "stop now" (second).
/// Closes an interval each second. Returns when sending was stopped early,
/// as time since the epoch, and the first error writing `--hlog`.
fn supervise(
    cfg: &Config,
    threads: &Threads,
    shared: &Shared,
    intervals: &mut intervals::Intervals,
) -> (Option<Duration>, Option<std::io::Error>) {
    let mut stopped_at = None;
    let mut hlog_error = None;
    let mut line = report::LiveLine::new();
    let mut next_line = Instant::now() + Duration::from_secs(1);
    while !threads.finished() {
        let tick = next_line
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        if crate::sys::signals::wait_stop_signal(tick).is_some() {
            if stopped_at.is_none() {
                stopped_at = Some(shared.epoch.elapsed());
                shared.state.store(STOP_SENDING, Relaxed);
                if !cfg.json {
                    eprintln!(
                        "bench: stopping; waiting up to {:?} for echoes (signal again to skip)",
                        cfg.timeout
                    );
                }
            } else {
                shared.state.store(ABORT, Relaxed);
            }
        }
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            let (counts, rtt) = threads.snapshot(cfg);
            if let Err(e) = intervals.sample(shared.epoch.elapsed(), counts, &rtt) {
                hlog_error.get_or_insert(e);
            }
            if cfg.live {
                eprintln!("{}", line.next(cfg, threads, shared));
            }
        }
    }
    (stopped_at, hlog_error)
}

/// Parses bench flags as given after `--target 127.0.0.1:7` (unit tests).
#[cfg(test)]
pub(crate) fn parse_for_test(extra: &[&str]) -> Result<BenchArgs, String> {
    let mut argv = vec!["--target", "127.0.0.1:7"];
    argv.extend_from_slice(extra);
    parse_argv_for_test(&argv)
}

/// Parses bench flags, `--target` included (unit tests).
#[cfg(test)]
pub(crate) fn parse_argv_for_test(argv: &[&str]) -> Result<BenchArgs, String> {
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BenchArgs,
    }

    Wrap::try_parse_from(std::iter::once(&"t").chain(argv))
        .map(|w| w.args)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<BenchArgs, String> {
        parse_for_test(extra)
    }

    fn config(extra: &[&str]) -> Config {
        parse(extra).unwrap().validate(true).unwrap()
    }

    #[test]
    fn defaults_are_a_closed_loop_of_eight_flows() {
        let c = config(&[]);
        assert_eq!(
            (c.flows, c.size, c.load, c.batch),
            (8, 64, Load::Window(32), 64)
        );
        assert_eq!(
            (c.duration, c.warmup, c.timeout),
            (
                Duration::from_secs(5),
                Duration::ZERO,
                Duration::from_secs(1)
            )
        );
        assert_eq!((c.groups, c.gso_segments, c.live), (1, None, true));
        assert!(!config(&["--json"]).live, "--json keeps stderr quiet");
        assert_eq!(config(&["--rate", "0"]).load, Load::Rate(0));
        assert!(!c.stamp);
    }

    #[test]
    fn stamp_packets_are_44_bytes_unless_asked_for_more() {
        let c = config(&["--stamp"]);
        assert_eq!((c.stamp, c.size), (true, 44));
        assert_eq!(config(&["--stamp", "--size", "44"]).size, 44);
        assert_eq!(config(&["--stamp", "--size", "1000"]).size, 1000);
        assert_eq!(
            config(&["--size", "40"]).size,
            40,
            "without --stamp, 32 suffice"
        );
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (&["--size", "65528"][..], "--size"),
            (&["--flows", "0"], "--flows"),
            (&["--flows", "1025"], "--flows"),
            (&["--window", "0"], "--window"),
            (&["--rate", "5", "--window", "5"], "--window"),
            (&["--timeout", "0"], "--timeout"),
            (&["--timeout", "61"], "--timeout"),
            (&["--duration", "0"], "--duration"),
            (&["--warmup", "-1"], "--warmup"),
            (&["--batch", "0"], "--batch"),
        ] {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(e.contains(flag), "{args:?}: {e}");
        }
        let small = |args: &[&str]| {
            parse(args)
                .unwrap()
                .validate(false)
                .unwrap_err()
                .to_string()
        };
        let e = small(&["--size", "31"]);
        assert!(
            e.contains("--size") && e.contains("32-byte bench header"),
            "{e}"
        );
        let e = small(&["--stamp", "--size", "43"]);
        assert!(e.contains("--size") && e.contains("44-byte STAMP"), "{e}");
        assert!(parse(&["--size", "x"]).unwrap_err().contains("--size"));
        let too_big = parse(&["--size", "65520"])
            .unwrap()
            .validate(false)
            .unwrap_err();
        assert!(too_big.to_string().contains("--size"), "{too_big}");
        let v6 = parse_argv_for_test(&["--target", "[::1]:7", "--size", "65520"]).unwrap();
        assert!(v6.validate(false).is_ok(), "IPv6 carries 20 bytes more");
        let port0 = parse_argv_for_test(&["--target", "127.0.0.1:0"]).unwrap();
        assert!(port0
            .validate(false)
            .unwrap_err()
            .to_string()
            .contains("--target"));
    }

    #[test]
    fn batches_and_gso_trains_fit_a_datagram_and_four_mib() {
        let c = config(&["--gso", "--batch", "1024"]);
        assert_eq!((c.batch, c.gso_segments), (1024, Some(64)));
        let c = config(&["--gso", "--size", "9000", "--batch", "1024"]);
        assert_eq!(
            (c.batch, c.gso_segments),
            (466, Some(7)),
            "4 MiB / 9000; 65507 / 9000"
        );
        let c = config(&["--gso", "--size", "40000"]);
        assert_eq!(c.gso_segments, None, "one segment per train is no train");
        let c = config(&["--gso", "--batch", "8"]);
        assert_eq!(c.gso_segments, Some(8));
    }

    #[test]
    fn tracker_rings_cover_what_can_be_in_flight() {
        // 100k pps over 4 flows with a 1 s timeout: 25k per second per flow.
        let c = config(&["--rate", "100000", "--flows", "4"]);
        assert!(c.tracker_cap() / 2 >= 2 * 25_000, "{}", c.tracker_cap());
        assert!(
            config(&["--rate", "10"]).tracker_cap() == 1 << 16,
            "small, never tiny"
        );
        assert!(config(&["--window", "65536", "--flows", "1024"]).tracker_cap() / 2 >= 65_536);
        assert!(
            config(&["--rate", "0", "--flows", "1024"]).tracker_cap() <= 1 << 17,
            "bounded memory"
        );
        assert_eq!(
            config(&["--rate", "0", "--flows", "1"]).tracker_cap(),
            1 << 22
        );
    }

    #[test]
    fn open_loop_pairs_cores_and_closed_loop_uses_each() {
        let allowed = crate::sys::affinity::allowed_cpus().unwrap();
        let list = crate::parse::format_cpu_list(&allowed);
        let open = config(&["--rate", "1000", "--cpus", &list]);
        assert_eq!(open.groups, (allowed.len() / 2).max(1));
        let closed = config(&["--window", "1", "--cpus", &list]);
        assert_eq!(closed.groups, allowed.len().min(8));
        assert_eq!(
            config(&["--flows", "1", "--cpus", &list]).groups,
            1,
            "no more groups than flows"
        );
        let missing = parse(&["--cpus", "100000"])
            .unwrap()
            .validate(false)
            .unwrap_err();
        assert!(
            matches!(missing, Error::Cpu { cpu: 100000, .. }),
            "{missing}"
        );
    }
}
