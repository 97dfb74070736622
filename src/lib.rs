//! udp-reflector: a batched UDP reflector for Linux.
//!
//! # Architecture
//!
//! ```text
//!   main.rs ── cli.rs (flags → Config) ── runtime.rs (spawn, signals, report)
//!                                              │
//!                    ┌─────────────────────────┼──────────────────────────┐
//!               worker 0 (pinned cpu a)   worker 1 (pinned cpu b)   ...
//!               own SO_REUSEPORT sockets, own ring, own buffers, own stats
//!                    │
//!      io/uring.rs: multishot recvmsg over a provided buffer ring ─┐
//!      io/mmsg.rs:  recvmmsg (fallback when io_uring is refused)  ─┤
//!                                                                  ▼
//!      reflect.rs (pure: datagram → reply or reason) → io/tx.rs: one sendmmsg per batch
//!                                                                  │
//!      stats.rs: counters published per batch, latency histogram ◄─┘
//! ```
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
pub(crate) mod live;
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
