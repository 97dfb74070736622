//! STAMP (RFC 8762): a stateless, unauthenticated session-reflector, and the
//! session-sender's side (encoder and reply decoder) for the bench client.
//!
//! Session-sender packet, unauthenticated (RFC 8762 §4.2.1), 44 bytes:
//!
//! ```text
//!  0       4               12      14      16                              44
//! +-------+---------------+-------+-------+------------------------------+
//! |  seq  |  timestamp T1 |  err  | SSID* |             MBZ              | padding / TLVs ...
//! +-------+---------------+-------+-------+------------------------------+
//! ```
//!
//! Session-reflector packet, unauthenticated (RFC 8762 §4.3.1), 44 bytes:
//!
//! ```text
//!  0    4             12    14     16            24    28            36    38    40  41    44
//! +----+-------------+-----+------+-------------+-----+-------------+-----+-----+---+-----+
//! |seq | timestamp T3| err | SSID*| receive T2  |s.seq| s.timest. T1|s.err| MBZ |TTL| MBZ | ...
//! +----+-------------+-----+------+-------------+-----+-------------+-----+-----+---+-----+
//! ```
//!
//! (*) MBZ in RFC 8762; RFC 8972 names these two bytes the Session-Sender
//! Identifier, which a reflector copies. A sender following RFC 8762 zeroes
//! them, so copying returns zero to it and its SSID to an RFC 8972 sender.
//!
//! What [`reflect`] does, in place:
//! - Stateless mode (§4.3): the reflector's sequence number is the sender's.
//! - T2 is the kernel's receive timestamp; T3 is read by the caller as late as
//!   the reply's construction allows. Both are NTP 64-bit (seconds since 1900,
//!   32-bit fraction), and T3 is never earlier than T2 (a clock step back
//!   between the two would otherwise give a negative residence time). Without
//!   a kernel timestamp T2 falls back to T3.
//! - The sender's sequence number, timestamp and error estimate are copied
//!   into their fields; the received TTL / hop limit into Ses-Sender TTL, or
//!   255 when it is unknown, as RFC 5357 §4.2 requires of a reflector that
//!   cannot read it. Every MBZ field is zeroed.
//! - Size: the reply is as long as the request. A request shorter than 44
//!   bytes (a TWAMP-Light sender without padding) is answered with the full
//!   44-byte reflector packet, zero-padded. Bytes past 44 (padding, or RFC
//!   8972 TLVs, which this reflector does not interpret) go back unchanged, as
//!   a TWAMP reflector reuses the sender's padding. Requests shorter than 14
//!   bytes lack the sender's header and are not answered.
//! - Authenticated mode (RFC 8762 §4.2.2, HMAC) is not supported: such a
//!   packet is indistinguishable from a padded unauthenticated one and is
//!   answered as one.

use super::{NoReply, RxMeta, Verdict};

/// Byte ranges of the packets' fields, as drawn above (RFC 8762 §4.2.1,
/// §4.3.1): the one place every reader and writer of STAMP takes them from.
pub mod field {
    use std::ops::Range;

    /// Sequence number (sender's, or the reflector's).
    pub const SEQ: Range<usize> = 0..4;
    /// T1 in a sender packet, T3 in a reflector packet.
    pub const TIMESTAMP: Range<usize> = 4..12;
    pub const ERROR_ESTIMATE: Range<usize> = 12..14;
    /// Session-Sender Identifier (RFC 8972); MBZ in RFC 8762.
    pub const SSID: Range<usize> = 14..16;
    /// The sender's fields a reflector copies: sequence, T1, error estimate.
    pub const SENDER_HEADER: Range<usize> = 0..14;
    /// Reflector packet: receive timestamp T2.
    pub const RECEIVE_TIMESTAMP: Range<usize> = 16..24;
    /// Reflector packet: where [`SENDER_HEADER`] is copied to.
    pub const SENDER_COPY: Range<usize> = 24..38;
    pub const SENDER_SEQ: Range<usize> = 24..28;
    pub const SENDER_TIMESTAMP: Range<usize> = 28..36;
    pub const SENDER_ERROR_ESTIMATE: Range<usize> = 36..38;
    pub const MBZ_1: Range<usize> = 38..40;
    /// Reflector packet: the request's TTL / hop limit.
    pub const SENDER_TTL: usize = 40;
    pub const MBZ_2: Range<usize> = 41..44;
    /// Sender packet: zeroed after the header.
    pub const SENDER_MBZ: Range<usize> = 14..44;
}

/// Length of the unauthenticated session-sender packet.
pub const SENDER_LEN: usize = 44;
/// Length of the unauthenticated session-reflector packet.
pub const REFLECTOR_LEN: usize = 44;
/// The shortest request answered: sequence number, timestamp, error estimate.
pub const MIN_REQUEST_LEN: usize = 14;
/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;
/// TTL reported when the received TTL / hop limit is unknown (RFC 5357 §4.2).
pub const TTL_UNKNOWN: u8 = 255;

/// The Error Estimate field (RFC 4656 §4.1.2, Z bit per RFC 8186):
///
/// ```text
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |S|Z|   Scale   |   Multiplier  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// S: the clock is synchronized to UTC by an external source. Z: the
/// timestamps are PTP (1) or NTP (0). Error = Multiplier × 2^(Scale − 32) s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorEstimate(pub u16);

impl ErrorEstimate {
    pub const fn new(synchronized: bool, ptp: bool, scale: u8, multiplier: u8) -> Self {
        ErrorEstimate(
            (synchronized as u16) << 15
                | (ptp as u16) << 14
                | ((scale & 0x3f) as u16) << 8
                | multiplier as u16,
        )
    }
    pub fn synchronized(self) -> bool {
        self.0 & 0x8000 != 0
    }
    /// Timestamps in PTP format (Z bit).
    pub fn ptp(self) -> bool {
        self.0 & 0x4000 != 0
    }
    pub fn scale(self) -> u8 {
        (self.0 >> 8) as u8 & 0x3f
    }
    pub fn multiplier(self) -> u8 {
        self.0 as u8
    }
    /// The estimated error in seconds.
    pub fn seconds(self) -> f64 {
        f64::from(self.multiplier()) * 2f64.powi(i32::from(self.scale()) - 32)
    }
}

/// The Error Estimate this crate writes, as reflector and as sender.
///
/// - S = 0: a pure function cannot know whether CLOCK_REALTIME is disciplined
///   (that is the NTP/PTP daemon's knowledge), and claiming it would be worse
///   than not.
/// - Z = 0: NTP timestamps, STAMP's default.
/// - Scale 18, Multiplier 1: 2^-14 s ≈ 61 µs. The timestamps have nanosecond
///   resolution, but T3 is read while the reply is built, before the batch's
///   single `sendmmsg`; a reply late in a batch of tens leaves up to tens of
///   microseconds after its T3.
pub const ERROR_ESTIMATE: ErrorEstimate = ErrorEstimate::new(false, false, 18, 1);

/// Unix-epoch nanoseconds as an NTP 64-bit timestamp. The seconds wrap into
/// NTP era 1 from 2036-02-07 on, as on the wire.
#[inline]
pub fn unix_ns_to_ntp(ns: u64) -> u64 {
    let secs = ns / 1_000_000_000 + NTP_UNIX_OFFSET_S;
    // sub-second ns < 2^30, so the shift cannot overflow.
    let frac = ((ns % 1_000_000_000) << 32) / 1_000_000_000;
    (secs & 0xffff_ffff) << 32 | frac
}

/// An NTP 64-bit timestamp as Unix-epoch nanoseconds, rounded to the nearest
/// nanosecond (so `ntp_to_unix_ns(unix_ns_to_ntp(t)) == t`). Seconds with the
/// top bit clear are read as NTP era 1 (2036–2104), as RFC 4330 §3 suggests;
/// times before 1970 read as 0.
#[inline]
pub fn ntp_to_unix_ns(ntp: u64) -> u64 {
    let mut secs = ntp >> 32;
    if secs & 0x8000_0000 == 0 {
        secs += 1 << 32;
    }
    let Some(unix_secs) = secs.checked_sub(NTP_UNIX_OFFSET_S) else {
        return 0;
    };
    let frac_ns = ((ntp & 0xffff_ffff) * 1_000_000_000 + (1 << 31)) >> 32;
    unix_secs * 1_000_000_000 + frac_ns
}

/// A PTPv2 truncated timestamp (seconds since 1970, then nanoseconds) as
/// Unix-epoch nanoseconds.
#[inline]
pub fn ptp_to_unix_ns(ptp: u64) -> u64 {
    (ptp >> 32) * 1_000_000_000 + (ptp & 0xffff_ffff)
}

fn timestamp_ns(raw: u64, err: ErrorEstimate) -> u64 {
    if err.ptp() {
        ptp_to_unix_ns(raw)
    } else {
        ntp_to_unix_ns(raw)
    }
}

/// Answers `buf[..len]` in place as a stateless, unauthenticated STAMP
/// session-reflector (see the module docs), with `t3_ns` (Unix-epoch ns) as
/// the transmit timestamp. The reply is `max(len, 44)` bytes long.
#[inline]
pub fn reflect(meta: &RxMeta, buf: &mut [u8], len: usize, t3_ns: u64) -> Verdict {
    if len < MIN_REQUEST_LEN {
        return Verdict::NoReply(NoReply::TooShort);
    }
    let Some(r) = buf.get_mut(..REFLECTOR_LEN) else {
        return Verdict::NoReply(NoReply::NoRoom);
    };
    // The sender's fields, read before they are overwritten; bytes at or past
    // `len` are stale buffer contents, never read.
    let mut sender = [0u8; field::SSID.end];
    let n = len.min(sender.len());
    sender[..n].copy_from_slice(&r[..n]);

    let t2_ns = meta.rx_time_ns.unwrap_or(t3_ns);
    let t3_ns = t3_ns.max(t2_ns);

    // field::SEQ: the sender's sequence number (stateless mode), left in place.
    r[field::TIMESTAMP].copy_from_slice(&unix_ns_to_ntp(t3_ns).to_be_bytes());
    r[field::ERROR_ESTIMATE].copy_from_slice(&ERROR_ESTIMATE.0.to_be_bytes());
    // SSID (RFC 8972): 0 from RFC 8762 senders.
    r[field::SSID].copy_from_slice(&sender[field::SSID]);
    r[field::RECEIVE_TIMESTAMP].copy_from_slice(&unix_ns_to_ntp(t2_ns).to_be_bytes());
    r[field::SENDER_COPY].copy_from_slice(&sender[field::SENDER_HEADER]);
    r[field::MBZ_1].fill(0);
    r[field::SENDER_TTL] = meta.ttl.unwrap_or(TTL_UNKNOWN);
    r[field::MBZ_2].fill(0);
    Verdict::Reply(len.max(REFLECTOR_LEN))
}

/// Writes a 44-byte unauthenticated session-sender packet (MBZ zeroed, SSID
/// 0) with timestamp `t1_ns` (Unix-epoch ns) into `buf`; returns its length,
/// or `None` if `buf` is shorter than [`SENDER_LEN`]. To send a larger test
/// packet, send more of `buf`: bytes past 44 are padding.
pub fn encode_sender(seq: u32, t1_ns: u64, buf: &mut [u8]) -> Option<usize> {
    let p = buf.get_mut(..SENDER_LEN)?;
    p[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    p[field::TIMESTAMP].copy_from_slice(&unix_ns_to_ntp(t1_ns).to_be_bytes());
    p[field::ERROR_ESTIMATE].copy_from_slice(&ERROR_ESTIMATE.0.to_be_bytes());
    p[field::SENDER_MBZ].fill(0);
    Some(SENDER_LEN)
}

/// A session-reflector packet, decoded. Times are Unix-epoch nanoseconds,
/// converted from NTP or PTP as each side's Error Estimate Z bit says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reflected {
    /// The reflector's sequence number.
    pub seq: u32,
    /// Reflector transmit time.
    pub t3_ns: u64,
    pub error_estimate: ErrorEstimate,
    /// Session-Sender Identifier (RFC 8972); MBZ in RFC 8762.
    pub ssid: u16,
    /// Reflector receive time.
    pub t2_ns: u64,
    pub sender_seq: u32,
    /// Sender transmit time, as the sender wrote it.
    pub t1_ns: u64,
    pub sender_error_estimate: ErrorEstimate,
    /// TTL / hop limit of the request as the reflector received it.
    pub ttl: u8,
}

/// One exchange's delays in nanoseconds. One-way delays are signed: they are
/// only as good as the agreement of the two clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delays {
    /// T2 − T1: sender to reflector.
    pub forward_ns: i64,
    /// T4 − T3: reflector to sender.
    pub reverse_ns: i64,
    /// (T4 − T1) − (T3 − T2): round trip without the reflector's residence.
    pub round_trip_ns: i64,
}

impl Reflected {
    /// Delays of this exchange, given T4, the reply's arrival (Unix ns).
    pub fn delays(&self, t4_ns: u64) -> Delays {
        let d = |a: u64, b: u64| a.wrapping_sub(b) as i64;
        Delays {
            forward_ns: d(self.t2_ns, self.t1_ns),
            reverse_ns: d(t4_ns, self.t3_ns),
            round_trip_ns: d(t4_ns, self.t1_ns) - d(self.t3_ns, self.t2_ns),
        }
    }
}

/// Decodes an unauthenticated session-reflector packet; `None` if `buf` is
/// shorter than [`REFLECTOR_LEN`]. MBZ fields and bytes past 44 are ignored.
pub fn decode_reflected(buf: &[u8]) -> Option<Reflected> {
    let p: &[u8; REFLECTOR_LEN] = buf.get(..REFLECTOR_LEN)?.try_into().ok()?;
    let u16_at = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let u64_at = |i: usize| u64::from(u32_at(i)) << 32 | u64::from(u32_at(i + 4));
    let error_estimate = ErrorEstimate(u16_at(field::ERROR_ESTIMATE.start));
    let sender_error_estimate = ErrorEstimate(u16_at(field::SENDER_ERROR_ESTIMATE.start));
    Some(Reflected {
        seq: u32_at(field::SEQ.start),
        t3_ns: timestamp_ns(u64_at(field::TIMESTAMP.start), error_estimate),
        error_estimate,
        ssid: u16_at(field::SSID.start),
        t2_ns: timestamp_ns(u64_at(field::RECEIVE_TIMESTAMP.start), error_estimate),
        sender_seq: u32_at(field::SENDER_SEQ.start),
        t1_ns: timestamp_ns(u64_at(field::SENDER_TIMESTAMP.start), sender_error_estimate),
        sender_error_estimate,
        ttl: p[field::SENDER_TTL],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // 2023-11-14T22:13:20.5Z and two instants 123.456 µs / 125 µs later.
    const T1: u64 = 1_700_000_000_500_000_000;
    const T2: u64 = 1_700_000_000_500_123_456;
    const T3: u64 = 1_700_000_000_500_125_000;

    fn meta(ttl: u8) -> RxMeta {
        RxMeta {
            rx_time_ns: Some(T2),
            ttl: Some(ttl),
        }
    }

    #[test]
    fn ntp_timestamps() {
        assert_eq!(unix_ns_to_ntp(0), 0x83aa_7e80_0000_0000);
        assert_eq!(unix_ns_to_ntp(T1), 0xe8fe_6f80_8000_0000);
        assert_eq!(unix_ns_to_ntp(1_500_000_000), 0x83aa_7e81_8000_0000);
        assert_eq!(ntp_to_unix_ns(0x83aa_7e80_0000_0000), 0);
        assert_eq!(ntp_to_unix_ns(0x83aa_7e7f_0000_0000), 0, "before 1970");
        // NTP era 1 begins 2036-02-07T06:28:16Z: the seconds wrap to 0.
        let era1 = 2_085_978_496 * 1_000_000_000;
        assert_eq!(unix_ns_to_ntp(era1), 0);
        assert_eq!(unix_ns_to_ntp(era1 + 1_000_000_000), 1 << 32);
        assert_eq!(ntp_to_unix_ns(0), era1);
        for t in [
            0,
            1,
            999_999_999,
            T1,
            T2,
            T3,
            era1 - 1,
            era1 + 7,
            era1 + 0x7fff_ffff_u64 * 1_000_000_000,
        ] {
            assert_eq!(ntp_to_unix_ns(unix_ns_to_ntp(t)), t, "{t}");
        }
        for sub in (0..1_000_000_000).step_by(999_983) {
            assert_eq!(ntp_to_unix_ns(unix_ns_to_ntp(T1 + sub)), T1 + sub);
        }
        // The largest fraction rounds up to the next second.
        assert_eq!(ntp_to_unix_ns(0x83aa_7e80_ffff_ffff), 1_000_000_000);
        assert_eq!(ptp_to_unix_ns(5 << 32 | 7), 5_000_000_007);
    }

    #[test]
    fn error_estimate_bits() {
        assert_eq!(ERROR_ESTIMATE.0, 0x1201);
        assert!(!ERROR_ESTIMATE.synchronized() && !ERROR_ESTIMATE.ptp());
        assert_eq!(
            (ERROR_ESTIMATE.scale(), ERROR_ESTIMATE.multiplier()),
            (18, 1)
        );
        assert!((ERROR_ESTIMATE.seconds() - 61.035e-6).abs() < 1e-9);
        let e = ErrorEstimate::new(true, true, 63, 255);
        assert_eq!(e.0, 0xffff);
        assert!(e.synchronized() && e.ptp());
        assert_eq!(ErrorEstimate::new(true, false, 0, 1).0, 0x8001);
    }

    #[test]
    fn sender_packet_layout() {
        let mut buf = [0xAAu8; 64];
        assert_eq!(encode_sender(0x0102_0304, T1, &mut buf), Some(44));
        let want = hex("01020304 e8fe6f80 80000000 1201 0000
             00000000 00000000 00000000 00000000 00000000 00000000 00000000");
        assert_eq!(&buf[..44], &want[..]);
        assert!(
            buf[44..].iter().all(|&b| b == 0xAA),
            "nothing past 44 is written"
        );
        assert_eq!(encode_sender(1, T1, &mut [0; 43]), None);
    }

    #[test]
    fn reflector_packet_layout() {
        let mut buf = [0u8; 44];
        encode_sender(0x0102_0304, T1, &mut buf).unwrap();
        assert_eq!(reflect(&meta(61), &mut buf, 44, T3), Verdict::Reply(44));
        let want = hex("01020304         e8fe6f80 80083126  1201 0000
             e8fe6f80 8008173f         01020304  e8fe6f80 80000000
             1201 0000        3d 000000");
        assert_eq!(&buf[..], &want[..]);
    }

    #[test]
    fn foreign_sender_fields_are_copied() {
        // A sender with PTP timestamps, an error estimate of its own and an
        // RFC 8972 SSID; MBZ bytes that are not zero must not leak back.
        let mut buf = [0xEEu8; 44];
        buf[..16].copy_from_slice(&hex("fffffffe 11223344 55667788 c0ff abcd"));
        assert_eq!(reflect(&meta(1), &mut buf, 44, T3), Verdict::Reply(44));
        assert_eq!(
            &buf[..4],
            &hex("fffffffe")[..],
            "stateless: sender's sequence number"
        );
        assert_eq!(&buf[14..16], &hex("abcd")[..], "SSID");
        assert_eq!(&buf[24..38], &hex("fffffffe 11223344 55667788 c0ff")[..]);
        assert_eq!(&buf[38..40], &[0, 0]);
        assert_eq!(buf[40], 1);
        assert_eq!(&buf[41..44], &[0, 0, 0]);
    }

    #[test]
    fn short_requests_are_padded_to_44() {
        for len in [14, 15, 16, 20, 41, 43] {
            let mut buf = [0xAAu8; 80];
            encode_sender(7, T1, &mut buf).unwrap();
            buf[len..].fill(0xAA); // only `len` bytes arrived; the rest is stale
            assert_eq!(
                reflect(&meta(64), &mut buf, len, T3),
                Verdict::Reply(44),
                "len {len}"
            );
            let r = decode_reflected(&buf).unwrap();
            assert_eq!((r.seq, r.sender_seq, r.t1_ns, r.ttl), (7, 7, T1, 64));
            assert_eq!((r.t2_ns, r.t3_ns), (T2, T3));
            assert_eq!(r.ssid, 0, "len {len}: the SSID was not in the request");
            assert_eq!(&buf[38..40], &[0, 0]);
            assert_eq!(&buf[41..44], &[0, 0, 0]);
            assert!(buf[44..].iter().all(|&b| b == 0xAA), "reply ends at 44");
        }
    }

    #[test]
    fn long_requests_keep_their_size_and_extra_bytes() {
        let mut buf = [0u8; 200];
        encode_sender(9, T1, &mut buf).unwrap();
        for (i, b) in buf[44..128].iter_mut().enumerate() {
            *b = i as u8;
        }
        let before = buf;
        assert_eq!(reflect(&meta(64), &mut buf, 128, T3), Verdict::Reply(128));
        assert_eq!(buf[44..], before[44..]);
        assert_eq!(decode_reflected(&buf).unwrap().sender_seq, 9);
    }

    #[test]
    fn unanswerable_requests() {
        for len in 0..MIN_REQUEST_LEN {
            let mut buf = [0u8; 64];
            assert_eq!(
                reflect(&meta(64), &mut buf, len, T3),
                Verdict::NoReply(NoReply::TooShort)
            );
            assert_eq!(buf, [0; 64]);
        }
        let mut small = [0u8; 43];
        assert_eq!(
            reflect(&meta(64), &mut small, 20, T3),
            Verdict::NoReply(NoReply::NoRoom)
        );
        let mut exact = [0u8; 44];
        assert_eq!(reflect(&meta(64), &mut exact, 20, T3), Verdict::Reply(44));
    }

    #[test]
    fn missing_metadata_and_clock_steps() {
        let mut buf = [0u8; 44];
        encode_sender(1, T1, &mut buf).unwrap();
        assert_eq!(
            reflect(&RxMeta::default(), &mut buf, 44, T3),
            Verdict::Reply(44)
        );
        let r = decode_reflected(&buf).unwrap();
        assert_eq!(r.ttl, TTL_UNKNOWN);
        assert_eq!((r.t2_ns, r.t3_ns), (T3, T3), "no kernel timestamp: T2 = T3");

        // The clock stepped back between receive and reply: T3 is held at T2.
        encode_sender(2, T1, &mut buf).unwrap();
        reflect(&meta(64), &mut buf, 44, T2 - 5_000);
        let r = decode_reflected(&buf).unwrap();
        assert_eq!((r.t2_ns, r.t3_ns), (T2, T2));
    }

    #[test]
    fn decode_reads_ptp_by_the_z_bit_and_computes_delays() {
        let mut buf = [0u8; 44];
        encode_sender(3, T1, &mut buf).unwrap();
        reflect(&meta(64), &mut buf, 44, T3);
        let r = decode_reflected(&buf).unwrap();
        assert_eq!(r.error_estimate, ERROR_ESTIMATE);
        assert_eq!(r.sender_error_estimate, ERROR_ESTIMATE);
        let d = r.delays(T3 + 100_000);
        assert_eq!(d.forward_ns, 123_456);
        assert_eq!(d.reverse_ns, 100_000);
        assert_eq!(d.round_trip_ns, 223_456);

        // A reflector using PTP timestamps (Z = 1): seconds and nanoseconds.
        buf[4..12].copy_from_slice(&hex("6553f100 1dcd6500")); // 1700000000 s + 500000000 ns
        buf[12..14].copy_from_slice(&ErrorEstimate::new(true, true, 0, 1).0.to_be_bytes());
        buf[16..24].copy_from_slice(&hex("6553f100 00000001"));
        let r = decode_reflected(&buf).unwrap();
        assert_eq!(r.t3_ns, 1_700_000_000_500_000_000);
        assert_eq!(r.t2_ns, 1_700_000_000_000_000_001);
        assert_eq!(r.t1_ns, T1, "the sender's Z bit still says NTP");
        assert_eq!(decode_reflected(&buf[..43]), None);
    }
}
