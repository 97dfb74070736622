//! Replies leave from the address the request was sent to, on wildcard
//! listeners, over loopback and in a network namespace of the test's own.

use super::*;

both_backends!(
    replies_leave_from_the_v4_address_asked,
    replies_leave_from_the_v6_address_asked,
    replies_leave_from_the_address_asked_in_a_netns,
);

fn replies_leave_from_the_v4_address_asked(backend: &'static str) {
    let Some(r) = start(backend, &["--listen", "0.0.0.0:0", "--workers", "1"]) else {
        return;
    };
    let port = r.addr().port();
    let dsts = [
        [127, 0, 0, 1],
        [127, 0, 0, 2],
        [127, 0, 0, 53],
        [127, 1, 2, 3],
    ];
    let mut failures = Vec::new();
    for (i, d) in dsts.iter().enumerate() {
        let dst = SocketAddr::from((Ipv4Addr::from(*d), port));
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(dst).unwrap();
        if let Err(e) = round_trip(&c, &payload(100, i as u64), dst) {
            failures.push(e);
        }
    }
    let s = stop_and_summarise(r);
    assert!(
        failures.is_empty(),
        "[{backend}] replies not from the address asked: {failures:#?}"
    );
    assert_eq!(counter(&s["total"], "tx_packets"), dsts.len() as u64, "{s}");
    assert_eq!(counter(&s["total"], "tx_errors"), 0, "{s}");
}

/// A global (non-link-local) IPv6 address of this host other than ::1 that
/// the kernel delivers locally (`ip -6 route get` says `local`): datagrams
/// to it never leave the host.
fn second_local_v6() -> Result<Ipv6Addr, String> {
    let out = common::ip(&["-6", "-o", "addr", "show", "scope", "global"])?;
    for line in out.lines() {
        if line.contains("tentative") || line.contains("dadfailed") || line.contains("deprecated") {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(cidr) = words.find(|w| *w == "inet6").and_then(|_| words.next()) else {
            continue;
        };
        let Ok(addr) = cidr.split('/').next().unwrap_or("").parse::<Ipv6Addr>() else {
            continue;
        };
        // Outside namespaces the suite sends only to addresses set aside for
        // tests: a second local address must be in 2001:db8::/32.
        if addr.is_loopback() || addr.segments()[..2] != [0x2001, 0x0db8] {
            continue;
        }
        let route = common::ip(&["-6", "route", "get", &addr.to_string()])?;
        if route.trim_start().starts_with("local ") {
            return Ok(addr);
        }
    }
    Err("this host has no second local IPv6 address in 2001:db8::/32 besides ::1 (`ip -6 addr`); the netns test covers two IPv6 addresses".into())
}

fn replies_leave_from_the_v6_address_asked(backend: &'static str) {
    if UdpSocket::bind("[::1]:0").is_err() {
        skip(Need::Ipv6, "IPv6 loopback (::1) is not available");
        return;
    }
    let Some(r) = start(backend, &["--listen", "[::]:0", "--workers", "1"]) else {
        return;
    };
    let port = r.addr().port();
    let mut failures = Vec::new();
    let mut sent = 0u64;
    let mut skipped = None;
    let lo = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let c = UdpSocket::bind("[::1]:0").unwrap();
    c.connect(lo).unwrap();
    sent += 1;
    if let Err(e) = round_trip(&c, &payload(200, 6), lo) {
        failures.push(e);
    }
    match second_local_v6() {
        Ok(addr) => {
            let dst = SocketAddr::from((addr, port));
            let c = UdpSocket::bind("[::1]:0").unwrap();
            c.connect(dst).unwrap();
            sent += 1;
            if let Err(e) = round_trip(&c, &payload(300, 7), dst) {
                failures.push(e);
            }
        }
        Err(reason) => skipped = Some(reason),
    }
    let s = stop_and_summarise(r);
    assert!(
        failures.is_empty(),
        "[{backend}] IPv6 replies not from the address asked: {failures:#?}"
    );
    assert_eq!(counter(&s["total"], "tx_packets"), sent, "{s}");
    if let Some(reason) = skipped {
        skip(Need::Host, format!("checked ::1 only; {reason}"));
    }
}

fn replies_leave_from_the_address_asked_in_a_netns(backend: &'static str) {
    let Some(ns) = own_netns(backend) else {
        return;
    };
    // One interface carrying two addresses of each family: a dummy if this
    // kernel has it, else a veth pair with both ends in the namespace.
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
            return;
        }
    }
    for a in ["198.51.100.1/24", "198.51.100.2/24"] {
        ns.ip(&["addr", "add", a, "dev", "urt0"]).unwrap();
    }
    for a in ["2001:db8::1/64", "2001:db8::2/64"] {
        ns.ip(&["addr", "add", a, "dev", "urt0", "nodad"]).unwrap();
    }
    ns.ip(&["link", "set", "urt0", "up"]).unwrap();

    let mut cmd = serve_command([
        "--backend",
        backend,
        "--json",
        "--listen",
        "0.0.0.0:0",
        "--listen",
        "[::]:0",
        "--workers",
        "1",
    ]);
    ns.apply(&mut cmd).expect("opening the namespace");
    let Some(r) = start_cmd(backend, &mut cmd) else {
        return;
    };
    let (p4, p6) = (r.addrs[0].port(), r.addrs[1].port());

    // The client runs on a thread of its own moved into the namespace.
    let pairs: Vec<(IpAddr, IpAddr, u16)> = vec![
        (
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
            p4,
        ),
        (
            "198.51.100.2".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            p4,
        ),
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            p6,
        ),
        (
            "2001:db8::2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            p6,
        ),
    ];
    let failures: Vec<String> = thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread().expect("setns into our namespace");
            let mut failures = Vec::new();
            for (i, &(src, dst, port)) in pairs.iter().enumerate() {
                let dst = SocketAddr::new(dst, port);
                let c = UdpSocket::bind(SocketAddr::new(src, 0)).unwrap();
                c.connect(dst).unwrap();
                if let Err(e) = round_trip(&c, &payload(64 + i, i as u64), dst) {
                    failures.push(e);
                }
            }
            failures
        })
        .join()
        .expect("client thread")
    });
    let s = stop_and_summarise(r);
    assert!(
        failures.is_empty(),
        "[{backend}] in netns {}: {failures:#?}",
        ns.name
    );
    assert_eq!(
        counter(&s["total"], "tx_packets"),
        pairs.len() as u64,
        "{s}"
    );
    assert_eq!(counter(&s["total"], "tx_errors"), 0, "{s}");
}
