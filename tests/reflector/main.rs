//! End-to-end tests of `udp-reflector serve`: the binary is run as a user
//! would run it, driven over loopback (127.0.0.0/8, ::1, a second local
//! address of this host) or, as root, inside a network namespace of the
//! test's own with documentation addresses, and judged by what comes back
//! on the wire and by its final JSON summary.
//!
//! One test binary, a module per theme (echo, addresses, workers, counting,
//! stop, gso, seccomp, errors). Every reflector-behaviour test runs for
//! both backends: `THEME::NAME::uring` and `THEME::NAME::mmsg`. Every load
//! loop is bounded in packets and in time.

#[path = "../common/mod.rs"]
mod common;

mod addresses;
mod counting;
mod echo;
mod errors;
mod gso;
mod seccomp;
mod stop;
mod workers;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use common::{
    assert_summary_consistent, both_backends, counter, payload, recv_gro, recv_within,
    refuse_syscall, run_to_exit, send_while_stopped, serve_command, skip, softnet_dropped, start,
    start_cmd, stop_and_summarise, threads, Need, Outcome, Reflector, Started, REPLY_TIMEOUT,
};

/// How long we listen to be sure that no reply comes.
const SILENCE: Duration = Duration::from_millis(300);
/// The promise: SIGINT/SIGTERM stops the reflector within 1 s. The slack
/// absorbs this test's own polling and a busy CI scheduler, not a design
/// that needs more than a second.
const STOP_BUDGET: Duration = Duration::from_millis(1200);

/// Sends `data` on a connected socket and checks the reply byte for byte and
/// its source; the error says what went wrong.
fn round_trip(sock: &UdpSocket, data: &[u8], expect_from: SocketAddr) -> Result<(), String> {
    let mut buf = vec![0u8; 65536];
    sock.send(data)
        .map_err(|e| format!("send to {expect_from}: {e}"))?;
    let (n, from) = recv_within(sock, &mut buf, REPLY_TIMEOUT).ok_or_else(|| {
        format!(
            "no reply within {REPLY_TIMEOUT:?} to a {}-byte datagram sent from {} to {expect_from} \
             (a connected socket drops replies from any other source address)",
            data.len(),
            sock.local_addr().map_or("?".into(), |a| a.to_string())
        )
    })?;
    if from != expect_from {
        return Err(format!("reply came from {from}, expected {expect_from}"));
    }
    if buf[..n] != *data {
        return Err(format!(
            "reply of {n} bytes differs from the {}-byte request",
            data.len()
        ));
    }
    Ok(())
}

/// A network namespace of this test's own, named after `tag`; `None`, with
/// the reason printed, where this host cannot make one (not root, no `ip`).
fn own_netns(tag: &str) -> Option<common::NetNs> {
    if !common::is_root() {
        skip(Need::Netns, "needs root to create a network namespace");
        return None;
    }
    if let Err(e) = common::ip(&["-V"]) {
        skip(Need::Netns, format!("no usable `ip` command: {e}"));
        return None;
    }
    common::NetNs::create(tag)
        .map_err(|e| {
            skip(
                Need::Netns,
                format!("cannot create a network namespace here: {e}"),
            )
        })
        .ok()
}

/// Checks the error contract; the error describes every breach.
fn user_error(out: &Outcome, culprits: &[&str]) -> Result<(), String> {
    let mut breaches = Vec::new();
    if out.status.code() != Some(2) {
        breaches.push(format!("exit status {:?}, expected 2", out.status.code()));
    }
    let lines = out.stderr_lines();
    if lines.len() != 1 || !lines[0].starts_with("udp-reflector: ") {
        breaches.push(format!(
            "stderr is not one line \"udp-reflector: ...\": {lines:?}"
        ));
    }
    for c in culprits {
        if !out.stderr.contains(c) {
            breaches.push(format!("stderr does not name {c:?}"));
        }
    }
    if out.stderr.contains("panicked") || out.stderr.contains("backtrace") {
        breaches.push("a panic or a backtrace on stderr".into());
    }
    if !out.stdout.is_empty() {
        breaches.push(format!("stdout not empty: {:?}", out.stdout));
    }
    if breaches.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n    full stderr: {:?}",
            breaches.join("; "),
            out.stderr
        ))
    }
}
