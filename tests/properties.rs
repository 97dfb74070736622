//! Inputs nobody trusted: property tests over random bytes for the parsers
//! a datagram meets (control messages, sockperf, STAMP). Never a panic, and
//! each parser's identities hold.
//!
//! 10^4 cases per property by default; `PROPTEST_CASES=10000000 cargo
//! nextest run --release --test properties` runs 10^7.

use proptest::{collection::vec, prelude::*};
use udp_reflector::{
    reflect::{self, sockperf, stamp, Mode, NoReply, RxMeta, Verdict},
    sys::cmsg::{self, PktInfo},
};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

const ALIGN: usize = std::mem::size_of::<usize>();

/// One control message as the kernel lays it out (cmsghdr, data, padding).
fn cmsg_bytes(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
    let hdr = std::mem::size_of::<libc::cmsghdr>();
    let mut v = vec![0u8; cmsg::space(data.len())];
    v[..ALIGN].copy_from_slice(&(hdr + data.len()).to_ne_bytes());
    v[ALIGN..ALIGN + 4].copy_from_slice(&level.to_ne_bytes());
    v[ALIGN + 4..ALIGN + 8].copy_from_slice(&kind.to_ne_bytes());
    v[hdr..hdr + data.len()].copy_from_slice(data);
    v
}

#[derive(Debug, Clone)]
enum Cmsg {
    Pktinfo4 { spec_dst: [u8; 4], addr: [u8; 4] },
    Pktinfo6 { addr: [u8; 16], ifindex: u32 },
    Ovfl(u32),
    Ts(i64, i64),
    Ttl(i32),
    Unknown(i32, i32, Vec<u8>),
}

fn a_cmsg() -> impl Strategy<Value = Cmsg> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>())
            .prop_map(|(spec_dst, addr)| Cmsg::Pktinfo4 { spec_dst, addr }),
        (any::<[u8; 16]>(), any::<u32>())
            .prop_map(|(addr, ifindex)| Cmsg::Pktinfo6 { addr, ifindex }),
        any::<u32>().prop_map(Cmsg::Ovfl),
        (0i64..4_000_000_000, 0i64..1_000_000_000).prop_map(|(s, n)| Cmsg::Ts(s, n)),
        (0i32..=255).prop_map(Cmsg::Ttl),
        (any::<i32>(), any::<i32>(), vec(any::<u8>(), 0..24))
            .prop_map(|(l, t, d)| Cmsg::Unknown(l, t, d)),
    ]
}

fn encode(c: &Cmsg) -> Vec<u8> {
    match c {
        Cmsg::Pktinfo4 { spec_dst, addr } => {
            let mut d = vec![0u8; 12];
            d[4..8].copy_from_slice(spec_dst);
            d[8..12].copy_from_slice(addr);
            cmsg_bytes(libc::IPPROTO_IP, libc::IP_PKTINFO, &d)
        }
        Cmsg::Pktinfo6 { addr, ifindex } => {
            let mut d = addr.to_vec();
            d.extend_from_slice(&ifindex.to_ne_bytes());
            cmsg_bytes(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &d)
        }
        Cmsg::Ovfl(v) => cmsg_bytes(libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &v.to_ne_bytes()),
        Cmsg::Ts(s, n) => {
            let mut d = s.to_ne_bytes().to_vec();
            d.extend_from_slice(&n.to_ne_bytes());
            cmsg_bytes(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &d)
        }
        Cmsg::Ttl(t) => cmsg_bytes(libc::IPPROTO_IP, libc::IP_TTL, &t.to_ne_bytes()),
        Cmsg::Unknown(l, t, d) => cmsg_bytes(*l, *t, d),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Any bytes at all: decoding never panics.
    #[test]
    fn cmsg_decode_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        let _ = cmsg::decode(&bytes);
    }

    /// Well-formed control messages in any order: the decoder reads back
    /// the last of each kind; cut anywhere, it never panics and reads
    /// nothing that was not there.
    #[test]
    fn cmsg_decode_reads_what_was_encoded(msgs in vec(a_cmsg(), 0..6), cut in any::<prop::sample::Index>()) {
        let bytes: Vec<u8> = msgs.iter().flat_map(encode).collect();
        let rx = cmsg::decode(&bytes);
        let mut want = cmsg::RxControl::default();
        for m in &msgs {
            match m {
                Cmsg::Pktinfo4 { spec_dst, addr } => {
                    want.pktinfo = Some(PktInfo::V4 { spec_dst: *spec_dst });
                    want.v4_header_dst = Some(*addr);
                }
                Cmsg::Pktinfo6 { addr, ifindex } => {
                    want.pktinfo = Some(PktInfo::V6 { addr: *addr, ifindex: *ifindex });
                }
                Cmsg::Ovfl(v) => want.rxq_ovfl = Some(*v),
                Cmsg::Ts(s, n) => want.rx_time_ns = Some(*s as u64 * 1_000_000_000 + *n as u64),
                Cmsg::Ttl(t) => want.ttl = Some(*t as u8),
                Cmsg::Unknown(..) => {}
            }
        }
        // Unknown messages may collide with known (level, type) pairs; only
        // check when they did not.
        let collides = msgs.iter().any(|m| matches!(m, Cmsg::Unknown(l, t, _)
            if [libc::IPPROTO_IP, libc::IPPROTO_IPV6, libc::SOL_SOCKET, libc::SOL_UDP].contains(l)
                && [libc::IP_PKTINFO, libc::IPV6_PKTINFO, libc::SO_RXQ_OVFL, libc::SCM_TIMESTAMPNS,
                    libc::IP_TTL, libc::IPV6_HOPLIMIT, libc::UDP_GRO].contains(t)));
        if !collides {
            prop_assert_eq!(rx.pktinfo, want.pktinfo);
            prop_assert_eq!(rx.v4_header_dst, want.v4_header_dst);
            prop_assert_eq!(rx.rxq_ovfl, want.rxq_ovfl);
            prop_assert_eq!(rx.rx_time_ns, want.rx_time_ns);
            prop_assert_eq!(rx.ttl, want.ttl);
        }
        let _ = cmsg::decode(&bytes[..cut.index(bytes.len() + 1)]);
    }

    /// A reply's pktinfo decodes to what it was built from (the interface
    /// kept only where the kernel needs it).
    #[test]
    fn reply_pktinfo_round_trips(v4 in any::<[u8; 4]>(), v6 in any::<[u8; 16]>(), ifindex in any::<u32>()) {
        let mut out = [0u8; cmsg::TX_CONTROL_LEN];
        let n = cmsg::encode_reply_pktinfo(&PktInfo::V4 { spec_dst: v4 }, &mut out);
        prop_assert_eq!(cmsg::decode(&out[..n]).pktinfo, Some(PktInfo::V4 { spec_dst: v4 }));
        let n = cmsg::encode_reply_pktinfo(&PktInfo::V6 { addr: v6, ifindex }, &mut out);
        let multicast = v6[0] == 0xff;
        let link_local = v6[0] == 0xfe && (v6[1] & 0xc0) == 0x80;
        let want = PktInfo::V6 {
            addr: if multicast { [0; 16] } else { v6 },
            ifindex: if multicast || link_local { ifindex } else { 0 },
        };
        prop_assert_eq!(cmsg::decode(&out[..n]).pktinfo, Some(want));
    }

    /// sockperf: any datagram, any spare room. A reply is the request with
    /// only the CLIENT bit cleared, sent only for a client's pong request of
    /// the right length; every other datagram has one reason.
    #[test]
    fn sockperf_replies_only_to_pong_requests(
        body in vec(any::<u8>(), 0..64),
        plausible in any::<bool>(),
        flags in any::<u16>(),
        spare in 0usize..32,
    ) {
        let mut buf = body.clone();
        let len = buf.len();
        if plausible && len >= sockperf::HEADER_LEN {
            buf[8..10].copy_from_slice(&flags.to_be_bytes());
            buf[10..14].copy_from_slice(&(len as u32).to_be_bytes());
        }
        let request = buf.clone();
        buf.resize(len + spare, 0x5a);
        match sockperf::reflect(&mut buf, len) {
            Verdict::Reply(n) => {
                prop_assert_eq!(n, len);
                let h = sockperf::Header::parse(&request).unwrap();
                prop_assert_eq!(h.length as usize, len);
                prop_assert!(h.flags & sockperf::FLAG_CLIENT != 0 && h.flags & sockperf::FLAG_PONG != 0);
                prop_assert!(h.flags & sockperf::FLAG_WARMUP == 0);
                let mut expect = request.clone();
                expect[9] &= !(sockperf::FLAG_CLIENT as u8);
                prop_assert_eq!(&buf[..n], &expect[..]);
            }
            Verdict::NoReply(r) => {
                prop_assert!(matches!(r, NoReply::TooShort | NoReply::LengthMismatch
                    | NoReply::NotClient | NoReply::Warmup | NoReply::NoPong), "{:?}", r);
                prop_assert_eq!(&buf[..len], &request[..], "a refused datagram is untouched");
            }
        }
    }

    /// STAMP: any datagram. A reply is max(len, 44) bytes, fits the buffer,
    /// decodes, copies the sender's sequence and fields, carries the TTL,
    /// and leaves bytes past 44 as they were.
    #[test]
    fn stamp_replies_decode_and_copy_the_sender(
        body in vec(any::<u8>(), 0..96),
        spare in 0usize..64,
        ttl in proptest::option::of(any::<u8>()),
        t2 in any::<u64>(),
        t3 in any::<u64>(),
    ) {
        let len = body.len();
        let mut buf = body.clone();
        buf.resize(len + spare, 0x77);
        let meta = RxMeta { rx_time_ns: Some(t2), ttl };
        match stamp::reflect(&meta, &mut buf, len, t3) {
            Verdict::Reply(n) => {
                prop_assert_eq!(n, len.max(stamp::REFLECTOR_LEN));
                prop_assert!(n <= buf.len());
                let r = stamp::decode_reflected(&buf[..n]).unwrap();
                let seq = u32::from_be_bytes(body[..4].try_into().unwrap());
                prop_assert_eq!(r.seq, seq, "stateless: the sender's sequence");
                prop_assert_eq!(r.sender_seq, seq);
                prop_assert_eq!(r.ttl, ttl.unwrap_or(stamp::TTL_UNKNOWN));
                prop_assert_eq!(&buf[stamp::field::SENDER_SEQ.start..stamp::field::SENDER_ERROR_ESTIMATE.end],
                    &body[..14]);
                if len > stamp::REFLECTOR_LEN {
                    prop_assert_eq!(&buf[stamp::REFLECTOR_LEN..len], &body[stamp::REFLECTOR_LEN..]);
                }
            }
            Verdict::NoReply(r) => {
                prop_assert!(len < stamp::MIN_REQUEST_LEN || len + spare < stamp::REFLECTOR_LEN, "{:?} for {} + {}", r, len, spare);
            }
        }
    }

    /// Every mode through `reflect`: never a panic, never a reply longer
    /// than the buffer.
    #[test]
    fn every_mode_keeps_replies_within_the_buffer(body in vec(any::<u8>(), 0..128), spare in 0usize..64) {
        for mode in [Mode::Echo, Mode::Discard, Mode::Sockperf, Mode::Stamp] {
            let mut buf = body.clone();
            buf.resize(body.len() + spare, 0);
            if let Verdict::Reply(n) = reflect::reflect(mode, &RxMeta::default(), &mut buf, body.len()) {
                prop_assert!(n <= buf.len(), "{:?}: {} > {}", mode, n, buf.len());
            }
        }
    }
}
