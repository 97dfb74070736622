//! What to answer: a received datagram in, a reply (or the reason for none) out.
//!
//! Pure functions over bytes, no system calls, so every mode is unit-tested
//! byte for byte and benchmarked without a socket. The reply is built in place
//! in the receive buffer: no copy, no allocation. The one impurity is STAMP's
//! transmit timestamp, read from the clock in [`reflect`]; [`stamp_reflect`]
//! takes it as an argument so tests stay deterministic.
//!
//! The wire formats live in their own modules: [`sockperf`] (checked against
//! captures of sockperf 3.7's own server) and [`stamp`] (RFC 8762, with a
//! session-sender encoder and reply decoder for the bench client).

pub mod sockperf;
pub mod stamp;

pub use stamp::reflect as stamp_reflect;

/// How a listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// RFC 862: the payload comes back unchanged.
    Echo,
    /// RFC 863: receive and count, never reply.
    Discard,
    /// Answer sockperf clients as sockperf's own server does.
    Sockperf,
    /// RFC 8762 STAMP session-reflector, stateless, unauthenticated.
    Stamp,
}

impl Mode {
    /// Every mode, in the order `--help` lists them.
    pub const ALL: [Mode; 4] = [Mode::Echo, Mode::Discard, Mode::Sockperf, Mode::Stamp];

    /// The mode's name on the command line, in reports and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Discard => "discard",
            Mode::Sockperf => "sockperf",
            Mode::Stamp => "stamp",
        }
    }

    /// One line saying what the mode does (`--help`).
    pub fn about(self) -> &'static str {
        match self {
            Mode::Echo => "RFC 862: the payload comes back unchanged",
            Mode::Discard => "RFC 863: receive and count, never reply",
            Mode::Sockperf => "Answer sockperf clients as sockperf's own server does",
            Mode::Stamp => "RFC 8762 STAMP session-reflector, stateless, unauthenticated",
        }
    }

    /// The port a listener of this mode uses when none is given.
    pub fn default_port(self) -> u16 {
        match self {
            Mode::Echo | Mode::Discard => 7007,
            Mode::Sockperf => 11111,
            Mode::Stamp => 862,
        }
    }

    /// Whether replies need the received TTL / hop limit.
    pub fn wants_ttl(self) -> bool {
        self == Mode::Stamp
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMode(pub String);

impl std::fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let valid: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
        write!(f, "unknown mode '{}' (valid: {})", self.0, valid.join(", "))
    }
}

impl std::str::FromStr for Mode {
    type Err = UnknownMode;

    /// A mode by its [`Mode::name`], in any case.
    fn from_str(s: &str) -> Result<Self, UnknownMode> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownMode(s.to_string()))
    }
}

/// Declares the reasons once: each one's variant, its counter name
/// (`no_reply_<name>`) and its doc. The enum, [`NoReply::ALL`],
/// [`NoReply::COUNT`] and [`NoReply::counter_name`] come from this list.
macro_rules! reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident => $name:literal, )*) => {
        /// Why a datagram received no reply. Each reason has its own counter,
        /// `no_reply_<name>`. The discriminant is the counter's index.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum NoReply {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl NoReply {
            pub const COUNT: usize = [$( stringify!($variant), )*].len();
            /// Every reason, in discriminant (counter index) order.
            pub const ALL: [NoReply; Self::COUNT] = [$( NoReply::$variant, )*];

            /// The counter name, as printed and in JSON.
            pub fn counter_name(self) -> &'static str {
                match self {
                    $( NoReply::$variant => concat!("no_reply_", $name), )*
                }
            }
        }
    };
}

reasons! {
    /// Discard mode: consumed as asked.
    Discarded => "discarded",
    /// Shorter than the mode's header (sockperf: 14 bytes, STAMP: 14 bytes).
    TooShort => "too_short",
    /// sockperf: the header's length field differs from the datagram's size.
    LengthMismatch => "length_mismatch",
    /// sockperf: a frame without the CLIENT flag (not from a client).
    NotClient => "not_client",
    /// sockperf: a warm-up frame, never answered.
    Warmup => "warmup",
    /// sockperf: the client did not ask for a reply (PONG flag clear).
    NoPong => "no_pong",
    /// STAMP: the receive buffer cannot hold the 44-byte reply that a shorter
    /// request is padded to.
    NoRoom => "no_room",
    /// Policy: the source address is 0.0.0.0 or :: (a reply would go to
    /// this host itself), or unreadable.
    SourceUnspecified => "source_unspecified",
    /// Policy: the source address is a multicast group.
    SourceMulticast => "source_multicast",
    /// Policy: the source address is 255.255.255.255.
    SourceBroadcast => "source_broadcast",
    /// Policy: the source port is 0.
    SourcePortZero => "source_port_zero",
    /// Policy: the source port is a reflector's (ours, or one of another
    /// reflector of this host): answering could start a loop.
    SourceReflectorPort => "source_reflector_port",
    /// Policy: the source port is a well-known reflecting service's.
    SourceServicePort => "source_service_port",
    /// Policy: sent to a broadcast address (no `--answer-broadcast`).
    ToBroadcast => "to_broadcast",
    /// Policy: sent to a multicast group (no `--answer-broadcast`).
    ToMulticast => "to_multicast",
    /// Policy: the source is outside every `--allow` network.
    NotAllowed => "not_allowed",
    /// Policy: the source exceeded `--max-pps-per-source`.
    RateLimited => "rate_limited",
    /// The kernel cut the datagram's control data (MSG_CTRUNC): its
    /// destination address may be lost, and a reply could leave from the
    /// wrong one.
    ControlTruncated => "ctrunc",
}

/// What the kernel told us about a datagram, beyond its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// Kernel receive timestamp, CLOCK_REALTIME nanoseconds (SO_TIMESTAMPNS).
    pub rx_time_ns: Option<u64>,
    /// Received IPv4 TTL or IPv6 hop limit, when the listener asked for it.
    pub ttl: Option<u8>,
}

/// The decision for one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the first `n` bytes of the buffer back.
    Reply(usize),
    /// Send nothing; count the reason.
    NoReply(NoReply),
}

/// Decides the reply to a datagram whose payload is `buf[..len]`.
///
/// `buf` extends to the buffer's capacity, so a mode may lengthen the reply
/// (STAMP pads short requests); it never reads past `len`.
#[inline]
pub fn reflect(mode: Mode, meta: &RxMeta, buf: &mut [u8], len: usize) -> Verdict {
    debug_assert!(len <= buf.len());
    match mode {
        Mode::Echo => Verdict::Reply(len),
        Mode::Discard => Verdict::NoReply(NoReply::Discarded),
        Mode::Sockperf => sockperf::reflect(buf, len),
        // T3 "as late as possible" within this function: the clock is read
        // only here, after nothing else is left to do but build the reply.
        Mode::Stamp => stamp::reflect(meta, buf, len, crate::sys::clock::realtime_ns()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_parse_back_in_any_case() {
        for m in Mode::ALL {
            assert_eq!(m.name().parse::<Mode>(), Ok(m));
            assert_eq!(m.name().to_uppercase().parse::<Mode>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
        }
        let e = "nope".parse::<Mode>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown mode 'nope' (valid: echo, discard, sockperf, stamp)"
        );
    }

    #[test]
    fn echo_returns_the_payload_unchanged() {
        let mut buf = *b"hello, world....";
        assert_eq!(
            reflect(Mode::Echo, &RxMeta::default(), &mut buf, 12),
            Verdict::Reply(12)
        );
        assert_eq!(&buf, b"hello, world....");
        assert_eq!(
            reflect(Mode::Echo, &RxMeta::default(), &mut buf, 0),
            Verdict::Reply(0)
        );
    }

    #[test]
    fn discard_never_replies() {
        let mut buf = [0u8; 8];
        assert_eq!(
            reflect(Mode::Discard, &RxMeta::default(), &mut buf, 8),
            Verdict::NoReply(NoReply::Discarded)
        );
    }

    #[test]
    fn no_reply_all_is_in_counter_index_order_with_unique_names() {
        for (i, r) in NoReply::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
            assert!(r.counter_name().starts_with("no_reply_"));
        }
        let mut names: Vec<_> = NoReply::ALL.iter().map(|r| r.counter_name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), NoReply::COUNT);
    }

    #[test]
    fn reflect_dispatches_sockperf_and_stamp() {
        // One captured sockperf ping; the byte-level cases live in sockperf.rs.
        let mut buf = [0u8; 64];
        buf[..14].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 0, 0, 0, 14]);
        assert_eq!(
            reflect(Mode::Sockperf, &RxMeta::default(), &mut buf, 14),
            Verdict::Reply(14)
        );
        assert_eq!(buf[9], 2);

        // STAMP through `reflect` reads the real clock: T3 is recent and >= T2.
        let t2 = crate::sys::clock::realtime_ns();
        let meta = RxMeta {
            rx_time_ns: Some(t2),
            ttl: Some(64),
        };
        let mut buf = [0u8; 64];
        let n = stamp::encode_sender(9, t2, &mut buf).unwrap();
        assert_eq!(reflect(Mode::Stamp, &meta, &mut buf, n), Verdict::Reply(44));
        let r = stamp::decode_reflected(&buf[..44]).unwrap();
        assert_eq!((r.seq, r.sender_seq, r.ttl), (9, 9, 64));
        assert!(r.t3_ns >= r.t2_ns && r.t3_ns - r.t2_ns < 60_000_000_000);
    }

    /// Arbitrary bytes of every length, in every mode, with and without
    /// spare capacity: never a panic, and a reply never claims more bytes
    /// than the buffer holds.
    #[test]
    fn arbitrary_datagrams_never_panic_and_replies_fit() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let modes = [Mode::Echo, Mode::Discard, Mode::Sockperf, Mode::Stamp];
        for len in 0..200usize {
            for spare in [0usize, 1, 43, 200] {
                for _ in 0..20 {
                    let mut buf: Vec<u8> = (0..len + spare).map(|_| next() as u8).collect();
                    if len >= 14 && next() % 2 == 0 {
                        // Often a plausible sockperf header: right length, random flags.
                        buf[10..14].copy_from_slice(&(len as u32).to_be_bytes());
                    }
                    let meta = RxMeta {
                        rx_time_ns: Some(next()),
                        ttl: Some(next() as u8),
                    };
                    for mode in modes {
                        let mut b = buf.clone();
                        if let Verdict::Reply(n) = reflect(mode, &meta, &mut b, len) {
                            assert!(
                                n <= b.len(),
                                "{mode:?}: reply of {n} from a {len}-byte datagram"
                            );
                        }
                    }
                }
            }
        }
    }
}
