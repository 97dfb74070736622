//! udp-reflector: a batched UDP reflector for Linux.
//!
//! # Architecture
//!
//! Imports point one way, down this picture (`.ci/modgraph.py` checks that
//! no two modules import each other, directly or around a loop, and that
//! only main.rs imports cli.rs):
//!
//! ```text
//!  main.rs ─► cli.rs: clap types only, imported by main.rs alone
//!               │
//!               ├─► config.rs: validated ServeConfig (listeners, CPUs, backend choice)
//!               │     │
//!               │     ├─► check.rs: `serve --check`
//!               │     └─► runtime.rs: bind, start workers, signals
//!               │            ├─► report.rs, output.rs, wallclock.rs: what it prints
//!               │            ├─► metrics.rs, hostdrops.rs: /metrics, the host's drops
//!               │            ├─► registry.rs: the ports of this host's reflectors
//!               │            │
//!               │          worker.rs: one pinned, named thread per core
//!               │            │
//!               │          io/: uring.rs | mmsg.rs receive, tx.rs sends one sendmmsg per batch
//!               │            │
//!               │          reflect/ (pure: datagram → reply or reason), policy.rs, stats.rs, live.rs
//!               │
//!               └─► bench/: the load generator
//!                     threads.rs ─► protocol.rs (echo | STAMP) ─► socket.rs
//!                          └─► latency.rs, tracker.rs
//!
//!  at the bottom, used from above only:
//!    sys/      the only unsafe: sockets, cmsgs, mmsg slots, buffer ring, affinity, signals
//!    parse.rs  CPU lists and seconds, for both subcommands
//!    error.rs  what the user sees; maps errnos (EADDRINUSE, ...) to the culprit
//! ```
//!
//! A worker's path: io/uring.rs (multishot recvmsg over a provided buffer
//! ring) or io/mmsg.rs (recvmmsg, when io_uring is refused) hands each
//! datagram to reflect/, queues the reply in io/tx.rs, and counts it in
//! stats.rs's counters, published after every batch.
//!
//! Every datagram a worker receives ends in exactly one counter:
//! `rx_packets == tx_packets + tx_dropped + tx_errors + truncated + no_reply`.
//! Datagrams the kernel dropped before we saw them are `rxq_overflow`.
//!
//! While it runs, the reporting side (runtime.rs's interval lines, and
//! metrics.rs's `/metrics` thread) reads the published counters, collects
//! the latency histograms through live.rs (a flag the worker checks after
//! each flush), and reads the host's own drop counters (hostdrops.rs).
//!
//! Only `sys/` and `io/` touch the OS with `unsafe`; everything else is safe code.
#![deny(unsafe_code)]

// Public: what the binary (main.rs) and the benches use; the rest is
// pub(crate). The tests drive the binary.

pub mod bench;
pub mod check;
pub mod cli;
pub mod config;
pub(crate) mod error;
pub(crate) mod hostdrops;
#[allow(unsafe_code)]
pub mod io;
pub mod live;
pub(crate) mod metrics;
pub(crate) mod output;
pub(crate) mod parse;
pub mod policy;
pub mod reflect;
pub(crate) mod registry;
pub(crate) mod report;
pub mod runtime;
pub mod stats;
#[allow(unsafe_code)]
pub mod sys;
pub(crate) mod wallclock;
pub mod worker;

pub use error::Error;
