//! How bench offers load: the open-loop rate, GSO trains, and a SIGINT
//! that stops sending and still reports everything.

use super::*;

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
    let mut p = common::Proc::spawn(&mut common::bench_command(&args)).expect("spawning bench");
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
