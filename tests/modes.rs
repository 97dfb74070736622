//! End to end, per reply mode: the built binary on loopback (port 0, one
//! worker), driven by real clients where they exist (sockperf, tshark's
//! TWAMP-Test dissector) and by std sockets otherwise. Each test runs on the
//! io_uring and the mmsg backend, skipping io_uring with the reason when the
//! kernel refuses it, and skips with a printed reason when a tool is missing.

mod common;

use std::{
    io::Read,
    net::{SocketAddr, UdpSocket},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use udp_reflector::reflect::stamp::{self, decode_reflected, encode_sender, ERROR_ESTIMATE};

/// `serve --workers 1 --json` on these `--listen` values (a `--duration`
/// bounds it should a test hang); `None`, the reason printed, when this
/// backend is refused.
fn start_server(backend: &str, listen: &[&str]) -> Option<common::Reflector> {
    let mut args = vec!["--workers", "1", "--duration", "60"];
    for l in listen {
        args.extend(["--listen", l]);
    }
    common::start(backend, &args)
}

/// Stops the server and returns its summary's totals.
fn stop_server(server: common::Reflector) -> Value {
    common::stop_and_summarise(server)["total"].clone()
}

fn counter(total: &Value, name: &str) -> u64 {
    total[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {total}"))
}

/// Asserts every `no_reply_*` counter is zero except those named.
fn assert_no_other_reasons(total: &Value, except: &[&str]) {
    for (name, v) in total.as_object().unwrap() {
        if name.starts_with("no_reply_") && !except.contains(&name.as_str()) {
            assert_eq!(v.as_u64(), Some(0), "{name} in {total}");
        }
    }
}

/// Where `tool` is on PATH, if anywhere.
fn find_tool(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Runs `cmd` to completion within `limit`, killing it past that; returns
/// its stdout and stderr together, or `None` on timeout.
fn run_bounded(mut cmd: Command, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut r| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    })
    .collect();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().ok()? {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let out: String = readers.into_iter().map(|r| r.join().unwrap()).collect();
    status.map(|st| (st, out))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

// ---------------------------------------------------------------- sockperf

/// The figures sockperf prints for its one server.
#[derive(Debug)]
struct SockperfResult {
    valid_sent: u64,
    valid_received: u64,
    avg_latency_us: f64,
    dropped: u64,
    duplicated: u64,
    out_of_order: u64,
}

/// The number after `key` in `text` (`key` ends in '=' or '= ').
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn parse_sockperf(out: &str) -> Option<SockperfResult> {
    let valid = out.lines().find(|l| l.contains("[Valid Duration]"))?;
    let losses = out.lines().find(|l| l.contains("# dropped messages"))?;
    Some(SockperfResult {
        valid_sent: number_after(valid, "SentMessages=")? as u64,
        valid_received: number_after(valid, "ReceivedMessages=")? as u64,
        avg_latency_us: number_after(out, "avg-latency=")?,
        dropped: number_after(losses, "# dropped messages = ")? as u64,
        duplicated: number_after(losses, "# duplicated messages = ")? as u64,
        out_of_order: number_after(losses, "# out-of-order messages = ")? as u64,
    })
}

/// Runs a sockperf client against a fresh sockperf-mode reflector on
/// `backend`; returns sockperf's figures and the server's totals, or `None`
/// (the reason printed) when sockperf or the backend is missing.
fn sockperf_run(
    test: &str,
    backend: &str,
    client_args: &[&str],
) -> Option<(SockperfResult, Value)> {
    let Some(sockperf) = find_tool("sockperf") else {
        common::skip(
            common::Need::Tools,
            format!("{test}: sockperf is not installed (apt-get install sockperf)"),
        );
        return None;
    };
    let server = start_server(backend, &["127.0.0.1:0,mode=sockperf"])?;
    let port = server.addr().port().to_string();
    let mut cmd = Command::new(&sockperf);
    cmd.args(client_args).args(["-i", "127.0.0.1", "-p", &port]);
    let (status, out) =
        run_bounded(cmd, Duration::from_secs(30)).expect("sockperf finishes within 30 s");
    assert!(
        status.success(),
        "sockperf {client_args:?} failed ({status}):\n{out}"
    );
    let result =
        parse_sockperf(&out).unwrap_or_else(|| panic!("unexpected sockperf output:\n{out}"));
    let total = stop_server(server);
    eprintln!("{test} [{backend}]: {result:?}");
    Some((result, total))
}

fn assert_sockperf_clean(backend: &str, r: &SockperfResult) {
    assert_eq!(
        (r.dropped, r.duplicated, r.out_of_order),
        (0, 0, 0),
        "{backend}: {r:?}"
    );
    assert!(r.valid_received > 0, "{backend}: {r:?}");
    // Loopback: tens of microseconds; 10 ms leaves room for a loaded CI box.
    assert!(
        r.avg_latency_us > 0.0 && r.avg_latency_us < 10_000.0,
        "{backend}: {r:?}"
    );
}

fn sockperf_ping_pong_sees_no_loss_duplicates_or_reordering(backend: &str) {
    let args = ["ping-pong", "-t", "2", "--msg-size", "64"];
    let Some((r, total)) = sockperf_run("sockperf_ping_pong", backend, &args) else {
        return;
    };
    assert_sockperf_clean(backend, &r);
    // Every ping asks for a pong, and each one was answered.
    assert_eq!(r.valid_sent, r.valid_received, "{backend}: {r:?}");
    let rx = counter(&total, "rx_packets");
    assert!(rx >= r.valid_received, "{backend}: {total}");
    assert_eq!(counter(&total, "tx_packets"), rx, "{backend}: {total}");
    assert_eq!(counter(&total, "tx_bytes"), rx * 64, "{backend}: {total}");
    assert_no_other_reasons(&total, &[]);
}

fn sockperf_under_load_sees_no_loss_duplicates_or_reordering(backend: &str) {
    let args = [
        "under-load",
        "-t",
        "2",
        "--msg-size",
        "20",
        "--mps",
        "10000",
    ];
    let Some((r, total)) = sockperf_run("sockperf_under_load", backend, &args) else {
        return;
    };
    assert_sockperf_clean(backend, &r);
    // Only every 100th message asks for a reply; the rest are counted.
    assert!(
        r.valid_received.abs_diff(r.valid_sent / 100) <= 1,
        "{backend}: {r:?}"
    );
    let (rx, tx) = (counter(&total, "rx_packets"), counter(&total, "tx_packets"));
    let no_pong = counter(&total, "no_reply_no_pong");
    assert_eq!(rx, tx + no_pong, "{backend}: {total}");
    assert!(tx > 0 && no_pong >= 90 * tx, "{backend}: {total}");
    assert_no_other_reasons(&total, &["no_reply_no_pong"]);
}

// ----------------------------------------------------------------- discard

fn discard_counts_every_datagram_and_never_replies(backend: &str) {
    const N: u64 = 500;
    const BURST: u64 = 25;
    // An echo listener on the same worker paces the client: its reply
    // after each burst shows the worker is running, so a worker starved
    // of CPU (tests run in parallel) cannot let the discard queue
    // overflow and turn the count into a guess.
    let listen = ["127.0.0.1:0,mode=discard", "127.0.0.1:0,mode=echo"];
    let Some(server) = start_server(backend, &listen) else {
        return;
    };
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(server.addrs[0]).unwrap();
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.connect(server.addrs[1]).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    for i in 0..N {
        client.send(&i.to_be_bytes()).unwrap();
        if i % BURST == BURST - 1 {
            probe.send(b"probe").unwrap();
            assert_eq!(probe.recv(&mut buf).expect("echo probe answered"), 5);
        }
    }
    let probes = N / BURST;
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        client.recv(&mut buf).is_err(),
        "{backend}: discard mode replied"
    );
    let total = stop_server(server);
    assert_eq!(counter(&total, "rxq_overflow"), 0, "{backend}: {total}");
    assert_eq!(
        counter(&total, "rx_packets"),
        N + probes,
        "{backend}: {total}"
    );
    assert_eq!(
        counter(&total, "rx_bytes"),
        N * 8 + probes * 5,
        "{backend}: {total}"
    );
    assert_eq!(
        counter(&total, "no_reply_discarded"),
        N,
        "{backend}: {total}"
    );
    assert_eq!(
        counter(&total, "tx_packets"),
        probes,
        "{backend}: only the echo probes"
    );
    assert_no_other_reasons(&total, &["no_reply_discarded"]);
    // Latency still works: one sample per consumed datagram and per echo.
    assert_eq!(
        total["latency_us"]["samples"].as_u64(),
        Some(N + probes),
        "{backend}: {total}"
    );
}

// ------------------------------------------------------------------- STAMP

/// One STAMP exchange as seen by the client.
struct Exchange {
    request: Vec<u8>,
    reply: Vec<u8>,
    t1_ns: u64,
    t4_ns: u64,
}

/// Sends a session-sender packet of `len` bytes (a 44-byte sender packet,
/// cut short or followed by a counting pattern) and waits for the reply.
fn stamp_exchange(client: &UdpSocket, seq: u32, len: usize) -> Exchange {
    let mut request = vec![0u8; len.max(stamp::SENDER_LEN)];
    for (i, b) in request.iter_mut().enumerate().skip(stamp::SENDER_LEN) {
        *b = i as u8;
    }
    let t1_ns = now_ns();
    encode_sender(seq, t1_ns, &mut request).unwrap();
    request.truncate(len);
    client.send(&request).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = client
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no reply to seq {seq} ({len} bytes): {e}"));
    let t4_ns = now_ns();
    buf.truncate(n);
    Exchange {
        request,
        reply: buf,
        t1_ns,
        t4_ns,
    }
}

/// Checks one reply field by field against its request.
fn check_stamp_reply(ctx: &str, x: &Exchange, seq: u32, ttl: u8) {
    let (req, rep) = (&x.request, &x.reply);
    assert_eq!(rep.len(), req.len().max(44), "{ctx}: size");
    let r = decode_reflected(rep).unwrap();
    assert_eq!(
        r.seq, seq,
        "{ctx}: stateless reflector copies the sequence number"
    );
    assert_eq!(r.sender_seq, seq, "{ctx}");
    assert_eq!(r.t1_ns, x.t1_ns, "{ctx}: sender timestamp copied");
    assert_eq!(r.sender_error_estimate, ERROR_ESTIMATE, "{ctx}");
    assert_eq!(r.error_estimate, ERROR_ESTIMATE, "{ctx}");
    assert_eq!(r.ttl, ttl, "{ctx}: received TTL");
    assert_eq!(r.ssid, 0, "{ctx}");
    assert_eq!(&rep[38..40], &[0, 0], "{ctx}: MBZ");
    assert_eq!(&rep[41..44], &[0, 0, 0], "{ctx}: MBZ");
    assert_eq!(
        &rep[44..],
        &req[req.len().min(44)..],
        "{ctx}: bytes past 44 come back unchanged"
    );
    // One host, one clock: T1 <= T2 (kernel receive) <= T3 <= T4.
    assert!(x.t1_ns <= r.t2_ns, "{ctx}: T1 {} > T2 {}", x.t1_ns, r.t2_ns);
    assert!(r.t2_ns <= r.t3_ns, "{ctx}: T2 {} > T3 {}", r.t2_ns, r.t3_ns);
    assert!(r.t3_ns <= x.t4_ns, "{ctx}: T3 {} > T4 {}", r.t3_ns, x.t4_ns);
    assert!(
        x.t4_ns - x.t1_ns < 5_000_000_000,
        "{ctx}: round trip over 5 s"
    );
}

fn stamp_replies_carry_sequence_timestamps_and_ttl(backend: &str) {
    let Some(server) = start_server(backend, &["127.0.0.1:0,mode=stamp"]) else {
        return;
    };
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(server.addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.set_ttl(64).unwrap();

    // A datagram too short for the sender's header gets no reply: the
    // next reply is the next request's.
    client.send(&[1u8; 10]).unwrap();
    let sizes = [44, 20, 14, 100, 1400];
    for (i, &len) in sizes.iter().enumerate() {
        let seq = 1000 + i as u32;
        let x = stamp_exchange(&client, seq, len);
        check_stamp_reply(&format!("{backend}, {len}-byte request"), &x, seq, 64);
    }
    client.set_ttl(17).unwrap();
    let x = stamp_exchange(&client, 7, 44);
    check_stamp_reply(&format!("{backend}, TTL 17"), &x, 7, 17);

    let total = stop_server(server);
    let answered = sizes.len() as u64 + 1;
    assert_eq!(
        counter(&total, "rx_packets"),
        answered + 1,
        "{backend}: {total}"
    );
    assert_eq!(
        counter(&total, "tx_packets"),
        answered,
        "{backend}: {total}"
    );
    assert_eq!(
        counter(&total, "no_reply_too_short"),
        1,
        "{backend}: {total}"
    );
    assert_no_other_reasons(&total, &["no_reply_too_short"]);
}

fn stamp_over_ipv6_reports_the_hop_limit(backend: &str) {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("stamp_over_ipv6: skipped: no IPv6 loopback");
        return;
    }
    // Without a stable std setter for the unicast hop limit, expect the
    // loopback interface's default.
    let hop_limit: u8 = std::fs::read_to_string("/proc/sys/net/ipv6/conf/lo/hop_limit")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(64);
    let Some(server) = start_server(backend, &["[::1]:0,mode=stamp"]) else {
        return;
    };
    let client = UdpSocket::bind("[::1]:0").unwrap();
    client.connect(server.addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    for (i, len) in [44, 20, 200].into_iter().enumerate() {
        let x = stamp_exchange(&client, i as u32, len);
        check_stamp_reply(
            &format!("{backend}, IPv6, {len} bytes"),
            &x,
            i as u32,
            hop_limit,
        );
    }
    let total = stop_server(server);
    assert_eq!(counter(&total, "tx_packets"), 3, "{backend}: {total}");
}

// ------------------------------------------------- STAMP through tshark

/// A classic pcap file (LINKTYPE_RAW: each record an IPv4 packet) of UDP
/// datagrams `(src, dst, ttl, payload)`.
fn write_pcap(path: &std::path::Path, packets: &[(SocketAddr, SocketAddr, u8, &[u8])]) {
    fn checksum(b: &[u8]) -> u16 {
        let mut s: u32 = b
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    for (i, (src, dst, ttl, payload)) in packets.iter().enumerate() {
        let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
            panic!("IPv4 only")
        };
        let total = 28 + payload.len();
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&(i as u16).to_be_bytes());
        ip.extend_from_slice(&[0x40, 0, *ttl, 17, 0, 0]); // DF, TTL, UDP, checksum
        ip.extend_from_slice(&s.ip().octets());
        ip.extend_from_slice(&d.ip().octets());
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&s.port().to_be_bytes());
        ip.extend_from_slice(&d.port().to_be_bytes());
        ip.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]); // no UDP checksum
        ip.extend_from_slice(payload);
        f.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        f.extend_from_slice(&(i as u32).to_le_bytes());
        f.extend_from_slice(&(total as u32).to_le_bytes());
        f.extend_from_slice(&(total as u32).to_le_bytes());
        f.extend_from_slice(&ip);
    }
    std::fs::write(path, f).unwrap();
}

/// An NTP timestamp as Wireshark prints an absolute time in UTC
/// ("Nov 14, 2023 22:13:20.500123455 UTC"), nanoseconds truncated.
fn wireshark_time(ntp: u64) -> String {
    let secs = (ntp >> 32) as i64 - stamp::NTP_UNIX_OFFSET_S as i64;
    let ns = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    let (days, tod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {day:>2}, {year} {:02}:{:02}:{:02}.{ns:09} UTC",
        MONTHS[month as usize - 1],
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

#[test]
fn wireshark_time_format() {
    assert_eq!(
        wireshark_time(0xe8fe_6f80_8008_173f),
        "Nov 14, 2023 22:13:20.500123455 UTC"
    );
    assert_eq!(
        wireshark_time(0x83aa_7e80_0000_0000),
        "Jan  1, 1970 00:00:00.000000000 UTC"
    );
}

#[test]
fn stamp_replies_decode_with_tsharks_twamp_test_dissector() {
    const TEST: &str = "stamp_tshark";
    let Some(tshark) = find_tool("tshark") else {
        common::skip(
            common::Need::Tools,
            format!("{TEST}: tshark is not installed"),
        );
        return;
    };
    let mut cmd = Command::new(&tshark);
    cmd.args(["-G", "protocols"]);
    let protocols = run_bounded(cmd, Duration::from_secs(30))
        .map(|(_, o)| o)
        .unwrap_or_default();
    if !protocols
        .lines()
        .any(|l| l.split('\t').nth(2) == Some("twamp.test"))
    {
        common::skip(
            common::Need::Tools,
            format!("{TEST}: this tshark has no TWAMP-Test dissector (twamp.test)"),
        );
        return;
    }
    // Wireshark has no STAMP dissector; its TWAMP-Test one (RFC 5357) reads
    // the first 41 bytes of a STAMP reflector packet the same way and shows
    // the rest, STAMP's 3 MBZ bytes onward, as "Packet Padding".
    let Some(server) = start_server("mmsg", &["127.0.0.1:0,mode=stamp"]) else {
        return;
    };
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(server.addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.set_ttl(64).unwrap();
    let sizes = [44usize, 20, 100];
    let exchanges: Vec<Exchange> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| stamp_exchange(&client, 0x0102_0300 + i as u32, len))
        .collect();
    drop(stop_server(server));

    let (c, s) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    let mut packets = Vec::new();
    for x in &exchanges {
        packets.push((c, s, 64, &x.request[..]));
        packets.push((s, c, 64, &x.reply[..]));
    }
    let pcap =
        std::env::temp_dir().join(format!("udp-reflector-stamp-{}.pcap", std::process::id()));
    write_pcap(&pcap, &packets);
    let fields = [
        "twamp.test.seq_number",
        "twamp.test.timestamp",
        "twamp.test.error_estimate",
        "twamp.test.mbz1",
        "twamp.test.receive_timestamp",
        "twamp.test.sender_seq_number",
        "twamp.test.sender_timestamp",
        "twamp.test.sender_error_estimate",
        "twamp.test.mbz2",
        "twamp.test.sender_ttl",
        "twamp.test.padding",
        "_ws.malformed",
    ];
    let mut cmd = Command::new(&tshark);
    cmd.env("TZ", "UTC").arg("-r").arg(&pcap).args([
        "-d",
        &format!("udp.port=={},twamp.test", s.port()),
        "-Y",
        &format!("udp.srcport=={}", s.port()),
        "-T",
        "fields",
        "-E",
        "separator=|",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = run_bounded(cmd, Duration::from_secs(60));
    let _ = std::fs::remove_file(&pcap);
    let (status, out) = out.expect("tshark finishes within 60 s");
    assert!(status.success(), "tshark failed ({status}):\n{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.matches('|').count() == fields.len() - 1)
        .map(|l| l.split('|').collect())
        .collect();
    assert_eq!(rows.len(), exchanges.len(), "tshark output:\n{out}");

    for (x, row) in exchanges.iter().zip(&rows) {
        let rep = &x.reply;
        let ntp_at = |i: usize| u64::from_be_bytes(rep[i..i + 8].try_into().unwrap());
        let seq = u32::from_be_bytes(rep[..4].try_into().unwrap());
        let mut padding = String::from("000000");
        for b in &rep[44..] {
            padding.push_str(&format!("{b:02x}"));
        }
        let want = [
            seq.to_string(),
            wireshark_time(ntp_at(4)),
            ERROR_ESTIMATE.0.to_string(),
            "0".into(),
            wireshark_time(ntp_at(16)),
            seq.to_string(),
            wireshark_time(ntp_at(28)),
            ERROR_ESTIMATE.0.to_string(),
            "0".into(),
            "64".into(),
            padding,
            String::new(),
        ];
        for ((field, got), want) in fields.iter().zip(row).zip(&want) {
            assert_eq!(
                got,
                want,
                "{field} of the reply to a {}-byte request",
                x.request.len()
            );
        }
    }
}

common::both_backends!(
    sockperf_ping_pong_sees_no_loss_duplicates_or_reordering,
    sockperf_under_load_sees_no_loss_duplicates_or_reordering,
    discard_counts_every_datagram_and_never_replies,
    stamp_replies_carry_sequence_timestamps_and_ttl,
    stamp_over_ipv6_reports_the_hop_limit,
);
