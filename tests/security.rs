//! The source policy, tried as an attacker would: raw spoofed packets
//! (IP_HDRINCL / IPPROTO_RAW sockets of this test's own) sent inside a
//! private network namespace with documentation addresses, against real
//! reflector processes. Each attack must produce at most one received
//! datagram and no reply, and the refusal counter must name the rule that
//! caught it. Both backends.
//!
//! Without the policy, each of these loops forever (A <-> B, the `[::]` and
//! broadcast self-loops) or relays the attacker's payload into a local
//! service.

mod common;
use common::both_backends;

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
    thread,
    time::Duration,
};

use common::{
    assert_summary_consistent, counter, no_reply_total, recv_within, serve_command, skip, Need,
    NetNs, Reflector,
};
use serde_json::Value;

/// How long an attack is given to loop before the reflectors are stopped.
const LOOP_TIME: Duration = Duration::from_millis(400);
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

both_backends!(
    a_spoofed_datagram_cannot_loop_two_reflectors_on_one_port,
    a_spoofed_datagram_cannot_loop_two_reflectors_of_one_host_on_two_ports,
    an_unspecified_v6_source_cannot_make_a_self_loop,
    a_broadcast_from_0_0_0_0_cannot_make_a_self_loop,
    an_unspecified_source_cannot_relay_into_a_local_service,
    a_multicast_source_gets_no_reply,
    a_request_to_a_broadcast_address_is_answered_only_when_asked,
    allow_lets_an_allowed_source_through_and_counts_a_refused_one,
    the_rate_limit_answers_a_burst_and_counts_the_rest,
    ordinary_unconnected_clients_of_a_host_with_two_reflectors_are_answered,
);

// ---------------------------------------------------------------------------
// Harness: a namespace with documentation addresses, reflectors in it, and
// raw senders.

/// A namespace with `urt0` carrying 198.51.100.1/24, 198.51.100.2/24
/// and 2001:db8::1/64, 2001:db8::2/64; `None` (reason printed) where it
/// cannot be made.
fn lab(tag: &str) -> Option<NetNs> {
    if !common::is_root() {
        skip(
            Need::Netns,
            "needs root for a network namespace and raw sockets",
        );
        return None;
    }
    let ns = match NetNs::create(tag) {
        Ok(ns) => ns,
        Err(e) => {
            skip(
                Need::Netns,
                format!("cannot create a network namespace here: {e}"),
            );
            return None;
        }
    };
    // A dummy interface if this kernel has one, else a veth pair with both
    // ends in the namespace.
    if let Err(dummy) = ns.ip(&["link", "add", "urt0", "type", "dummy"]) {
        let veth = ns
            .ip(&[
                "link", "add", "urt0", "type", "veth", "peer", "name", "urt1",
            ])
            .and_then(|_| ns.ip(&["link", "set", "urt1", "up"]));
        if let Err(veth) = veth {
            skip(
                Need::Netns,
                format!("neither a dummy nor a veth interface can be made: {dummy}; {veth}"),
            );
            return None;
        }
    }
    for a in ["198.51.100.1/24", "198.51.100.2/24"] {
        ns.ip(&["addr", "add", a, "dev", "urt0"]).unwrap();
    }
    for a in ["2001:db8::1/64", "2001:db8::2/64"] {
        ns.ip(&["addr", "add", a, "dev", "urt0", "nodad"]).unwrap();
    }
    ns.ip(&["link", "set", "urt0", "up"]).unwrap();
    Some(ns)
}

/// A registry directory of this test's own (removed on drop), so that the
/// reflectors of one test know each other and no other test's.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "udp-reflector-sec-{tag}-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `serve --backend BACKEND --json --workers 1 ARGS` inside `ns`
/// (or on this host's loopback when `ns` is `None`).
fn start(backend: &str, ns: Option<&NetNs>, args: &[&str]) -> Option<Reflector> {
    let mut cmd = serve_command(
        ["--backend", backend, "--json", "--workers", "1"]
            .iter()
            .chain(args),
    );
    if let Some(ns) = ns {
        ns.apply(&mut cmd).expect("opening the namespace");
    }
    common::start_cmd(backend, &mut cmd)
}

/// SIGTERM, exit 0, a consistent summary; returns its `total`.
fn stop(r: Reflector) -> Value {
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    s["total"].clone()
}

/// Asserts that `total` received exactly `rx` datagrams, sent none, and
/// counted every one of them under `reason` alone.
fn assert_refused(total: &Value, rx: u64, reason: &str) {
    assert_eq!(counter(total, "rx_packets"), rx, "{total}");
    assert_eq!(counter(total, "tx_packets"), 0, "{total}");
    assert_eq!(counter(total, reason), rx, "{total}");
    assert_eq!(no_reply_total(total), rx, "only {reason}: {total}");
}

/// The UDP checksum over the IPv6 pseudo-header (RFC 8200 8.1).
fn udp6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, udp: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += u32::from(w);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(udp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 17]);
    add(udp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    match !(sum as u16) {
        0 => 0xffff,
        c => c,
    }
}

fn udp_header(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&dst_port.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    udp
}

fn raw_socket(family: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int(fd: &OwnedFd, level: i32, name: i32, v: i32) {
    // SAFETY: passes a live c_int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", io::Error::last_os_error());
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends one UDP datagram with a forged source, as one raw IP packet that
/// this test builds whole. IPv4 with an unspecified source goes out by a
/// packet socket on `lo` (an IP_HDRINCL socket would fill in a zero source
/// address); everything else by an IPPROTO_RAW socket (the header is ours).
/// Must run on a thread inside the namespace. `device`: send out of this
/// interface (for the limited broadcast).
fn send_spoofed(src: SocketAddr, dst: SocketAddr, payload: &[u8], device: Option<&str>) {
    let packet;
    let fd;
    let sent = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            let udp = udp_header(s.port(), d.port(), payload);
            let total = (20 + udp.len()) as u16;
            let mut p = vec![0x45, 0];
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
            p.extend_from_slice(&s.ip().octets());
            p.extend_from_slice(&d.ip().octets());
            let c = ipv4_checksum(&p);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&udp);
            packet = p;
            if s.ip().is_unspecified() {
                // SAFETY: socket(2) with constant arguments; checked below.
                let raw = unsafe {
                    libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                        i32::from((libc::ETH_P_IP as u16).to_be()),
                    )
                };
                assert!(raw >= 0, "packet socket: {}", io::Error::last_os_error());
                // SAFETY: a fresh descriptor that nobody else owns.
                fd = unsafe { OwnedFd::from_raw_fd(raw) };
                // SAFETY: sockaddr_ll is plain data; all-zero is valid.
                let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                ll.sll_family = libc::AF_PACKET as u16;
                ll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
                // SAFETY: a NUL-terminated interface name.
                ll.sll_ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as i32;
                ll.sll_halen = 6;
                // SAFETY: a live buffer and a sockaddr_ll of the stated size.
                unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        (&ll as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                }
            } else {
                fd = raw_socket(libc::AF_INET).expect("raw IPv4 socket");
                set_int(&fd, libc::SOL_SOCKET, libc::SO_BROADCAST, 1);
                if let Some(dev) = device {
                    bind_device(&fd, dev);
                }
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(d.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: a live buffer and a sockaddr_in of the stated size.
                unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        (&sin as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
            }
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            fd = raw_socket(libc::AF_INET6).expect("raw IPv6 socket");
            let mut udp = udp_header(s.port(), d.port(), payload);
            let c = udp6_checksum(s.ip(), d.ip(), &udp);
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            let mut p = vec![0x60, 0, 0, 0];
            p.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            p.extend_from_slice(&[17, 64]);
            p.extend_from_slice(&s.ip().octets());
            p.extend_from_slice(&d.ip().octets());
            p.extend_from_slice(&udp);
            packet = p;
            if let Some(dev) = device {
                bind_device(&fd, dev);
            }
            // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = d.ip().octets();
            // SAFETY: a live buffer and a sockaddr_in6 of the stated size.
            unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
        _ => panic!("mixed families: {src} -> {dst}"),
    };
    assert_eq!(
        sent as usize,
        packet.len(),
        "raw send {src} -> {dst}: {}",
        io::Error::last_os_error()
    );
}

fn bind_device(fd: &impl AsRawFd, dev: &str) {
    // SAFETY: passes a live byte string of the stated length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_ptr().cast(),
            dev.len() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "SO_BINDTODEVICE {dev}: {}",
        io::Error::last_os_error()
    );
}

/// Runs `f` on a thread inside `ns`.
fn in_ns<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread().expect("setns into our namespace");
            f()
        })
        .join()
        .expect("thread in the namespace")
    })
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------
// The attacks.

/// A on 198.51.100.1:P, B on 198.51.100.2:P (two hosts' reflectors on the
/// default port): one datagram "from B" to A would ping-pong forever.
fn a_spoofed_datagram_cannot_loop_two_reflectors_on_one_port(backend: &'static str) {
    let Some(ns) = lab(&format!("ab1{backend}")) else {
        return;
    };
    let Some(a) = start(
        backend,
        Some(&ns),
        &["--listen", "198.51.100.1:0", "--registry", "off"],
    ) else {
        return;
    };
    let port = a.addr().port();
    let b = start(
        backend,
        Some(&ns),
        &[
            "--listen",
            &format!("198.51.100.2:{port}"),
            "--registry",
            "off",
        ],
    )
    .expect("B starts when A did");
    let (aa, ba) = (a.addr(), b.addr());
    in_ns(&ns, || {
        send_spoofed(ba, aa, b"ping", None);
        thread::sleep(LOOP_TIME);
    });
    let (ta, tb) = (stop(a), stop(b));
    assert_refused(&ta, 1, "no_reply_source_reflector_port");
    assert_eq!(counter(&tb, "rx_packets"), 0, "B heard nothing: {tb}");
}

/// A on :PA and B on :PB of one host (echo and STAMP side by side): A knows
/// PB from the runtime registry.
fn a_spoofed_datagram_cannot_loop_two_reflectors_of_one_host_on_two_ports(backend: &'static str) {
    let Some(ns) = lab(&format!("ab2{backend}")) else {
        return;
    };
    let reg = TempDir::new(&format!("ab2{backend}"));
    let reg = reg.0.to_str().unwrap().to_string();
    let Some(b) = start(
        backend,
        Some(&ns),
        &[
            "--listen",
            "198.51.100.1:0",
            "--mode",
            "stamp",
            "--registry",
            &reg,
        ],
    ) else {
        return;
    };
    let a = start(
        backend,
        Some(&ns),
        &["--listen", "198.51.100.1:0", "--registry", &reg],
    )
    .expect("A starts when B did");
    // A registered after B; B learns A's port within a second, A knew B's
    // at start. Both directions are tried.
    thread::sleep(Duration::from_millis(1300));
    let mut stamp_request = vec![0u8; 44];
    stamp_request[3] = 1;
    let (aa, ba) = (a.addr(), b.addr());
    in_ns(&ns, || {
        send_spoofed(ba, aa, &stamp_request, None);
        send_spoofed(aa, ba, &stamp_request, None);
        thread::sleep(LOOP_TIME);
    });
    let (ta, tb) = (stop(a), stop(b));
    assert_refused(&ta, 1, "no_reply_source_reflector_port");
    assert_refused(&tb, 1, "no_reply_source_reflector_port");
}

/// `[::]:P` -> `[2001:db8::1]:P`: the reply would go to ::1, to itself.
fn an_unspecified_v6_source_cannot_make_a_self_loop(backend: &'static str) {
    let Some(ns) = lab(&format!("v6{backend}")) else {
        return;
    };
    let Some(r) = start(backend, Some(&ns), &["--listen", "[::]:0"]) else {
        return;
    };
    let port = r.addr().port();
    in_ns(&ns, || {
        send_spoofed(
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
            SocketAddr::new("2001:db8::1".parse().unwrap(), port),
            b"loop",
            None,
        );
        thread::sleep(LOOP_TIME);
    });
    assert_refused(&stop(r), 1, "no_reply_source_unspecified");
}

/// `0.0.0.0:P` -> `255.255.255.255:P` over lo: the reply would come back
/// to itself.
fn a_broadcast_from_0_0_0_0_cannot_make_a_self_loop(backend: &'static str) {
    let Some(ns) = lab(&format!("bc{backend}")) else {
        return;
    };
    let Some(r) = start(backend, Some(&ns), &["--listen", "0.0.0.0:0"]) else {
        return;
    };
    let port = r.addr().port();
    in_ns(&ns, || {
        send_spoofed(
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
            SocketAddr::new(Ipv4Addr::BROADCAST.into(), port),
            b"loop",
            None,
        );
        thread::sleep(LOOP_TIME);
    });
    assert_refused(&stop(r), 1, "no_reply_source_unspecified");
}

/// `0.0.0.0:S` -> `255.255.255.255:P`, `[::]:S` -> `[2001:db8::1]:P`: the
/// reply would be delivered to
/// the local service on S, from this host's own address.
fn an_unspecified_source_cannot_relay_into_a_local_service(backend: &'static str) {
    let Some(ns) = lab(&format!("rl{backend}")) else {
        return;
    };
    let Some(r) = start(
        backend,
        Some(&ns),
        &["--listen", "0.0.0.0:0", "--listen", "[::]:0"],
    ) else {
        return;
    };
    let (p4, p6) = (r.addrs[0].port(), r.addrs[1].port());
    let heard = in_ns(&ns, || {
        let svc4 = UdpSocket::bind("0.0.0.0:0").unwrap();
        let svc6 = UdpSocket::bind("[::]:0").unwrap();
        let (s4, s6) = (
            svc4.local_addr().unwrap().port(),
            svc6.local_addr().unwrap().port(),
        );
        // The kernel accepts a zero IPv4 source only towards the limited
        // broadcast (ip_route_input_slow), as DHCP needs.
        send_spoofed(
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), s4),
            SocketAddr::new(Ipv4Addr::BROADCAST.into(), p4),
            b"relay me",
            None,
        );
        send_spoofed(
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), s6),
            sa(&format!("[2001:db8::1]:{p6}")),
            b"relay me",
            None,
        );
        let mut buf = [0u8; 64];
        [
            recv_within(&svc4, &mut buf, LOOP_TIME).map(|(_, from)| from),
            recv_within(&svc6, &mut buf, Duration::from_millis(50)).map(|(_, from)| from),
        ]
    });
    assert_eq!(
        heard,
        [None, None],
        "the local services got a relayed datagram"
    );
    assert_refused(&stop(r), 2, "no_reply_source_unspecified");
}

/// A multicast source on loopback (no martian check there): a reply would
/// go to the group.
fn a_multicast_source_gets_no_reply(backend: &'static str) {
    let Some(ns) = lab(&format!("mc{backend}")) else {
        return;
    };
    let Some(r) = start(backend, Some(&ns), &["--listen", "0.0.0.0:0"]) else {
        return;
    };
    let port = r.addr().port();
    in_ns(&ns, || {
        send_spoofed(
            sa("224.0.0.1:5000"),
            sa(&format!("198.51.100.1:{port}")),
            b"group",
            None,
        );
        thread::sleep(LOOP_TIME);
    });
    assert_refused(&stop(r), 1, "no_reply_source_multicast");
}

/// A request to 198.51.100.255 (the subnet's broadcast) or
/// 255.255.255.255 is refused by default (fraggle amplification) and
/// answered with `--answer-broadcast`.
fn a_request_to_a_broadcast_address_is_answered_only_when_asked(backend: &'static str) {
    let Some(ns) = lab(&format!("bd{backend}")) else {
        return;
    };
    for open in [false, true] {
        let mut args = vec!["--listen", "0.0.0.0:0"];
        if open {
            args.push("--answer-broadcast");
        }
        let Some(r) = start(backend, Some(&ns), &args) else {
            return;
        };
        let port = r.addr().port();
        let replies = in_ns(&ns, || {
            let c = UdpSocket::bind("198.51.100.2:0").unwrap();
            c.set_broadcast(true).unwrap();
            let mut got = 0;
            for dst in ["198.51.100.255", "255.255.255.255"] {
                let dst = SocketAddr::new(dst.parse::<IpAddr>().unwrap(), port);
                if dst.ip() == IpAddr::V4(Ipv4Addr::BROADCAST) {
                    // The limited broadcast leaves by the interface we name.
                    bind_device(&c, "urt0");
                }
                c.send_to(b"who is there", dst).unwrap();
                let mut buf = [0u8; 64];
                let t = if open { REPLY_TIMEOUT } else { LOOP_TIME };
                if recv_within(&c, &mut buf, t).is_some() {
                    got += 1;
                }
            }
            got
        });
        let total = stop(r);
        if open {
            assert_eq!(replies, 2, "--answer-broadcast: {total}");
            assert_eq!(counter(&total, "tx_packets"), 2, "{total}");
        } else {
            assert_eq!(replies, 0, "{total}");
            assert_refused(&total, 2, "no_reply_to_broadcast");
        }
    }
}

/// `--allow 127.0.0.2 --allow ::1/128` on loopback: 127.0.0.2 and ::1 are
/// answered, 127.0.0.3 is counted as not allowed.
fn allow_lets_an_allowed_source_through_and_counts_a_refused_one(backend: &'static str) {
    let Some(r) = start(
        backend,
        None,
        &[
            "--listen",
            "0.0.0.0:0",
            "--listen",
            "[::1]:0",
            "--allow",
            "127.0.0.2",
            "--allow",
            "::1/128",
        ],
    ) else {
        return;
    };
    let (p4, p6) = (r.addrs[0].port(), r.addrs[1].port());
    let mut buf = [0u8; 64];
    let ask = |from: &str, to: SocketAddr, wait: Duration, buf: &mut [u8]| {
        let c = UdpSocket::bind(from).unwrap();
        c.send_to(b"may I", to).unwrap();
        recv_within(&c, buf, wait).is_some()
    };
    let v4 = sa(&format!("127.0.0.1:{p4}"));
    assert!(
        ask("127.0.0.2:0", v4, REPLY_TIMEOUT, &mut buf),
        "allowed v4"
    );
    assert!(
        ask(
            "[::1]:0",
            sa(&format!("[::1]:{p6}")),
            REPLY_TIMEOUT,
            &mut buf
        ),
        "allowed v6"
    );
    assert!(!ask("127.0.0.3:0", v4, LOOP_TIME, &mut buf), "refused v4");
    let total = stop(r);
    assert_eq!(counter(&total, "tx_packets"), 2, "{total}");
    assert_eq!(counter(&total, "no_reply_not_allowed"), 1, "{total}");
    assert_eq!(no_reply_total(&total), 1, "{total}");
}

/// `--max-pps-per-source 5`: a burst of 20 from one address gets its 5
/// (at most one more refilled meanwhile), the rest are counted.
fn the_rate_limit_answers_a_burst_and_counts_the_rest(backend: &'static str) {
    let Some(r) = start(
        backend,
        None,
        &["--listen", "127.0.0.1:0", "--max-pps-per-source", "5"],
    ) else {
        return;
    };
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(r.addr()).unwrap();
    for i in 0..20u8 {
        c.send(&[i; 16]).unwrap();
    }
    let mut buf = [0u8; 64];
    let mut replies = 0;
    while recv_within(&c, &mut buf, LOOP_TIME).is_some() {
        replies += 1;
    }
    let total = stop(r);
    assert!((5..=6).contains(&replies), "{replies} replies: {total}");
    assert_eq!(counter(&total, "rx_packets"), 20, "{total}");
    assert_eq!(counter(&total, "tx_packets"), replies, "{total}");
    assert_eq!(
        counter(&total, "no_reply_rate_limited"),
        20 - replies,
        "{total}"
    );
}

/// The registry keeps ordinary clients working: two reflectors of one host
/// (sharing a registry), and unconnected clients on ephemeral ports, v4 and
/// v6, get every reply.
fn ordinary_unconnected_clients_of_a_host_with_two_reflectors_are_answered(backend: &'static str) {
    let reg = TempDir::new(&format!("ord{backend}"));
    let reg = reg.0.to_str().unwrap().to_string();
    let Some(a) = start(
        backend,
        None,
        &[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "[::1]:0",
            "--registry",
            &reg,
        ],
    ) else {
        return;
    };
    let b = start(
        backend,
        None,
        &["--listen", "127.0.0.1:0", "--registry", &reg],
    )
    .expect("B starts when A did");
    thread::sleep(Duration::from_millis(1100));
    let mut buf = [0u8; 64];
    for (i, to) in [a.addrs[0], a.addrs[1], b.addr()].into_iter().enumerate() {
        let c = UdpSocket::bind(if to.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        })
        .unwrap();
        for k in 0..5u8 {
            c.send_to(&[i as u8, k], to).unwrap();
            let (n, from) = recv_within(&c, &mut buf, REPLY_TIMEOUT)
                .unwrap_or_else(|| panic!("no reply from {to}"));
            assert_eq!((&buf[..n], from), (&[i as u8, k][..], to));
        }
    }
    for t in [stop(a), stop(b)] {
        assert_eq!(no_reply_total(&t), 0, "{t}");
    }
}
