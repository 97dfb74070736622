//! Observing a running reflector: `/metrics` scraped by a real Prometheus
//! server, interval lines with latency and wall-clock time, and the host's
//! own drop counters (in a private network namespace).

mod common;
use common::both_backends;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::*;
use serde_json::Value;

both_backends!(
    prometheus_scrapes_what_the_summary_says,
    human_interval_lines_carry_time_and_latency,
    interval_lines_carry_latency_and_time_and_add_up_to_the_summary,
    host_drops_of_another_socket_show_in_host_counters_not_ours,
);

const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts `serve --backend BACKEND --json ARGS` (optionally inside `ns`).
/// `None` (reason printed) when the uring backend is refused here.
fn start(backend: &str, args: &[&str], ns: Option<&NetNs>) -> Option<Reflector> {
    let mut cmd = serve_command(["--backend", backend, "--json"].iter().chain(args));
    if let Some(ns) = ns {
        ns.apply(&mut cmd).expect("entering the test's netns");
    }
    common::start_cmd(backend, &mut cmd)
}

fn stop(r: Reflector) -> Value {
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "exit after SIGTERM: {out:#?}");
    assert!(out.stderr_lines().is_empty(), "stderr: {}", out.stderr);
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    s
}

/// Echoes `n` datagrams through `target`, one at a time, each reply checked.
fn echo(target: SocketAddr, n: usize) {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(target).unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..n {
        let p = payload(64 + i % 500, i as u64);
        c.send(&p).unwrap();
        let (len, _) = recv_within(&c, &mut buf, REPLY_TIMEOUT)
            .unwrap_or_else(|| panic!("no reply to datagram {i} of {n} sent to {target}"));
        assert_eq!(buf[..len], p[..]);
    }
}

/// `n` sockperf warm-up messages: received, deliberately not answered.
fn sockperf_warmups(target: SocketAddr, n: usize) {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..n as u64 {
        let mut m = [0u8; 14];
        m[..8].copy_from_slice(&seq.to_be_bytes());
        m[8..10].copy_from_slice(&0x0005u16.to_be_bytes()); // CLIENT | WARMUP
        m[10..14].copy_from_slice(&14u32.to_be_bytes());
        c.send_to(&m, target).unwrap();
    }
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    Ok((code, body.to_string()))
}

/// Percent-encodes a query string value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server of our own: temp config and data, a free port,
/// scraping `target` every second; killed by its pid on drop.
struct Prometheus {
    proc: Proc,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "urt-prometheus-{}-{}",
            std::process::id(),
            target.port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: reflector\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let proc = Proc::spawn(&mut cmd).expect("spawning prometheus");
        let p = Prometheus { proc, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(http_get(p.addr, "/-/ready"), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready on {addr} in 20 s"
            );
            thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// An instant query: `{labels}` (without `__name__`, plus `name`) → value.
    fn query(&self, expr: &str) -> BTreeMap<String, f64> {
        let (code, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", urlencode(expr)),
        )
        .unwrap_or_else(|e| panic!("querying prometheus: {e}"));
        assert_eq!(code, 200, "query {expr}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("no result in {body}"))
            .iter()
            .map(|r| {
                let m = r["metric"].as_object().unwrap();
                let labels: Vec<String> = m
                    .iter()
                    .filter(|(k, _)| !["__name__", "job", "instance"].contains(&k.as_str()))
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                    .collect();
                let key = format!(
                    "{}{{{}}}",
                    m["__name__"].as_str().unwrap(),
                    labels.join(",")
                );
                let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (key, value)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.proc.signal(libc::SIGKILL);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `{"event":"metrics"}` line that follows the listening line.
fn metrics_addr(r: &mut Reflector) -> SocketAddr {
    let line = r
        .proc
        .next_line(START_TIMEOUT)
        .expect("a metrics line after the listening line");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "metrics", "{line}");
    v["addr"].as_str().unwrap().parse().unwrap()
}

/// Prometheus scrapes `/metrics` once a second; after the traffic, what it
/// stored equals the reflector's own summary: every counter in total and per
/// worker, the no-reply reasons, the latency histogram's count (and its sum
/// against the mean), build info. `promtool check metrics` finds no problem.
fn prometheus_scrapes_what_the_summary_says(backend: &'static str) {
    if !have("prometheus") || !have("promtool") {
        skip(
            Need::Tools,
            "prometheus and promtool are needed (Debian package prometheus)",
        );
        return;
    }
    let Some(mut r) = start(
        backend,
        &[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0,mode=sockperf",
            "--metrics",
            "127.0.0.1:0",
        ],
        None,
    ) else {
        return;
    };
    let maddr = metrics_addr(&mut r);
    let prom = Prometheus::start(maddr);
    const ECHOES: usize = 300;
    const WARMUPS: usize = 20;
    echo(r.addrs[0], ECHOES);
    sockperf_warmups(r.addrs[1], WARMUPS);

    // Wait until a scrape after the traffic holds every datagram and every
    // latency sample.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = prom.query("udp_reflector_rx_packets_total");
        let lat = prom.query("udp_reflector_latency_seconds_count");
        let rx = got.get("udp_reflector_rx_packets_total{}").copied();
        let n = lat.get("udp_reflector_latency_seconds_count{}").copied();
        if rx == Some((ECHOES + WARMUPS) as f64) && n == Some(ECHOES as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "[{backend}] prometheus never saw all traffic: rx {rx:?}, latency count {n:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let scraped = prom.query("{__name__=~\"udp_reflector_.+\"}");

    let (code, page) = http_get(maddr, "/metrics").unwrap();
    assert_eq!(code, 200);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(http_get(maddr, "/nothing-here").unwrap().0, 404);

    let s = stop(r);
    let get = |key: &str| -> f64 {
        *scraped
            .get(key)
            .unwrap_or_else(|| panic!("[{backend}] {key} not scraped; have {scraped:#?}"))
    };
    let total = &s["total"];
    let names: Vec<&String> = total
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "latency_us")
        .collect();
    for name in &names {
        let (metric, worker_metric, extra) = match name.strip_prefix("no_reply_") {
            Some(reason) => (
                "udp_reflector_no_reply_total".to_string(),
                "udp_reflector_worker_no_reply_total".to_string(),
                format!("reason={reason}"),
            ),
            None => (
                format!("udp_reflector_{name}_total"),
                format!("udp_reflector_worker_{name}_total"),
                String::new(),
            ),
        };
        assert_eq!(
            get(&format!("{metric}{{{extra}}}")),
            counter(total, name) as f64,
            "[{backend}] {name}"
        );
        for w in s["workers"].as_array().unwrap() {
            let mut labels = vec![
                format!("cpu={}", w["cpu"]),
                format!("worker={}", w["worker"]),
            ];
            if !extra.is_empty() {
                labels.push(extra.clone());
            }
            labels.sort();
            assert_eq!(
                get(&format!("{worker_metric}{{{}}}", labels.join(","))),
                counter(w, name) as f64,
                "[{backend}] {name} of worker {}",
                w["worker"]
            );
        }
    }
    assert!(
        counter(total, "no_reply_warmup") == WARMUPS as u64,
        "{total}"
    );
    let lat = &total["latency_us"];
    let samples = lat["samples"].as_u64().unwrap();
    assert_eq!(samples, ECHOES as u64);
    assert_eq!(get("udp_reflector_latency_seconds_count{}"), samples as f64);
    assert_eq!(
        get("udp_reflector_latency_seconds_bucket{le=+Inf}"),
        samples as f64
    );
    let sum = get("udp_reflector_latency_seconds_sum{}");
    let expect = lat["mean"].as_f64().unwrap() * samples as f64 / 1e6;
    assert!(
        (sum - expect).abs() <= expect * 0.01,
        "[{backend}] latency _sum {sum} s, summary mean x count {expect} s"
    );
    // Cumulative buckets never shrink, and the median lies where the summary says.
    let mut buckets: Vec<(f64, f64)> = scraped
        .iter()
        .filter_map(|(k, v)| {
            let le = k
                .strip_prefix("udp_reflector_latency_seconds_bucket{le=")?
                .strip_suffix('}')?;
            Some((le.parse::<f64>().ok()?, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    let p50_s = lat["p50"].as_f64().unwrap() / 1e6;
    let half = samples as f64 / 2.0;
    let first_over_half = buckets.iter().find(|(_, c)| *c >= half).unwrap().0;
    assert!(
        first_over_half >= p50_s,
        "p50 {p50_s} s, buckets {buckets:?}"
    );
    for w in s["workers"].as_array().unwrap() {
        let key = format!(
            "udp_reflector_worker_latency_seconds_count{{cpu={},worker={}}}",
            w["cpu"], w["worker"]
        );
        assert_eq!(
            get(&key),
            w["latency_us"]["samples"].as_u64().unwrap() as f64
        );
    }
    let info = format!(
        "udp_reflector_build_info{{backend={backend},version={}}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(get(&info), 1.0);
    let start = get("udp_reflector_start_time_seconds{}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start > now - 120.0 && start <= now,
        "start time {start}, now {now}"
    );
    for host in ["udp_rcvbuf_errors", "udp6_in_errors", "softnet_dropped"] {
        get(&format!("udp_reflector_host_{host}_total{{}}"));
    }
}

/// Every interval line carries that interval's latency and a wall-clock
/// time (RFC 3339 and Unix seconds); the intervals' counters and latency
/// samples add up to the summary's.
fn interval_lines_carry_latency_and_time_and_add_up_to_the_summary(backend: &'static str) {
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let Some(r) = start(
        backend,
        &["--listen", "127.0.0.1:0", "--stats-interval", "0.2"],
        None,
    ) else {
        return;
    };
    for _ in 0..3 {
        echo(r.addr(), 100);
        thread::sleep(Duration::from_millis(250));
    }
    // Quiet intervals: the last samples are handed over (a collection
    // waits at most 100 ms for a worker; a loaded machine may need two).
    thread::sleep(Duration::from_millis(1000));
    let out = r.stop();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let s = out.expect_summary();
    let intervals = out.events("interval");
    assert!(intervals.len() >= 5, "[{backend}] {intervals:#?}");

    let mut last_unix = before;
    let mut samples = 0;
    let mut moved = 0;
    for i in &intervals {
        let unix = i["unix_s"].as_f64().unwrap();
        assert!(
            unix >= last_unix && unix <= after,
            "[{backend}] unix_s {unix}: {i}"
        );
        last_unix = unix;
        let time = i["time"].as_str().unwrap();
        let secs = unix as u64;
        let date = Command::new("date")
            .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S"])
            .output()
            .unwrap();
        assert!(
            time.starts_with(String::from_utf8_lossy(&date.stdout).trim()) && time.ends_with('Z'),
            "[{backend}] time {time} vs unix_s {unix}"
        );
        let l = &i["latency_us"];
        let n = l["samples"].as_u64().unwrap();
        samples += n;
        if n > 0 {
            moved += 1;
            let (p50, p99, max) = (
                l["p50"].as_f64().unwrap(),
                l["p99"].as_f64().unwrap(),
                l["max"].as_f64().unwrap(),
            );
            assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "[{backend}] {l}");
            assert!(
                max <= s["total"]["latency_us"]["max"].as_f64().unwrap(),
                "[{backend}] {l} vs {}",
                s["total"]["latency_us"]
            );
        }
    }
    assert!(
        moved >= 2,
        "[{backend}] latency in fewer than 2 intervals: {intervals:#?}"
    );
    assert_eq!(
        samples,
        s["total"]["latency_us"]["samples"].as_u64().unwrap()
    );
    assert_eq!(samples, 300);
    for (name, total) in s["total"].as_object().unwrap() {
        if let Some(total) = total.as_u64() {
            let sum: u64 = intervals.iter().map(|i| counter(i, name)).sum();
            assert_eq!(sum, total, "[{backend}] {name}: intervals add up to {sum}");
        }
    }
}

/// In a namespace of its own, an idle process's socket with the smallest
/// receive buffer overflows: the host `udp_rcvbuf_errors` delta is exactly
/// that socket's drops, while the reflector's own counters show none; the
/// interval lines' host deltas add up to the summary's.
fn host_drops_of_another_socket_show_in_host_counters_not_ours(backend: &'static str) {
    if !is_root() {
        skip(Need::Netns, "needs root for a network namespace");
        return;
    }
    if !have("python3") {
        skip(Need::Tools, "needs python3 for the idle receiver");
        return;
    }
    let ns = match NetNs::create(&format!("hd{}", &backend[..1])) {
        Ok(ns) => ns,
        Err(e) => {
            skip(
                Need::Netns,
                format!("cannot create a network namespace: {e}"),
            );
            return;
        }
    };
    let Some(r) = start(
        backend,
        &[
            "--listen",
            "127.0.0.1:0",
            "--stats-interval",
            "0.2",
            "--interface",
            "lo",
        ],
        Some(&ns),
    ) else {
        return;
    };
    // The idle process: binds, prints its port, reads nothing until told,
    // then prints its socket's drop count (SO_MEMINFO, SK_MEMINFO_DROPS).
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
        s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,1)\n\
        s.bind(('127.0.0.1',0))\n\
        print(s.getsockname()[1],flush=True)\n\
        sys.stdin.readline()\n\
        m=s.getsockopt(socket.SOL_SOCKET,55,36)\n\
        print(int.from_bytes(m[32:36],'little'),flush=True)\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    ns.apply(&mut cmd).unwrap();
    let mut idle = cmd.spawn().unwrap();
    let mut idle_out = std::io::BufReader::new(idle.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut idle_out, &mut line).unwrap();
    let idle_port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("idle said {line:?}"));

    // From a thread inside the namespace: traffic to the reflector, then a
    // burst at the idle socket.
    let target = r.addr();
    thread::scope(|scope| {
        scope.spawn(|| {
            ns.enter_current_thread().unwrap();
            echo(target, 100);
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            for i in 0..200u64 {
                c.send_to(&payload(1000, i), ("127.0.0.1", idle_port))
                    .unwrap();
            }
        });
    });
    thread::sleep(Duration::from_millis(600));
    idle.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut idle_out, &mut line).unwrap();
    let idle_drops: u64 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("idle said {line:?}"));
    let _ = idle.kill();
    let _ = idle.wait();
    assert!(
        idle_drops > 0,
        "200 datagrams into a minimal buffer, no drop"
    );

    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    let host = &s["host"];
    assert_eq!(
        counter(host, "udp_rcvbuf_errors"),
        idle_drops,
        "[{backend}] {host}"
    );
    assert_eq!(
        counter(host, "udp_in_errors"),
        idle_drops,
        "[{backend}] {host}"
    );
    assert_eq!(counter(&s["total"], "rxq_overflow"), 0, "[{backend}] {s}");
    assert_eq!(counter(&s["total"], "tx_packets"), 100, "[{backend}] {s}");
    for nic in [
        "nic_rx_dropped",
        "nic_tx_dropped",
        "nic_rx_errors",
        "nic_tx_errors",
    ] {
        assert!(
            host.get(nic).is_some(),
            "[{backend}] --interface lo: no {nic} in {host}"
        );
    }
    let intervals = out.events("interval");
    for (name, total) in host.as_object().unwrap() {
        let sum: u64 = intervals.iter().map(|i| counter(&i["host"], name)).sum();
        assert_eq!(sum, total.as_u64().unwrap(), "[{backend}] host {name}");
    }
}

/// Without --json, an interval line reads `[  t s] TIME rx ... ; latency_us
/// p50=.. p99=.. max=..` once replies were sent, `latency_us -` before.
fn human_interval_lines_carry_time_and_latency(backend: &'static str) {
    let mut cmd = serve_command([
        "--backend",
        backend,
        "--listen",
        "127.0.0.1:0",
        "--stats-interval",
        "0.2",
        "--workers",
        "1",
    ]);
    let mut p = Proc::spawn(&mut cmd).expect("spawning udp-reflector");
    let first = p.next_line(START_TIMEOUT).expect("a listening line");
    if backend == "uring" && !first.contains("backend uring") {
        let out = p.signal_and_wait(libc::SIGTERM, Duration::from_secs(5));
        skip(
            Need::Uring,
            format!("io_uring is refused here: {}", out.stderr.trim()),
        );
        return;
    }
    let addr: SocketAddr = first
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    echo(addr, 50);
    thread::sleep(Duration::from_millis(1000));
    let out = p.signal_and_wait(libc::SIGTERM, Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let lines: Vec<&String> = out.stdout.iter().filter(|l| l.starts_with('[')).collect();
    assert!(lines.len() >= 3, "[{backend}] {:#?}", out.stdout);
    for l in &lines {
        let time = l.split_whitespace().nth(2).unwrap_or("");
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "[{backend}] no RFC 3339 time in {l:?}"
        );
        assert!(l.contains("latency_us "), "[{backend}] {l:?}");
    }
    // The latency of the interval in which the worker handed it over: on a
    // loaded machine that may be the interval after its replies.
    let with = lines
        .iter()
        .find(|l| l.contains("latency_us p50="))
        .unwrap_or_else(|| panic!("[{backend}] no line with latency: {lines:#?}"));
    assert!(
        with.contains(" p99=") && with.contains(" max="),
        "[{backend}] {with:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("latency_us -")),
        "[{backend}] a quiet interval says so: {lines:#?}"
    );
}

/// A --metrics address that cannot be bound, or an --interface that does
/// not exist, is refused at start naming the flag; nothing is served.
#[test]
fn bad_metrics_address_or_interface_is_refused_naming_the_flag() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let mut cmd = serve_command([
        "--backend",
        "mmsg",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        addr.as_str(),
    ]);
    let out = run_to_exit(&mut cmd, Duration::from_secs(10)).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("--metrics") && out.stderr.contains(&addr),
        "{}",
        out.stderr
    );
    let mut cmd = serve_command(["--listen", "127.0.0.1:0", "--interface", "no-such-if0"]);
    let out = run_to_exit(&mut cmd, Duration::from_secs(10)).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("--interface") && out.stderr.contains("no-such-if0"),
        "{}",
        out.stderr
    );
}
