//! `bench --stamp`: bench as a STAMP (RFC 8762) Session-Sender,
//! unauthenticated, against any Session-Reflector.
//!
//! The test packet is [`crate::reflect::stamp`]'s: 44 bytes (sequence
//! number, T1, error estimate, MBZ), zero-padded to `--size`. It has no room
//! for bench's own header, so:
//!
//! - the flow is the socket a reply arrives on (each flow socket is
//!   connected to the target: one STAMP session per source port);
//! - the datagram is the Session-Sender Sequence Number the reflector copies
//!   back (bytes 24..28), not the reflector's own sequence number, which a
//!   stateful reflector counts by itself. It starts at 0 on every session
//!   and wraps at 2^32 on the wire; [`unwrap_seq`] restores bench's 64-bit
//!   sequence from the tracker's position;
//! - the phase (warmup or measured) is not on the wire either: the sender
//!   publishes each flow's first measured sequence before sending it
//!   ([`super::threads::Shared::measured_from`]), and the receiver compares.
//!
//! # What a reply must be
//!
//! A reply is `invalid` (not a reflection of one of our test packets) when
//! - it is shorter than the 44-byte reflector packet, so it does not decode;
//! - its copy of the sender's Error Estimate (bytes 36..38) is not the one
//!   every one of our packets carries ([`ERROR_ESTIMATE`]) or its copy of T1
//!   (bytes 28..36) is zero: a reflector copies both, so a reply without
//!   them answered something else. This is what catches an RFC 862 echo
//!   server: the echo of our sender packet has the sender's MBZ zeros at
//!   those offsets (it decodes, with T2 = 0 and Session-Sender fields 0);
//! - its receive (T2) or transmit (T3) timestamp is zero: the packet was not
//!   timestamped by a reflector. (A zero NTP timestamp reads as 2036-02-07,
//!   era 1; no reflector writes it.)
//!
//! It is never judged by its timestamps' values: across hosts the clocks may
//! disagree by more than the delay, so a one-way delay may come out
//! negative (it is counted as such and recorded as 0), and that is a fact
//! about the clocks, not about the packet.
//!
//! A reply that passes is ours; it is `corrupt` if the kernel cut it
//! (longer than we sent) or its length differs from what we sent (STAMP
//! exchanges are symmetrical), or if its sequence number is one the
//! session cannot have sent yet. Bytes past 44 are not compared: an RFC
//! 8972 reflector may read our zero padding as TLVs and flag them.

use super::header::Reject;
use crate::reflect::stamp::{decode_reflected, field, Reflected, ERROR_ESTIMATE, SENDER_LEN};

/// The smallest `--size` with `--stamp`: the unauthenticated base packet.
pub const STAMP_LEN: usize = SENDER_LEN;

/// Offsets of the reflector packet's raw timestamps.
const T3_AT: usize = field::TIMESTAMP.start;
const T2_AT: usize = field::RECEIVE_TIMESTAMP.start;
const T1_AT: usize = field::SENDER_TIMESTAMP.start;

fn raw_u64(d: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Judges one datagram read on a STAMP flow socket; `size` is the test
/// packet's length, `truncated` the kernel's MSG_TRUNC. See the module docs.
pub fn check(d: &[u8], truncated: bool, size: usize) -> Result<Reflected, Reject> {
    let r = decode_reflected(d).ok_or(Reject::Invalid)?;
    if r.sender_error_estimate != ERROR_ESTIMATE
        || raw_u64(d, T1_AT) == 0
        || raw_u64(d, T2_AT) == 0
        || raw_u64(d, T3_AT) == 0
    {
        return Err(Reject::Invalid);
    }
    if truncated || d.len() != size {
        return Err(Reject::Corrupt);
    }
    Ok(r)
}

/// bench's 64-bit sequence of the wire's 32-bit `seq`, taking the one
/// nearest `near` (the oldest unresolved sequence of the session). A session
/// never has more than half a tracker ring (at most 2^21) in flight, so the
/// nearest is the right one. `None` for a sequence before 0.
pub fn unwrap_seq(seq: u32, near: u64) -> Option<u64> {
    let diff = seq.wrapping_sub(near as u32) as i32;
    near.checked_add_signed(i64::from(diff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reflect::{
        stamp::{encode_sender, reflect},
        RxMeta,
    };

    const T1: u64 = 1_700_000_000_500_000_000;
    const T2: u64 = T1 + 20_000;
    const T3: u64 = T2 + 5_000;

    fn reflected(seq: u32, size: usize) -> Vec<u8> {
        let mut d = vec![0u8; size];
        encode_sender(seq, T1, &mut d).unwrap();
        let meta = RxMeta {
            rx_time_ns: Some(T2),
            ttl: Some(64),
        };
        reflect(&meta, &mut d, size, T3);
        d
    }

    #[test]
    fn a_reflected_packet_is_accepted() {
        for size in [44, 45, 200] {
            let r = check(&reflected(7, size), false, size).unwrap();
            assert_eq!((r.sender_seq, r.t1_ns, r.t2_ns, r.t3_ns), (7, T1, T2, T3));
        }
    }

    #[test]
    fn an_echoed_sender_packet_is_invalid() {
        // What an RFC 862 echo server returns. It decodes (44 bytes), but
        // its Session-Sender fields and T2 are the sender's MBZ zeros.
        for size in [44, 100] {
            let mut d = vec![0u8; size];
            encode_sender(3, T1, &mut d).unwrap();
            let r = decode_reflected(&d).expect("an echo decodes");
            assert_eq!((r.sender_seq, r.sender_error_estimate.0), (0, 0));
            assert_eq!(check(&d, false, size).unwrap_err(), Reject::Invalid);
        }
    }

    #[test]
    fn foreign_and_unstamped_replies_are_invalid_damaged_ones_corrupt() {
        let good = reflected(1, 44);
        assert_eq!(check(&good[..43], false, 44), Err(Reject::Invalid), "short");
        assert_eq!(check(b"hello", false, 44), Err(Reject::Invalid));
        for (at, what) in [(T3_AT, "T3"), (T2_AT, "T2"), (T1_AT, "T1 copy")] {
            let mut d = good.clone();
            d[at..at + 8].fill(0);
            assert_eq!(check(&d, false, 44), Err(Reject::Invalid), "{what} zero");
        }
        let mut d = good.clone();
        d[field::SENDER_ERROR_ESTIMATE.start] ^= 0x80;
        assert_eq!(check(&d, false, 44), Err(Reject::Invalid));
        assert_eq!(check(&good, true, 44), Err(Reject::Corrupt), "cut");
        assert_eq!(check(&good, false, 64), Err(Reject::Corrupt), "44 of 64");
        let long = reflected(1, 64);
        assert_eq!(check(&long, false, 44), Err(Reject::Corrupt), "64 of 44");
        // Timestamps are facts about clocks, not about the packet.
        let mut early = good.clone();
        early[T2_AT..T2_AT + 8].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 1]);
        assert!(check(&early, false, 44).is_ok(), "T2 in 1968");
    }

    #[test]
    fn sequences_unwrap_around_the_session_position() {
        assert_eq!(unwrap_seq(0, 0), Some(0));
        assert_eq!(unwrap_seq(5, 3), Some(5));
        assert_eq!(unwrap_seq(1, 3), Some(1), "behind");
        assert_eq!(unwrap_seq(u32::MAX, 0), None, "before the first");
        let base = 3u64 << 32;
        assert_eq!(unwrap_seq(2, base - 10), Some(base + 2), "across a wrap");
        assert_eq!(unwrap_seq(u32::MAX - 1, base + 5), Some(base - 2));
        assert_eq!(unwrap_seq(7, base + 7), Some(base + 7));
    }
}
