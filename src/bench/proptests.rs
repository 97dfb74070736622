//! Property tests of what bench reads off the wire: its own header and
//! STAMP replies. Random bytes never panic a check; what bench writes, it
//! reads back; any damaged header byte is caught.
//!
//! 10^4 cases per property by default (`PROPTEST_CASES` for more).

use proptest::{collection::vec, prelude::*};

use super::{
    header::{Expect, Header, Reject, HEADER_LEN},
    stamp,
};
use crate::reflect::{stamp as wire, RxMeta, Verdict};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// A header reads back as written; any one byte of it changed is
    /// rejected (another magic or run: Invalid; else the check: Corrupt).
    #[test]
    fn headers_round_trip_and_any_damage_is_caught(
        run in any::<u32>(), flags in any::<u16>(), flow in any::<u16>(),
        seq in any::<u64>(), sent_ns in any::<u64>(),
        at in 0usize..HEADER_LEN, flip in 1u8..=255,
    ) {
        let h = Header { run, flags, flow, seq, sent_ns };
        let mut buf = [0u8; HEADER_LEN];
        h.encode(&mut buf);
        prop_assert_eq!(Header::decode(&buf, run), Ok(h));
        buf[at] ^= flip;
        prop_assert!(Header::decode(&buf, run).is_err());
    }

    /// Random datagrams never panic a check, and are never taken for an
    /// intact echo of a run (the header's check would have to match).
    #[test]
    fn random_datagrams_are_never_intact_echoes(
        d in vec(any::<u8>(), 0..128), truncated in any::<bool>(), flow in any::<u16>(),
        run in any::<u32>(), size in 32usize..128,
    ) {
        let e = Expect::new(run, size);
        if let Ok(h) = e.check(&d, truncated, flow) {
            // Possible only if the bytes happen to be a valid header of this
            // run and flow followed by the pattern: then it is one.
            prop_assert_eq!(h.run, run);
            prop_assert!(!truncated && d.len() == size);
        }
        let _ = stamp::check(&d, truncated, size);
    }

    /// What bench sends to a STAMP reflector comes back, through our own
    /// reflector, as a reply that passes bench's check with its sequence.
    #[test]
    fn stamp_requests_reflect_into_replies_bench_accepts(
        seq in any::<u32>(), t1 in 1u64..u64::MAX / 2, size in 44usize..128,
        ttl in any::<u8>(), dt in 1u64..1_000_000_000,
    ) {
        let mut buf = vec![0u8; size];
        let n = wire::encode_sender(seq, t1, &mut buf).unwrap();
        prop_assert_eq!(n, wire::SENDER_LEN);
        let meta = RxMeta { rx_time_ns: Some(t1 + dt), ttl: Some(ttl) };
        prop_assert_eq!(wire::reflect(&meta, &mut buf, size, t1 + 2 * dt), Verdict::Reply(size));
        let r = stamp::check(&buf, false, size);
        prop_assert!(r.is_ok(), "{:?}", r);
        let r = r.unwrap();
        prop_assert_eq!((r.seq, r.sender_seq, r.ttl), (seq, seq, ttl));
        prop_assert_eq!(stamp::check(&buf, true, size).err(), Some(Reject::Corrupt));
    }
}
