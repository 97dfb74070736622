//! The bench datagram: a 32-byte header, then a fixed byte pattern.
//!
//! ```text
//!  0      4      8       10     12              20              28      32
//!  | magic | run  | flags | flow |      seq      |    sent_ns    | check |  pattern ...
//! ```
//!
//! All fields are big-endian. `magic` and `run` (random per run) tell our
//! echoes from anything else arriving on the socket, including echoes of an
//! earlier run; `check` (FNV-1a over the first 28 bytes) tells a damaged
//! header from a foreign one. `sent_ns` is the sender's monotonic clock, so
//! an RFC 862 echo server needs to understand nothing: it only returns bytes.
//! The pattern after the header depends only on the byte offset, so senders
//! write it once per buffer and receivers compare with one `memcmp`.

/// Bytes of the header; the smallest `--size`.
pub const HEADER_LEN: usize = 32;
/// "URB1".
pub const MAGIC: u32 = 0x5552_4231;
/// Set on datagrams sent during `--warmup`.
pub const FLAG_WARMUP: u16 = 0x0001;

/// Which part of the run a datagram was sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Warmup = 0,
    Measured = 1,
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub run: u32,
    pub flags: u16,
    pub flow: u16,
    pub seq: u64,
    pub sent_ns: u64,
}

/// Why a received datagram is not an intact echo of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not ours: too short for a header, another magic, or another run.
    Invalid,
    /// Ours, but damaged: bad header check, wrong length, cut by the kernel,
    /// wrong flow, or a pattern byte changed.
    Corrupt,
}

impl Header {
    pub fn phase(&self) -> Phase {
        if self.flags & FLAG_WARMUP != 0 {
            Phase::Warmup
        } else {
            Phase::Measured
        }
    }

    /// Writes the header, check included, into the first [`HEADER_LEN`]
    /// bytes of `buf`. Panics if `buf` is shorter (a sizing bug, not input).
    pub fn encode(&self, buf: &mut [u8]) {
        let h = &mut buf[..HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        h[4..8].copy_from_slice(&self.run.to_be_bytes());
        h[8..10].copy_from_slice(&self.flags.to_be_bytes());
        h[10..12].copy_from_slice(&self.flow.to_be_bytes());
        h[12..20].copy_from_slice(&self.seq.to_be_bytes());
        h[20..28].copy_from_slice(&self.sent_ns.to_be_bytes());
        let check = fnv1a(&h[..28]);
        h[28..32].copy_from_slice(&check.to_be_bytes());
    }

    /// Reads a header of run `run` from the start of `buf`.
    pub fn decode(buf: &[u8], run: u32) -> Result<Header, Reject> {
        let Some(h) = buf.get(..HEADER_LEN) else {
            return Err(Reject::Invalid);
        };
        let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        if u32_at(0) != MAGIC || u32_at(4) != run {
            return Err(Reject::Invalid);
        }
        if u32_at(28) != fnv1a(&h[..28]) {
            return Err(Reject::Corrupt);
        }
        Ok(Header {
            run,
            flags: u16::from_be_bytes([h[8], h[9]]),
            flow: u16::from_be_bytes([h[10], h[11]]),
            seq: u64_at(12),
            sent_ns: u64_at(20),
        })
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A `size`-byte datagram template: a zero header, then the pattern.
pub fn template(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| {
            if i < HEADER_LEN {
                0
            } else {
                (i as u32).wrapping_mul(0x9E37_79B1).to_be_bytes()[0]
            }
        })
        .collect()
}

/// What a flow's receiver expects of every echo.
#[derive(Debug, Clone)]
pub struct Expect {
    pub run: u32,
    template: Vec<u8>,
}

impl Expect {
    pub fn new(run: u32, size: usize) -> Expect {
        Expect {
            run,
            template: template(size),
        }
    }

    /// Checks one received datagram of flow `flow`; `truncated` is the
    /// kernel's MSG_TRUNC for it.
    pub fn check(&self, datagram: &[u8], truncated: bool, flow: u16) -> Result<Header, Reject> {
        let h = Header::decode(datagram, self.run)?;
        if truncated
            || h.flow != flow
            || datagram.len() != self.template.len()
            || datagram[HEADER_LEN..] != self.template[HEADER_LEN..]
        {
            return Err(Reject::Corrupt);
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(h: &Header, size: usize) -> Vec<u8> {
        let mut d = template(size);
        h.encode(&mut d);
        d
    }

    const H: Header = Header {
        run: 0xdead_beef,
        flags: FLAG_WARMUP,
        flow: 7,
        seq: 1 << 40,
        sent_ns: 123,
    };

    #[test]
    fn header_round_trips_in_network_order() {
        let d = datagram(&H, 64);
        assert_eq!(&d[..4], b"URB1");
        assert_eq!(d[11], 7, "flow, big-endian");
        assert_eq!(&d[12..20], &(1u64 << 40).to_be_bytes());
        assert_eq!(Header::decode(&d, H.run), Ok(H));
        assert_eq!(H.phase(), Phase::Warmup);
        assert_eq!(Header { flags: 0, ..H }.phase(), Phase::Measured);
    }

    #[test]
    fn foreign_datagrams_are_invalid_and_damaged_ones_corrupt() {
        let d = datagram(&H, 64);
        assert_eq!(
            Header::decode(&d[..31], H.run),
            Err(Reject::Invalid),
            "short"
        );
        assert_eq!(
            Header::decode(&d, H.run + 1),
            Err(Reject::Invalid),
            "earlier run"
        );
        let mut m = d.clone();
        m[0] ^= 1;
        assert_eq!(Header::decode(&m, H.run), Err(Reject::Invalid), "magic");
        for i in 8..32 {
            let mut c = d.clone();
            c[i] ^= 0x10;
            assert_eq!(Header::decode(&c, H.run), Err(Reject::Corrupt), "byte {i}");
        }
    }

    #[test]
    fn echoes_are_checked_byte_for_byte() {
        let e = Expect::new(H.run, 100);
        let d = datagram(&H, 100);
        assert_eq!(e.check(&d, false, 7), Ok(H));
        assert_eq!(
            e.check(&d, true, 7),
            Err(Reject::Corrupt),
            "cut by the kernel"
        );
        assert_eq!(
            e.check(&d, false, 8),
            Err(Reject::Corrupt),
            "another flow's socket"
        );
        assert_eq!(e.check(&d[..99], false, 7), Err(Reject::Corrupt), "short");
        let mut long = d.clone();
        long.push(0);
        assert_eq!(e.check(&long, false, 7), Err(Reject::Corrupt), "long");
        let mut flipped = d.clone();
        flipped[99] ^= 0x80;
        assert_eq!(e.check(&flipped, false, 7), Err(Reject::Corrupt), "pattern");
        assert_eq!(e.check(b"hello", false, 7), Err(Reject::Invalid));
        // The pattern is not constant: a stuck byte shows.
        let t = template(64);
        assert!(t[HEADER_LEN..].windows(2).any(|w| w[0] != w[1]));
        assert_eq!(
            Expect::new(1, HEADER_LEN)
                .check(&datagram(&Header { run: 1, ..H }, 32), false, 7)
                .map(|h| h.seq),
            Ok(1 << 40)
        );
    }
}
