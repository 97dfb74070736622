//! `bench --stamp`: bench as a STAMP Session-Sender.

use super::*;

common::both_backends!(stamp_against_reflector,);

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
