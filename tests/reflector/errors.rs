//! Errors a user can meet: exit 2, one line naming the culprit.

use super::*;

fn run_args(args: &[&str]) -> Outcome {
    run_to_exit(&mut serve_command(args), Duration::from_secs(10)).expect("spawning udp-reflector")
}

#[test]
fn port_in_use_is_refused_naming_the_address() {
    let mut failures = Vec::new();
    // Held by an ordinary socket, v4 and v6.
    let mut holders = vec![UdpSocket::bind("127.0.0.1:0").unwrap()];
    holders.extend(UdpSocket::bind("[::1]:0"));
    for h in &holders {
        let addr = h.local_addr().unwrap().to_string();
        let out = run_args(&[
            "--listen",
            &addr,
            "--backend",
            "mmsg",
            "--workers",
            "1",
            "--duration",
            "1",
        ]);
        if let Err(e) = user_error(&out, &[&addr]) {
            failures.push(format!("{addr} held by a plain socket: {e}"));
        }
    }
    // Held by another reflector (an SO_REUSEPORT group must not be joined
    // silently: the two would split the traffic).
    let mut cmd = serve_command([
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "mmsg",
        "--workers",
        "1",
        "--json",
    ]);
    if let Some(first) = start_cmd("mmsg", &mut cmd) {
        let addr = first.addr().to_string();
        let out = run_args(&[
            "--listen",
            &addr,
            "--backend",
            "mmsg",
            "--workers",
            "1",
            "--duration",
            "1",
        ]);
        if let Err(e) = user_error(&out, &[&addr]) {
            failures.push(format!("{addr} held by another reflector: {e}"));
        }
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(first.addr()).unwrap();
        round_trip(&c, b"still mine", first.addr())
            .unwrap_or_else(|e| panic!("first reflector: {e}"));
        stop_and_summarise(first);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn address_not_local_is_refused_naming_it() {
    // Documentation addresses (TEST-NET-1..3): only ever bound, never sent
    // to. Take the first that is really not assigned here.
    let Some(addr) = ["192.0.2.1:7007", "198.51.100.1:7007", "203.0.113.1:7007"].into_iter().find(|a| {
        matches!(UdpSocket::bind(a), Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable)
    }) else {
        skip(Need::Host, "every documentation address tried is bindable here (assigned, or ip_nonlocal_bind)");
        return;
    };
    let out = run_args(&[
        "--listen",
        addr,
        "--backend",
        "mmsg",
        "--workers",
        "1",
        "--duration",
        "1",
    ]);
    if let Err(e) = user_error(&out, &[addr]) {
        panic!("{addr}: {e}");
    }
}

#[test]
fn missing_cpu_is_refused_naming_it() {
    let mut failures = Vec::new();
    for (args, culprit) in [
        (["--cpus", "4096"], "4096"),
        (["--workers", "4096"], "--workers"),
    ] {
        let mut all = vec![
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "mmsg",
            "--duration",
            "1",
        ];
        all.extend(args);
        if let Err(e) = user_error(&run_args(&all), &[culprit]) {
            failures.push(format!("{args:?}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bad_flag_values_are_refused_in_one_line_naming_the_flag() {
    // Each case would otherwise run: `--duration 1` bounds a wrongly
    // accepted one (it then exits 0 and the breach says so).
    let cases: [(&[&str], &str); 10] = [
        (&["--batch", "0"], "--batch"),
        (&["--listen", "nonsense"], "--listen"),
        (&["--backend", "bogus"], "--backend"),
        (&["--max-datagram", "0"], "--max-datagram"),
        (&["--buffers", "3"], "--buffers"),
        (&["--cpus", "x"], "--cpus"),
        (&["--rcvbuf", "lots"], "--rcvbuf"),
        (&["--stats-interval", "soon"], "--stats-interval"),
        (&["--workers", "0"], "--workers"),
        (&["--listen", "127.0.0.1:0,mode=nope"], "--listen"),
    ];
    let outcomes: Vec<(String, Result<(), String>)> = thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(args, flag)| {
                s.spawn(move || {
                    let mut all = vec!["--duration", "1"];
                    if *flag != "--listen" {
                        all.extend(["--listen", "127.0.0.1:0"]);
                    }
                    all.extend(args.iter());
                    (format!("{args:?}"), user_error(&run_args(&all), &[flag]))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failures: Vec<String> = outcomes
        .into_iter()
        .filter_map(|(case, r)| r.err().map(|e| format!("{case}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} bad flag values break the error contract (exit 2, ONE stderr line \
         \"udp-reflector: ...\" naming the flag). Values rejected by clap's own parsers are \
         printed in clap's multi-line format (\"error: ...\", usage tip) without the \
         \"udp-reflector: \" prefix:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
