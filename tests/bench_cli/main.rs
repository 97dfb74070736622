//! `udp-reflector bench` end to end: the built binary against small echo
//! servers written here, each misbehaving in one known way, so that every
//! counter bench reports can be checked against what the server really did.
//!
//! The last tests drive our own reflector and check bench's counters
//! against the reflector's, in echo mode and, with `bench --stamp`, in
//! STAMP mode. One test binary, a module per theme: accounting, sending,
//! reports, against_reflector, stamp.
//!
//! Everything runs on loopback, on ports the kernel picks; every server
//! loop stops by itself within seconds, and every bench run is bounded.

#[path = "../common/mod.rs"]
mod common;

mod accounting;
mod against_reflector;
mod reports;
mod sending;
mod stamp;

use std::{
    collections::VecDeque,
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// Tests that count exactly hold this shared; floods hold it exclusively,
/// so a flood never overflows a host queue under an exact count. This guards
/// `cargo test` (one process, many threads); under nextest each test is its
/// own process and .config/nextest.toml runs the end-to-end suites serially.
static LOAD: RwLock<()> = RwLock::new(());

fn exact() -> std::sync::RwLockReadGuard<'static, ()> {
    LOAD.read().unwrap_or_else(|p| p.into_inner())
}

fn flood() -> std::sync::RwLockWriteGuard<'static, ()> {
    LOAD.write().unwrap_or_else(|p| p.into_inner())
}

/// How the test server answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// RFC 862.
    Echo,
    /// Answers all but every nth datagram.
    DropEvery(u64),
    /// Answers every datagram twice.
    Duplicate,
    /// Holds every nth datagram for the given time before answering it.
    DelayEvery(u64, Duration),
    /// Answers datagrams two by two, the second first.
    SwapPairs,
    /// Flips a payload byte in every nth answer, and follows every mth with
    /// a datagram that is not an echo at all.
    Mangle { flip_every: u64, foreign_every: u64 },
}

/// What the server did, to compare with what bench says.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// Datagrams received.
    received: u64,
    /// Of which flagged as warmup (bit 0 of the big-endian u16 at offset 8).
    warmup: u64,
    /// Datagrams sent back, all kinds.
    sent: u64,
    dropped: u64,
    delayed: u64,
    swapped: u64,
    flipped: u64,
    foreign: u64,
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Seen>,
}

impl Server {
    /// None when `bind` is refused (no IPv6 on this host, say).
    fn start(bind: &str, b: Behaviour) -> Option<Server> {
        let sock = match UdpSocket::bind(bind) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipped: cannot bind {bind}: {e}");
                return None;
            }
        };
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = thread::spawn(move || serve(sock, b, &s));
        Some(Server { addr, stop, handle })
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

fn serve(sock: UdpSocket, b: Behaviour, stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 65536];
    let mut held: VecDeque<(Instant, Vec<u8>, SocketAddr)> = VecDeque::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let send = |seen: &mut Seen, d: &[u8], to: SocketAddr| {
        sock.send_to(d, to).unwrap();
        seen.sent += 1;
    };
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        while held.front().is_some_and(|(due, ..)| *due <= Instant::now()) {
            let (_, d, to) = held.pop_front().unwrap();
            send(&mut seen, &d, to);
        }
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => {
                // Idle: a pair never completed is answered alone.
                if matches!(b, Behaviour::SwapPairs) {
                    if let Some((_, d, to)) = held.pop_front() {
                        send(&mut seen, &d, to);
                    }
                }
                continue;
            }
        };
        seen.received += 1;
        if n >= 10 && u16::from_be_bytes([buf[8], buf[9]]) & 1 != 0 {
            seen.warmup += 1;
        }
        let d = &mut buf[..n];
        let i = seen.received;
        match b {
            Behaviour::Echo => send(&mut seen, d, from),
            Behaviour::DropEvery(k) if i % k == 0 => seen.dropped += 1,
            Behaviour::DropEvery(_) => send(&mut seen, d, from),
            Behaviour::Duplicate => {
                send(&mut seen, d, from);
                send(&mut seen, d, from);
            }
            Behaviour::DelayEvery(k, by) if i % k == 0 => {
                seen.delayed += 1;
                held.push_back((Instant::now() + by, d.to_vec(), from));
            }
            Behaviour::DelayEvery(..) => send(&mut seen, d, from),
            Behaviour::SwapPairs => match held.pop_front() {
                // Held until the next datagram or an idle moment, never by time.
                None => held.push_back((deadline, d.to_vec(), from)),
                Some((_, first, to)) => {
                    send(&mut seen, d, from);
                    send(&mut seen, &first, to);
                    seen.swapped += 1;
                }
            },
            Behaviour::Mangle {
                flip_every,
                foreign_every,
            } => {
                if i % flip_every == 0 {
                    let last = d.len() - 1;
                    d[last] ^= 0x55;
                    seen.flipped += 1;
                }
                send(&mut seen, d, from);
                if i % foreign_every == 0 {
                    send(&mut seen, b"not an echo", from);
                    seen.foreign += 1;
                }
            }
        }
    }
    for (_, d, to) in held {
        sock.send_to(&d, to).unwrap();
    }
    seen
}

/// How a bench run ended.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.status, 0, "bench failed: {}", self.stderr);
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one JSON object on one line: {:?}",
            self.stdout
        );
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]))
    }
}

impl From<common::Outcome> for Run {
    fn from(o: common::Outcome) -> Run {
        Run {
            status: o.status.code().unwrap_or(-1),
            stdout: o.stdout.iter().map(|l| format!("{l}\n")).collect(),
            stderr: o.stderr,
        }
    }
}

/// Runs `udp-reflector bench ARGS` to its end (killed, and the test failed,
/// if it outlives 20 s).
fn bench(args: &[&str]) -> Run {
    common::run_to_exit(&mut common::bench_command(args), Duration::from_secs(20))
        .expect("spawning bench")
        .into()
}

/// Runs `udp-reflector bench --target TARGET FLAGS`, FLAGS split on spaces.
fn bench_at(target: &str, flags: &str) -> Run {
    let mut args = vec!["--target", target];
    args.extend(flags.split_whitespace());
    bench(&args)
}

fn u(j: &Value, k: &str) -> u64 {
    j[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing or not a count in {j}"))
}

/// The identities every report keeps, whatever the server did.
fn assert_consistent(j: &Value) {
    assert_eq!(u(j, "sent"), u(j, "received") + u(j, "lost"), "{j}");
    assert_eq!(
        u(j, "warmup_sent"),
        u(j, "warmup_received") + u(j, "warmup_lost"),
        "{j}"
    );
    assert!(u(j, "late") <= u(j, "lost"), "{j}");
    assert!(u(j, "reordered") <= u(j, "received"), "{j}");
    let read = [
        "received",
        "duplicates",
        "late",
        "warmup_received",
        "warmup_duplicates",
        "warmup_late",
        "corrupt",
        "invalid",
    ]
    .iter()
    .map(|k| u(j, k))
    .sum::<u64>();
    assert_eq!(
        u(j, "echoes"),
        read,
        "every datagram read lands in one counter: {j}"
    );
    assert_eq!(j["rtt_us"]["count"].as_u64(), Some(u(j, "received")), "{j}");
}

/// The server saw exactly what bench says it sent, and bench read exactly what the server sent.
fn assert_agrees_with(j: &Value, s: &Seen) {
    assert_eq!(
        u(j, "sent") + u(j, "warmup_sent"),
        s.received,
        "{j} vs {s:?}"
    );
    assert_eq!(u(j, "warmup_sent"), s.warmup, "{j} vs {s:?}");
    assert_eq!(u(j, "local_drops"), 0, "{j}");
}

fn target(s: &Server) -> String {
    s.addr.to_string()
}

/// Starts `serve --backend BACKEND --json --listen 127.0.0.1:0 ARGS`; `None`
/// (reason printed) when io_uring is refused here.
fn reflector(backend: &str, args: &[&str]) -> Option<common::Reflector> {
    common::start(backend, &[&["--listen", "127.0.0.1:0"], args].concat())
}

fn reflector_totals(r: common::Reflector) -> Value {
    common::stop_and_summarise(r)["total"].clone()
}
