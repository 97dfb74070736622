//! sockperf's UDP wire format, answered as sockperf's own server answers.
//!
//! Every sockperf message starts with a 14-byte header, all fields in network
//! byte order (sockperf's `MsgHeader::hton`), packed without padding:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     sequence number (u64)                     |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          flags (u16)          |     length (u32), the whole   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+    message, header included   +
//! |                               |  payload ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Checked against sockperf 3.7 (Debian 12) on loopback, `tcpdump` of
//! `ping-pong -m 64` and `under-load -m 20`: requests carry flags `0x0003`
//! (CLIENT|PONG), or `0x0001` in under-load except every 100th sequence
//! number; length is the full datagram size (`0x40` for `-m 64`). The server's
//! reply is the request byte for byte with only bit 0 (CLIENT) of the flags
//! cleared: PONG stays set, unknown flag bits stay as they were (`0xfff3`
//! comes back `0xfff2`), sequence number and payload are untouched.
//!
//! sockperf's server parses a UDP socket as a byte stream (the same parser
//! serves TCP): it answers each of several messages packed into one datagram,
//! and a datagram shorter than the header or than its length field makes it
//! wait for more bytes, swallowing the next datagram too. No sockperf client
//! sends such datagrams; here they are counted (`TooShort`, `LengthMismatch`)
//! and never answered, one datagram being one message.

use super::{NoReply, Verdict};

/// Header size: u64 sequence, u16 flags, u32 length.
pub const HEADER_LEN: usize = 14;
/// Set by a client; the server clears it in its reply.
pub const FLAG_CLIENT: u16 = 0x1;
/// The client wants a reply to this message.
pub const FLAG_PONG: u16 = 0x2;
/// Warm-up message (multicast only in sockperf 3.7), never answered.
pub const FLAG_WARMUP: u16 = 0x4;

const FLAGS_AT: usize = 8;
const LENGTH_AT: usize = 10;

/// The fields of a sockperf header, in host order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub flags: u16,
    /// Whole message, header included.
    pub length: u32,
}

impl Header {
    /// Reads the header at the start of `msg`; `None` if it is too short.
    pub fn parse(msg: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_LEN] = msg.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header {
            seq: u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]),
            flags: u16::from_be_bytes([h[8], h[9]]),
            length: u32::from_be_bytes([h[10], h[11], h[12], h[13]]),
        })
    }

    /// Writes the header into the first 14 bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`].
    pub fn write(&self, buf: &mut [u8]) {
        buf[..8].copy_from_slice(&self.seq.to_be_bytes());
        buf[FLAGS_AT..LENGTH_AT].copy_from_slice(&self.flags.to_be_bytes());
        buf[LENGTH_AT..HEADER_LEN].copy_from_slice(&self.length.to_be_bytes());
    }
}

/// Answers `buf[..len]` in place: checks run in the order of sockperf's
/// server (length, CLIENT, WARMUP, PONG), so each datagram has one reason.
#[inline]
pub fn reflect(buf: &mut [u8], len: usize) -> Verdict {
    let Some(h) = buf.get(..len).and_then(Header::parse) else {
        return Verdict::NoReply(NoReply::TooShort);
    };
    if h.length as usize != len {
        return Verdict::NoReply(NoReply::LengthMismatch);
    }
    if h.flags & FLAG_CLIENT == 0 {
        return Verdict::NoReply(NoReply::NotClient);
    }
    if h.flags & FLAG_WARMUP != 0 {
        return Verdict::NoReply(NoReply::Warmup);
    }
    if h.flags & FLAG_PONG == 0 {
        return Verdict::NoReply(NoReply::NoPong);
    }
    // CLIENT is bit 0 of a big-endian u16: the low byte, at offset 9.
    buf[FLAGS_AT + 1] &= !(FLAG_CLIENT as u8);
    Verdict::Reply(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Runs a request through `reflect` in a roomy buffer.
    fn run(req: &[u8]) -> (Verdict, Vec<u8>) {
        let mut buf = vec![0xAA; req.len() + 64];
        buf[..req.len()].copy_from_slice(req);
        let v = reflect(&mut buf, req.len());
        (v, buf[..req.len()].to_vec())
    }

    fn frame(seq: u64, flags: u16, length: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0; HEADER_LEN];
        Header { seq, flags, length }.write(&mut f);
        f.extend_from_slice(payload);
        f
    }

    // Request / reply pairs captured from sockperf 3.7 (`sockperf server`
    // answering `sockperf ping-pong -m 64` and `under-load -m 20`) on lo.
    const PING_PONG_64_REQ: &str = "0000000000000001000300000040968f385c2aecb03bfb32af3c54ec18db5c\
        021afe43fbfaaa3afb29d1e6053c7c9475d8be6189f95cbba8990f95b1ebf1b305";
    const PING_PONG_64_REP: &str = "0000000000000001000200000040968f385c2aecb03bfb32af3c54ec18db5c\
        021afe43fbfaaa3afb29d1e6053c7c9475d8be6189f95cbba8990f95b1ebf1b305";
    const UNDER_LOAD_PONG_REQ: &str = "0000000000000064000300000014b73158a35a25";
    const UNDER_LOAD_PONG_REP: &str = "0000000000000064000200000014b73158a35a25";
    const UNDER_LOAD_NO_PONG: &str = "0000000000000001000100000014b73158a35a25";

    #[test]
    fn captured_ping_pong_reply_is_byte_identical() {
        let req = hex(PING_PONG_64_REQ);
        assert_eq!(req.len(), 64);
        let (v, rep) = run(&req);
        assert_eq!(v, Verdict::Reply(64));
        assert_eq!(rep, hex(PING_PONG_64_REP));
    }

    #[test]
    fn captured_under_load_frames() {
        let (v, rep) = run(&hex(UNDER_LOAD_PONG_REQ));
        assert_eq!(v, Verdict::Reply(20));
        assert_eq!(rep, hex(UNDER_LOAD_PONG_REP));

        let req = hex(UNDER_LOAD_NO_PONG);
        let (v, rep) = run(&req);
        assert_eq!(v, Verdict::NoReply(NoReply::NoPong));
        assert_eq!(rep, req, "a message without reply is left alone");
    }

    #[test]
    fn header_parses_in_network_order() {
        let h = Header::parse(&hex(PING_PONG_64_REQ)).unwrap();
        assert_eq!(
            h,
            Header {
                seq: 1,
                flags: FLAG_CLIENT | FLAG_PONG,
                length: 64
            }
        );
        let h = Header::parse(&hex("0102030405060708a1b2c1c2c3c4")).unwrap();
        assert_eq!(h.seq, 0x0102_0304_0506_0708);
        assert_eq!(h.flags, 0xa1b2);
        assert_eq!(h.length, 0xc1c2_c3c4);
        assert_eq!(Header::parse(&[0; 13]), None);
    }

    #[test]
    fn only_the_client_bit_is_cleared() {
        // sockperf's server answers 0xfff3 with 0xfff2 (probed on 3.7).
        let (v, rep) = run(&hex("0000000000000008fff300000014616263646566"));
        assert_eq!(v, Verdict::Reply(20));
        assert_eq!(rep, hex("0000000000000008fff200000014616263646566"));
        // A header-only message (-m 14) is answered too.
        let (v, rep) = run(&hex("000000000000000c00030000000e"));
        assert_eq!(v, Verdict::Reply(14));
        assert_eq!(rep, hex("000000000000000c00020000000e"));
    }

    #[test]
    fn unanswered_flags_in_sockperf_order() {
        let cases = [
            (0x0002, NoReply::NotClient), // a server's reply looping back
            (0x0000, NoReply::NotClient),
            (0x0006, NoReply::NotClient), // not a client beats warm-up
            (0x0007, NoReply::Warmup),    // warm-up beats PONG
            (0x0005, NoReply::Warmup),
            (0x0001, NoReply::NoPong),
        ];
        for (flags, reason) in cases {
            let req = frame(3, flags, 20, b"abcdef");
            let (v, rep) = run(&req);
            assert_eq!(v, Verdict::NoReply(reason), "flags {flags:#06x}");
            assert_eq!(rep, req);
        }
    }

    #[test]
    fn short_and_mismatched_datagrams_are_not_answered() {
        for len in 0..HEADER_LEN {
            let (v, _) = run(&vec![0; len]);
            assert_eq!(v, Verdict::NoReply(NoReply::TooShort), "len {len}");
        }
        let cases: [(u32, &[u8]); 5] = [
            (100, b"zzzzzzzzzz"), // length beyond the datagram
            (14, b"trailing"),    // trailing bytes (sockperf would parse a 2nd message)
            (16, b"xy\0\0\0\0\0\0\0\0\0\0\0\0\0\x0e"),
            (5, b""), // below the header size
            (0, b""),
        ];
        for (length, payload) in cases {
            let req = frame(15, FLAG_CLIENT | FLAG_PONG, length, payload);
            let (v, rep) = run(&req);
            assert_eq!(
                v,
                Verdict::NoReply(NoReply::LengthMismatch),
                "length {length}"
            );
            assert_eq!(rep, req);
        }
    }

    #[test]
    fn length_check_uses_len_not_buffer_capacity() {
        let req = frame(1, FLAG_CLIENT | FLAG_PONG, 20, b"abcdef");
        let mut buf = vec![0; 200];
        buf[..20].copy_from_slice(&req);
        assert_eq!(reflect(&mut buf, 20), Verdict::Reply(20));
        assert_eq!(
            reflect(&mut buf[..20], 20),
            Verdict::NoReply(NoReply::NotClient)
        );
        buf[9] = 3;
        assert_eq!(
            reflect(&mut buf, 19),
            Verdict::NoReply(NoReply::LengthMismatch)
        );
        assert_eq!(
            reflect(&mut buf, 21),
            Verdict::NoReply(NoReply::LengthMismatch)
        );
    }

    #[test]
    fn large_messages_keep_their_payload() {
        let payload: Vec<u8> = (0..65_000u32).map(|i| (i * 7) as u8).collect();
        let req = frame(
            u64::MAX,
            FLAG_CLIENT | FLAG_PONG,
            (HEADER_LEN + payload.len()) as u32,
            &payload,
        );
        let (v, rep) = run(&req);
        assert_eq!(v, Verdict::Reply(req.len()));
        assert_eq!(rep[9], 0x02);
        assert_eq!(rep[..9], req[..9]);
        assert_eq!(rep[10..], req[10..]);
    }
}
