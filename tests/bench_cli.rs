//! `udp-reflector bench` end to end: the built binary against small echo
//! servers written here, each misbehaving in one known way, so that every
//! counter bench reports can be checked against what the server really did.
//!
//! The last tests drive our own reflector and check bench's counters
//! against the reflector's, in echo mode and, with `bench --stamp`, in
//! STAMP mode.
//!
//! Everything runs on loopback, on ports the kernel picks; every server
//! loop stops by itself within seconds, and every bench run is bounded.

mod common;

use std::{
    collections::VecDeque,
    net::{SocketAddr, UdpSocket},
    process::{Command, Stdio},
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

/// `udp-reflector bench ARGS` with piped output and no stdin.
fn bench_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(common::BIN);
    cmd.arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `udp-reflector bench ARGS` to its end (killed, and the test failed,
/// if it outlives 20 s).
fn bench(args: &[&str]) -> Run {
    common::run_to_exit(&mut bench_command(args), Duration::from_secs(20))
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

#[test]
fn a_perfect_echo_server_gets_everything_back() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Echo).unwrap();
    let run = bench_at(&target(&s), "--flows 2 --window 4 --duration 0.3 --json");
    let seen = s.finish();
    let j = run.json();
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    assert!(u(&j, "sent") > 100, "{j}");
    assert_eq!(u(&j, "received"), u(&j, "sent"), "{j}");
    assert_eq!(u(&j, "echoes"), seen.sent, "{j}");
    for k in [
        "lost",
        "duplicates",
        "late",
        "corrupt",
        "invalid",
        "reordered",
    ] {
        assert_eq!(u(&j, k), 0, "{k}: {j}");
    }
    assert_eq!(j["mode"], "closed");
    let rtt = &j["rtt_us"];
    let (p50, p99, max) = (
        rtt["p50"].as_f64().unwrap(),
        rtt["p99"].as_f64().unwrap(),
        rtt["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{rtt}");
    assert!(
        rtt["p90"].is_f64() && rtt["p999"].is_f64() && rtt["p9999"].is_f64(),
        "{rtt}"
    );
    assert!(
        run.stderr.is_empty(),
        "quiet when stdout is not a terminal: {}",
        run.stderr
    );
}

#[test]
fn every_datagram_the_server_drops_is_lost_and_nothing_else() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::DropEvery(10)).unwrap();
    let run = bench_at(
        &target(&s),
        "--flows 2 --rate 5000 --batch 8 --duration 0.4 --timeout 0.2 --json",
    );
    let seen = s.finish();
    let j = run.json();
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    assert!(seen.dropped >= 150, "{seen:?}");
    assert_eq!(u(&j, "lost"), seen.dropped, "{j}");
    assert_eq!(u(&j, "received"), seen.sent, "{j}");
    assert_eq!(u(&j, "late"), 0, "{j}");
    assert_eq!(j["mode"], "open");
}

#[test]
fn a_duplicating_server_is_caught() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Duplicate).unwrap();
    let run = bench_at(&target(&s), "--flows 2 --window 2 --duration 0.3 --json");
    let seen = s.finish();
    let j = run.json();
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    assert_eq!(u(&j, "lost"), 0, "{j}");
    // The last copies may still be on their way when bench stops reading.
    let (received, dups) = (u(&j, "received"), u(&j, "duplicates"));
    assert!(
        received > 100 && dups + 2 * 2 >= received && dups <= received,
        "{j}"
    );
}

#[test]
fn echoes_after_the_timeout_are_lost_and_counted_late() {
    let _load = exact();
    let s = Server::start(
        "127.0.0.1:0",
        Behaviour::DelayEvery(5, Duration::from_millis(300)),
    )
    .unwrap();
    let run = bench_at(
        &target(&s),
        "--flows 1 --rate 2000 --duration 0.5 --timeout 0.1 --json",
    );
    let seen = s.finish();
    let j = run.json();
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    assert_eq!(u(&j, "lost"), seen.delayed, "{j} vs {seen:?}");
    assert_eq!(u(&j, "received"), seen.received - seen.delayed, "{j}");
    // Those held past bench's drain never come back at all.
    assert!(u(&j, "late") > seen.delayed / 2, "{j} vs {seen:?}");
    assert_eq!(u(&j, "duplicates"), 0, "{j}");
}

#[test]
fn swapped_pairs_are_counted_reordered() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::SwapPairs).unwrap();
    let run = bench_at(&target(&s), "--flows 1 --rate 2000 --duration 0.3 --json");
    let seen = s.finish();
    let j = run.json();
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    assert!(seen.swapped > 100, "{seen:?}");
    assert_eq!(u(&j, "reordered"), seen.swapped, "{j} vs {seen:?}");
    assert_eq!(u(&j, "received"), u(&j, "sent"), "{j}");
}

#[test]
fn damaged_and_foreign_datagrams_are_counted_not_trusted() {
    let _load = exact();
    let s = Server::start(
        "127.0.0.1:0",
        Behaviour::Mangle {
            flip_every: 7,
            foreign_every: 5,
        },
    )
    .unwrap();
    let run = bench_at(
        &target(&s),
        "--flows 2 --window 8 --duration 0.3 --timeout 0.1 --json",
    );
    let seen = s.finish();
    let j = run.json();
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    assert!(seen.flipped > 10 && seen.foreign > 10, "{seen:?}");
    assert_eq!(u(&j, "corrupt"), seen.flipped, "{j} vs {seen:?}");
    assert_eq!(u(&j, "invalid"), seen.foreign, "{j} vs {seen:?}");
    assert_eq!(
        u(&j, "lost"),
        seen.flipped,
        "a damaged echo is not a received one: {j}"
    );
}

#[test]
fn warmup_datagrams_are_flagged_and_counted_apart() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Echo).unwrap();
    let run = bench_at(
        &target(&s),
        "--flows 2 --window 2 --warmup 0.2 --duration 0.2 --json",
    );
    let seen = s.finish();
    let j = run.json();
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    assert!(u(&j, "warmup_sent") > 20 && u(&j, "sent") > 20, "{j}");
    assert_eq!(u(&j, "warmup_received"), u(&j, "warmup_sent"), "{j}");
    assert_eq!(u(&j, "received"), u(&j, "sent"), "{j}");
}

#[test]
fn ipv6_targets_work() {
    let _load = exact();
    let Some(s) = Server::start("[::1]:0", Behaviour::Echo) else {
        return;
    };
    let run = bench_at(&target(&s), "--flows 2 --window 2 --duration 0.2 --json");
    let seen = s.finish();
    let j = run.json();
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    assert!(u(&j, "received") > 20 && u(&j, "lost") == 0, "{j}");
}

#[test]
fn open_loop_holds_the_rate() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Echo).unwrap();
    let run = bench_at(&target(&s), "--flows 4 --rate 4000 --duration 0.5 --json");
    let seen = s.finish();
    let j = run.json();
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    // Never faster than asked; a starved sender on a busy machine may fall
    // behind, but not by half.
    let sent = u(&j, "sent");
    assert!((1000..=2100).contains(&sent), "4000/s for 0.5 s: {j}");
    let pps = j["pps_sent"].as_f64().unwrap();
    assert!((2000.0..=4200.0).contains(&pps), "{j}");
    assert_eq!(j["bps_sent"].as_f64().unwrap(), pps * 64.0 * 8.0, "{j}");
}

#[test]
fn gso_trains_are_counted_datagram_by_datagram() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Echo).unwrap();
    let run = bench_at(
        &target(&s),
        "--flows 1 --window 32 --gso --size 200 --duration 0.3 --json",
    );
    let seen = s.finish();
    let j = run.json();
    if j["gso"] != true {
        eprintln!("skipped: this kernel refused UDP GSO: {}", run.stderr);
        return;
    }
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    assert!(u(&j, "sent") > 100, "{j}");
    assert_eq!(u(&j, "received"), u(&j, "sent"), "{j}");
}

#[test]
fn hgrm_file_holds_the_percentile_distribution() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Echo).unwrap();
    let path = std::env::temp_dir().join(format!("bench-cli-{}.hgrm", std::process::id()));
    let run = bench(&[
        "--target",
        &target(&s),
        "--flows",
        "1",
        "--window",
        "1",
        "--duration",
        "0.2",
        "--json",
        "--hgrm",
        path.to_str().unwrap(),
    ]);
    s.finish();
    let j = run.json();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "       Value     Percentile TotalCount 1/(1-Percentile)"
    );
    assert!(lines[2].contains(" 0.000000000000 "), "{text}");
    let total = lines.iter().find(|l| l.starts_with("#[Max")).unwrap();
    assert!(
        total.ends_with(&format!("{:>12}]", u(&j, "received"))),
        "{total} vs {j}"
    );
    let last_row = lines[lines.len() - 4];
    assert!(last_row.contains(" 1.000000000000 "), "{text}");
    let max_us: f64 = last_row.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        (max_us - j["rtt_us"]["max"].as_f64().unwrap()).abs() < 0.002,
        "{last_row} vs {j}"
    );
}

#[test]
fn the_text_report_names_every_counter() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Echo).unwrap();
    let run = bench_at(&target(&s), "--flows 1 --window 1 --duration 0.1");
    s.finish();
    assert_eq!(run.status, 0, "{}", run.stderr);
    for word in [
        "sent",
        "received",
        "lost",
        "late",
        "duplicates",
        "reordered",
        "corrupt",
        "invalid",
        "p99.99",
    ] {
        assert!(run.stdout.contains(word), "{word}: {}", run.stdout);
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--size", "1"], &["--size", "32"]),
        (&["--size", "70000"], &["--size"]),
        (&["--rate", "10", "--window", "2"], &["--rate", "--window"]),
        (&["--flows", "0"], &["--flows", "1..=1024"]),
        (&["--window", "0"], &["--window"]),
        (&["--timeout", "0"], &["--timeout"]),
        (&["--duration", "0"], &["--duration"]),
        (&["--cpus", "x"], &["--cpus"]),
    ];
    for (extra, words) in cases {
        let mut args = vec!["--target", "127.0.0.1:9"];
        args.extend_from_slice(extra);
        let run = bench(&args);
        assert_eq!(run.status, 2, "{extra:?}: {}", run.stderr);
        for w in *words {
            assert!(
                run.stderr.contains(w),
                "{extra:?} should name {w}: {}",
                run.stderr
            );
        }
    }
    let run = bench(&["--target", "127.0.0.1:0", "--duration", "0.1"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--target"), "{}", run.stderr);
}

#[test]
fn sigint_stops_sending_and_still_reports_everything() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Echo).unwrap();
    let args = [
        "--target",
        &target(&s),
        "--flows",
        "2",
        "--window",
        "4",
        "--duration",
        "30",
        "--json",
    ];
    let mut p = common::Proc::spawn(&mut bench_command(&args)).expect("spawning bench");
    thread::sleep(Duration::from_millis(300));
    let out = p.signal_and_wait(libc::SIGINT, Duration::from_secs(5));
    let seen = s.finish();
    assert!(out.exited_after < Duration::from_secs(2), "{out:?}");
    let j = Run::from(out).json();
    assert_consistent(&j);
    assert_agrees_with(&j, &seen);
    assert_eq!(j["interrupted"], true, "{j}");
    let secs = j["duration_s"].as_f64().unwrap();
    assert!(secs > 0.1 && secs < 2.0, "measured until the signal: {j}");
    assert_eq!(
        u(&j, "lost"),
        0,
        "in-flight datagrams drained, not lost: {j}"
    );
}

// ---------------------------------------------------------------------------
// Against our reflector: both sides count the same datagrams.

/// Starts `serve --backend BACKEND --json --listen 127.0.0.1:0 ARGS`; `None`
/// (reason printed) when io_uring is refused here.
fn reflector(backend: &str, args: &[&str]) -> Option<common::Reflector> {
    common::start(backend, &[&["--listen", "127.0.0.1:0"], args].concat())
}

fn reflector_totals(r: common::Reflector) -> Value {
    common::stop_and_summarise(r)["total"].clone()
}

/// Closed loop with warmup: nothing lost, and the two sides agree exactly.
fn bench_and_reflector_agree(backend: &str) {
    let _load = exact();
    let workers = if common::usable_cpus() >= 2 { "2" } else { "1" };
    let Some(r) = reflector(backend, &["--workers", workers]) else {
        return;
    };
    let run = bench_at(
        &r.addr().to_string(),
        "--flows 4 --window 8 --warmup 0.1 --duration 0.4 --json",
    );
    let t = reflector_totals(r);
    let j = run.json();
    assert_consistent(&j);
    let (rx, ovfl, tx) = (
        common::counter(&t, "rx_packets"),
        common::counter(&t, "rxq_overflow"),
        common::counter(&t, "tx_packets"),
    );
    assert_eq!(
        u(&j, "sent") + u(&j, "warmup_sent"),
        rx + ovfl,
        "bench {j}\nreflector {t}"
    );
    assert_eq!(
        u(&j, "received") + u(&j, "warmup_received"),
        tx,
        "bench {j}\nreflector {t}"
    );
    assert_eq!(u(&j, "echoes"), tx, "bench {j}\nreflector {t}");
    assert_eq!(u(&j, "lost"), 0, "{j}");
    assert!(u(&j, "sent") > 100 && u(&j, "warmup_sent") > 10, "{j}");
}

/// Open loop far beyond a reflector with a 4 KiB receive buffer: whatever
/// bench counts as sent, the reflector received or counted as overflow.
fn overload_is_accounted_on_both_sides(backend: &str) {
    let _load = flood();
    // --no-gro: the kernel counts a GRO train it drops at a full queue once
    // (one skb), so only datagram-by-datagram reads make the drop count exact.
    let Some(r) = reflector(backend, &["--workers", "1", "--rcvbuf", "4096", "--no-gro"]) else {
        return;
    };
    let backlog_drops_before = common::softnet_dropped();
    let run = bench_at(
        &r.addr().to_string(),
        "--flows 4 --rate 0 --gso --duration 0.3 --timeout 0.2 --json",
    );
    let backlog_drops = common::softnet_dropped() - backlog_drops_before;
    let t = reflector_totals(r);
    let j = run.json();
    assert_consistent(&j);
    let (rx, ovfl, tx) = (
        common::counter(&t, "rx_packets"),
        common::counter(&t, "rxq_overflow"),
        common::counter(&t, "tx_packets"),
    );
    let sent = u(&j, "sent");
    assert!(
        u(&j, "lost") > 0 && ovfl > 0,
        "overload expected: bench {j}\nreflector {t}"
    );
    // Exact, unless the host's input backlog itself dropped some (before any socket).
    assert!(
        rx + ovfl <= sent && rx + ovfl + backlog_drops >= sent,
        "sent {sent}, reflector rx_packets {rx} + rxq_overflow {ovfl} (backlog drops {backlog_drops})\n{j}\n{t}"
    );
    // Every reply was read, dropped by bench's own sockets, or still queued when bench stopped reading.
    assert!(
        u(&j, "echoes") + u(&j, "local_drops") <= tx,
        "bench {j}\nreflector {t}"
    );
    assert!(u(&j, "received") <= tx, "{j}\n{t}");
}

// ---------------------------------------------------------------------------
// `bench --stamp`: bench as a STAMP Session-Sender.

/// A latency object's statistic, in microseconds.
fn stat(j: &Value, dist: &str, k: &str) -> f64 {
    j[dist][k]
        .as_f64()
        .unwrap_or_else(|| panic!("{dist}.{k} missing or not a number in {j}"))
}

/// What every STAMP run against our reflector on loopback must show: the
/// delays of every received datagram, none negative (one clock), and each
/// one-way delay within the round trip. (rtt_us is (T4-T1)-(T3-T2), the raw
/// round trip T4-T1 less the residence; forward + reverse is exactly it, so
/// each quantile of either is at most the same quantile of rtt_us, and so
/// of the raw round trip.)
fn assert_stamp_delays(j: &Value) {
    assert_eq!(j["protocol"], "stamp", "{j}");
    let received = u(j, "received");
    for dist in ["rtt_us", "forward_us", "reverse_us", "residence_us"] {
        assert_eq!(j[dist]["count"].as_u64(), Some(received), "{dist}: {j}");
        assert_eq!(j[dist]["negative"].as_u64(), Some(0), "{dist}: {j}");
    }
    for q in ["p50", "p90", "p99", "max"] {
        let rtt = stat(j, "rtt_us", q);
        for one_way in ["forward_us", "reverse_us"] {
            let d = stat(j, one_way, q);
            assert!(
                0.0 < d && d <= rtt,
                "{one_way}.{q} {d} vs rtt_us.{q} {rtt}: {j}"
            );
        }
    }
    assert!(stat(j, "residence_us", "min") >= 0.0, "{j}");
    for k in ["p999", "p9999", "mean"] {
        stat(j, "forward_us", k);
        stat(j, "reverse_us", k);
    }
}

/// `bench --stamp`, closed loop with warmup, against our reflector in stamp
/// mode: every test packet comes back, and both sides count the same.
fn stamp_against_reflector(backend: &str) {
    let _load = exact();
    let workers = if common::usable_cpus() >= 2 { "2" } else { "1" };
    let Some(r) = reflector(backend, &["--workers", workers, "--mode", "stamp"]) else {
        return;
    };
    let run = bench_at(
        &r.addr().to_string(),
        "--stamp --flows 4 --window 8 --warmup 0.1 --duration 0.4 --json",
    );
    let t = reflector_totals(r);
    let j = run.json();
    assert_consistent(&j);
    assert_eq!(u(&j, "size"), 44, "the base packet by default: {j}");
    let (rx, tx) = (
        common::counter(&t, "rx_packets"),
        common::counter(&t, "tx_packets"),
    );
    assert!(u(&j, "sent") > 100 && u(&j, "warmup_sent") > 10, "{j}");
    assert_eq!(u(&j, "received"), u(&j, "sent"), "{j}");
    assert_eq!(u(&j, "warmup_received"), u(&j, "warmup_sent"), "{j}");
    assert_eq!(
        u(&j, "sent") + u(&j, "warmup_sent"),
        rx,
        "bench {j}\nreflector {t}"
    );
    assert_eq!(u(&j, "echoes"), tx, "bench {j}\nreflector {t}");
    for k in ["lost", "duplicates", "late", "corrupt", "invalid"] {
        assert_eq!(u(&j, k), 0, "{k}: {j}");
    }
    assert_stamp_delays(&j);
}

#[test]
fn stamp_open_loop_with_warmup_splits_the_phases_by_sequence() {
    // Open loop: the receiver thread learns each session's first measured
    // sequence from the sender thread, not from the packet.
    let _load = exact();
    let Some(r) = reflector("mmsg", &["--workers", "1", "--mode", "stamp"]) else {
        return;
    };
    let run = bench_at(
        &r.addr().to_string(),
        "--stamp --size 100 --flows 3 --rate 4000 --warmup 0.2 --duration 0.3 --json",
    );
    let t = reflector_totals(r);
    let j = run.json();
    assert_consistent(&j);
    assert_eq!(u(&j, "size"), 100, "{j}");
    assert!(u(&j, "warmup_sent") > 400 && u(&j, "sent") > 800, "{j}");
    assert_eq!(u(&j, "warmup_received"), u(&j, "warmup_sent"), "{j}");
    assert_eq!(u(&j, "received"), u(&j, "sent"), "{j}");
    assert_eq!(
        u(&j, "sent") + u(&j, "warmup_sent"),
        common::counter(&t, "rx_packets"),
        "bench {j}\nreflector {t}"
    );
    assert_eq!(u(&j, "invalid") + u(&j, "corrupt"), 0, "{j}");
    assert_eq!(j["mode"], "open");
    assert_stamp_delays(&j);
}

#[test]
fn stamp_text_report_shows_one_way_delays() {
    let _load = exact();
    let Some(r) = reflector("mmsg", &["--workers", "1", "--mode", "stamp"]) else {
        return;
    };
    let run = bench_at(
        &r.addr().to_string(),
        "--stamp --flows 1 --window 1 --duration 0.1",
    );
    reflector_totals(r);
    assert_eq!(run.status, 0, "{}", run.stderr);
    for word in [
        "(STAMP)", "rtt (us)", "fwd (us)", "rev (us)", "res (us)", "T4-T1",
    ] {
        assert!(run.stdout.contains(word), "{word}: {}", run.stdout);
    }
    assert!(!run.stdout.contains("note:"), "{}", run.stdout);
}

#[test]
fn stamp_against_an_echo_server_counts_every_reply_invalid() {
    // An echo of our 44-byte sender packet decodes as a reflector packet,
    // but its copy of our error estimate and T1, and its T2, are the sender
    // packet's MBZ zeros: not a reflection, so invalid, and nothing received.
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Echo).unwrap();
    let run = bench_at(
        &target(&s),
        "--stamp --flows 2 --window 2 --duration 0.3 --timeout 0.05 --json",
    );
    let seen = s.finish();
    let j = run.json();
    assert_consistent(&j);
    // (No warmup check: the test server reads a bench header's flag.)
    assert_eq!(u(&j, "sent") + u(&j, "warmup_sent"), seen.received, "{j}");
    assert_eq!(u(&j, "local_drops"), 0, "{j}");
    assert!(u(&j, "sent") >= 8, "{j}");
    assert_eq!(u(&j, "echoes"), seen.sent, "{j} vs {seen:?}");
    assert_eq!(u(&j, "invalid"), u(&j, "echoes"), "{j}");
    assert_eq!(u(&j, "received"), 0, "{j}");
    assert_eq!(u(&j, "lost"), u(&j, "sent"), "{j}");
    assert_eq!(u(&j, "corrupt"), 0, "{j}");
    for dist in ["rtt_us", "forward_us", "reverse_us", "residence_us"] {
        assert_eq!(j[dist]["count"], 0, "{dist}: {j}");
        assert!(j[dist]["p50"].is_null(), "{dist}: {j}");
    }
}

#[test]
fn stamp_packets_shorter_than_44_bytes_are_refused() {
    for size in ["20", "32", "43"] {
        let run = bench(&["--target", "127.0.0.1:9", "--stamp", "--size", size]);
        assert_eq!(run.status, 2, "--size {size}: {}", run.stderr);
        for w in ["--size", "44", "STAMP"] {
            assert!(
                run.stderr.contains(w),
                "--size {size} should name {w}: {}",
                run.stderr
            );
        }
    }
}

common::both_backends!(
    stamp_against_reflector,
    bench_and_reflector_agree,
    overload_is_accounted_on_both_sides,
);
