//! Each counter against a server that misbehaves in one known way: drops,
//! duplicates, late and swapped echoes, damaged and foreign datagrams,
//! warmup, IPv6.

use super::*;

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
