//! The seam between bench's threads and what is on the wire: how a probe is
//! written, how a reply is judged, and what a reply yields.
//!
//! Two protocols: bench's own header (`header.rs`), which any RFC 862 echo
//! server returns unchanged, and STAMP test packets (`stamp.rs`, RFC 8762).
//! The send and receive loops (`threads.rs`) are the same for both.

use super::{
    header::{template, Expect, Header, Phase, Reject, FLAG_WARMUP},
    stamp, Config,
};
use crate::{
    reflect::stamp::{encode_sender, Reflected},
    sys::clock::realtime_ns,
};

/// What goes on the wire.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// bench headers and pattern, echoed unchanged.
    Echo { run: u32, expect: Expect },
    /// STAMP Session-Sender test packets of `size` bytes.
    Stamp { size: usize },
}

/// When a batch of replies was read: bench's monotonic clock (nanoseconds
/// since its epoch) and, for STAMP, CLOCK_REALTIME (T4).
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub mono_ns: u64,
    pub real_ns: u64,
}

/// What an accepted reply says about its probe's delay.
#[derive(Debug, Clone, Copy)]
pub enum Sample {
    /// The probe's send stamp, bench's monotonic clock.
    SentAt(u64),
    /// The reflector's timestamps (T1, T2, T3).
    Stamp(Reflected),
}

/// A reply that is an intact answer to one of our probes.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    /// The probe's 64-bit sequence on its flow.
    pub seq: u64,
    pub phase: Phase,
    pub sample: Sample,
}

impl Protocol {
    pub fn new(cfg: &Config) -> Protocol {
        if cfg.stamp {
            Protocol::Stamp { size: cfg.size }
        } else {
            Protocol::Echo {
                run: cfg.run,
                expect: Expect::new(cfg.run, cfg.size),
            }
        }
    }

    /// A `size`-byte probe before its fields are written.
    pub fn template(&self, size: usize) -> Vec<u8> {
        match self {
            Protocol::Echo { .. } => template(size),
            // STAMP padding is zeros: RFC 8762 gives it no pattern, and an
            // RFC 8972 reflector may read it as TLVs.
            Protocol::Stamp { .. } => vec![0; size],
        }
    }

    /// Whether a probe says which phase it was sent in. STAMP packets do
    /// not: the sender publishes each flow's first measured sequence, and
    /// [`Protocol::check`] asks for it.
    pub fn phase_on_wire(&self) -> bool {
        matches!(self, Protocol::Echo { .. })
    }

    /// The time to write into the probes of a send made at `sent_ns`
    /// (monotonic): that, or for STAMP T1, CLOCK_REALTIME read now.
    #[inline]
    pub fn send_stamp(&self, sent_ns: u64) -> u64 {
        match self {
            Protocol::Echo { .. } => sent_ns,
            Protocol::Stamp { .. } => realtime_ns(),
        }
    }

    /// Writes probe `seq` of `flow` into `d`, stamped `stamp` (see
    /// [`Protocol::send_stamp`]).
    #[inline]
    pub fn encode(&self, d: &mut [u8], flow: u16, seq: u64, phase: Phase, stamp: u64) {
        match self {
            Protocol::Echo { run, .. } => Header {
                run: *run,
                flags: if phase == Phase::Warmup {
                    FLAG_WARMUP
                } else {
                    0
                },
                flow,
                seq,
                sent_ns: stamp,
            }
            .encode(d),
            // The wire's sequence is 32 bits; receivers unwrap it.
            Protocol::Stamp { .. } => {
                let _ = encode_sender(seq as u32, stamp, d);
            }
        }
    }

    /// The time of a read made at `mono_ns`.
    #[inline]
    pub fn arrival(&self, mono_ns: u64) -> Arrival {
        let real_ns = match self {
            Protocol::Echo { .. } => 0,
            // T4: the same clock as T1, read once per batch.
            Protocol::Stamp { .. } => realtime_ns(),
        };
        Arrival { mono_ns, real_ns }
    }

    /// Judges datagram `d` read on `flow`'s socket (`truncated`: MSG_TRUNC).
    /// `near` is the flow's oldest unresolved sequence and `phase_of` the
    /// phase of a sequence, for probes that do not carry theirs.
    #[inline]
    pub fn check(
        &self,
        d: &[u8],
        truncated: bool,
        flow: u16,
        near: u64,
        phase_of: impl Fn(u64) -> Phase,
    ) -> Result<Reply, Reject> {
        match self {
            Protocol::Echo { expect, .. } => {
                let h = expect.check(d, truncated, flow)?;
                Ok(Reply {
                    seq: h.seq,
                    phase: h.phase(),
                    sample: Sample::SentAt(h.sent_ns),
                })
            }
            Protocol::Stamp { size } => {
                let r = stamp::check(d, truncated, *size)?;
                let seq = stamp::unwrap_seq(r.sender_seq, near).ok_or(Reject::Corrupt)?;
                Ok(Reply {
                    seq,
                    phase: phase_of(seq),
                    sample: Sample::Stamp(r),
                })
            }
        }
    }
}
