//! Control messages: a checked decoder for what the kernel attached to a
//! received datagram, and an encoder for the source-address cmsg of a reply.
//!
//! Both work on byte slices; no pointer arithmetic. Layout per
//! include/uapi/linux/socket.h: `struct cmsghdr { size_t len; int level; int type; }`
//! followed by data, each message aligned to `sizeof(size_t)`.

use std::mem::size_of;

const ALIGN: usize = size_of::<usize>();
const HDR: usize = size_of::<libc::cmsghdr>();

const fn align(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// CMSG_SPACE(n).
pub const fn space(n: usize) -> usize {
    align(HDR) + align(n)
}

/// Control space of every cmsg a listening socket asks for (see
/// `sys::socket`), for the larger family: IPV6_PKTINFO, SO_RXQ_OVFL,
/// SCM_TIMESTAMPNS, IPV6_HOPLIMIT and UDP_GRO. A socket that asks for one
/// more control message must add it here.
pub const RX_CONTROL_NEEDED: usize = space(size_of::<libc::in6_pktinfo>())
    + space(size_of::<u32>())
    + space(size_of::<libc::timespec>())
    + space(size_of::<libc::c_int>())
    + space(size_of::<libc::c_int>());

/// Control area for received datagrams: what is asked for, with room to
/// spare; a multiple of 8. A datagram whose control data still does not
/// fit comes with MSG_CTRUNC and is not answered (`no_reply_ctrunc`).
pub const RX_CONTROL_LEN: usize = 192;

const _: () = assert!(
    RX_CONTROL_LEN >= RX_CONTROL_NEEDED && RX_CONTROL_LEN % 8 == 0,
    "RX_CONTROL_LEN must hold every cmsg requested (CMSG_SPACE of each)"
);

/// Room for the largest reply pktinfo (in6_pktinfo).
pub const PKTINFO_SPACE: usize = space(size_of::<libc::in6_pktinfo>());

/// Control area of one reply message: a pktinfo, then a UDP_SEGMENT size.
pub const TX_CONTROL_LEN: usize = PKTINFO_SPACE + space(size_of::<u16>());

/// The local address a datagram arrived at, from IP_PKTINFO / IPV6_PKTINFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PktInfo {
    /// `ipi_spec_dst`: the local address to answer from.
    V4 { spec_dst: [u8; 4] },
    /// `ipi6_addr` and `ipi6_ifindex`.
    V6 { addr: [u8; 16], ifindex: u32 },
}

/// Everything the reflector reads from a datagram's control messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxControl {
    pub pktinfo: Option<PktInfo>,
    /// The socket's cumulative drop count (SO_RXQ_OVFL); absent until the first drop.
    pub rxq_ovfl: Option<u32>,
    /// SCM_TIMESTAMPNS, CLOCK_REALTIME nanoseconds.
    pub rx_time_ns: Option<u64>,
    /// IP_TTL or IPV6_HOPLIMIT.
    pub ttl: Option<u8>,
    /// UDP_GRO: the payload is a train of datagrams of this size (the last
    /// may be shorter), merged by GRO (net/ipv4/udp.c, udp_cmsg_recv).
    pub gro_segment: Option<u16>,
    /// IP_PKTINFO's `ipi_addr`: the IPv4 header's destination (a broadcast
    /// or multicast address when the datagram was sent to one).
    pub v4_header_dst: Option<[u8; 4]>,
}

fn read_i32(d: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(d.get(..4)?.try_into().ok()?))
}

fn read_i64(d: &[u8]) -> Option<i64> {
    Some(i64::from_ne_bytes(d.get(..8)?.try_into().ok()?))
}

/// Decodes the control messages the reflector asks for; unknown or
/// malformed ones are skipped, never trusted past the slice's end.
pub fn decode(control: &[u8]) -> RxControl {
    let mut out = RxControl::default();
    let mut rest = control;
    while rest.len() >= HDR {
        let len = usize::from_ne_bytes(rest[..ALIGN].try_into().expect("ALIGN bytes"));
        if len < HDR || len > rest.len() {
            break;
        }
        let level = i32::from_ne_bytes(rest[ALIGN..ALIGN + 4].try_into().expect("4 bytes"));
        let kind = i32::from_ne_bytes(rest[ALIGN + 4..ALIGN + 8].try_into().expect("4 bytes"));
        let data = &rest[align(HDR)..len];
        match (level, kind) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO) if data.len() >= 12 => {
                // struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
                out.pktinfo = Some(PktInfo::V4 {
                    spec_dst: data[4..8].try_into().expect("4 bytes"),
                });
                out.v4_header_dst = Some(data[8..12].try_into().expect("4 bytes"));
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if data.len() >= 20 => {
                // struct in6_pktinfo { in6_addr ipi6_addr; unsigned ipi6_ifindex; }
                out.pktinfo = Some(PktInfo::V6 {
                    addr: data[..16].try_into().expect("16 bytes"),
                    ifindex: u32::from_ne_bytes(data[16..20].try_into().expect("4 bytes")),
                });
            }
            (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                out.rxq_ovfl = read_i32(data).map(|v| v as u32);
            }
            (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                if let (Some(sec), Some(nsec)) = (read_i64(data), data.get(8..).and_then(read_i64))
                {
                    out.rx_time_ns = Some(super::clock::timespec_ns(sec, nsec));
                }
            }
            (libc::IPPROTO_IP, libc::IP_TTL) | (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                out.ttl = read_i32(data).map(|v| v.clamp(0, 255) as u8);
            }
            (libc::SOL_UDP, libc::UDP_GRO) => {
                // An int holding gso_size; 0 (never sent) means no train.
                out.gro_segment = read_i32(data)
                    .and_then(|v| u16::try_from(v).ok())
                    .filter(|&v| v > 0);
            }
            _ => {}
        }
        let next = space(len - align(HDR));
        if next >= rest.len() {
            break;
        }
        rest = &rest[next..];
    }
    out
}

fn put_header(out: &mut [u8], level: i32, kind: i32, data_len: usize) {
    out[..ALIGN].copy_from_slice(&(align(HDR) + data_len).to_ne_bytes());
    out[ALIGN..ALIGN + 4].copy_from_slice(&level.to_ne_bytes());
    out[ALIGN + 4..ALIGN + 8].copy_from_slice(&kind.to_ne_bytes());
}

/// Writes the pktinfo cmsg that makes a reply leave from the address the
/// request reached; returns the control length to give the kernel.
///
/// IPv4: `ipi_spec_dst` = the received `ipi_spec_dst` (never `ipi_addr`, which
/// may be a broadcast or multicast header address), `ipi_ifindex` = 0.
/// IPv6: `ipi6_addr` = the received destination (unspecified if it was
/// multicast); the interface is kept for link-local and multicast only.
///
/// `out` must hold at least [`PKTINFO_SPACE`] bytes.
pub fn encode_reply_pktinfo(pi: &PktInfo, out: &mut [u8]) -> usize {
    out[..PKTINFO_SPACE].fill(0);
    match *pi {
        PktInfo::V4 { spec_dst } => {
            let data_len = size_of::<libc::in_pktinfo>();
            put_header(out, libc::IPPROTO_IP, libc::IP_PKTINFO, data_len);
            let d = align(HDR);
            out[d + 4..d + 8].copy_from_slice(&spec_dst);
            space(data_len)
        }
        PktInfo::V6 { addr, ifindex } => {
            let data_len = size_of::<libc::in6_pktinfo>();
            put_header(out, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, data_len);
            let d = align(HDR);
            let multicast = addr[0] == 0xff;
            let link_local = addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80;
            if !multicast {
                out[d..d + 16].copy_from_slice(&addr);
            }
            let keep_if = if multicast || link_local { ifindex } else { 0 };
            out[d + 16..d + 20].copy_from_slice(&keep_if.to_ne_bytes());
            space(data_len)
        }
    }
}

/// Writes a UDP_SEGMENT cmsg: the message's payload is a GSO train of
/// `segment`-byte datagrams. Returns its length; `out` must hold
/// `space(2)` bytes.
pub fn encode_udp_segment(segment: u16, out: &mut [u8]) -> usize {
    let n = space(size_of::<u16>());
    out[..n].fill(0);
    put_header(out, libc::SOL_UDP, libc::UDP_SEGMENT, size_of::<u16>());
    out[align(HDR)..align(HDR) + 2].copy_from_slice(&segment.to_ne_bytes());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; space(data.len())];
        put_header(&mut v, level, kind, data.len());
        v[align(HDR)..align(HDR) + data.len()].copy_from_slice(data);
        v
    }

    #[test]
    fn decodes_every_control_message_the_reflector_reads() {
        let mut pk = vec![0u8; 12];
        pk[4..8].copy_from_slice(&[127, 0, 0, 2]);
        pk[8..12].copy_from_slice(&[255, 255, 255, 255]);
        let mut ts = 5i64.to_ne_bytes().to_vec();
        ts.extend_from_slice(&7i64.to_ne_bytes());
        let mut buf = cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &pk);
        buf.extend(cmsg(
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            &9u32.to_ne_bytes(),
        ));
        buf.extend(cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &ts));
        buf.extend(cmsg(libc::IPPROTO_IP, libc::IP_TTL, &64i32.to_ne_bytes()));
        buf.extend(cmsg(libc::SOL_UDP, libc::UDP_GRO, &1472i32.to_ne_bytes()));
        let rx = decode(&buf);
        assert_eq!(
            rx.pktinfo,
            Some(PktInfo::V4 {
                spec_dst: [127, 0, 0, 2]
            })
        );
        assert_eq!(rx.v4_header_dst, Some([255; 4]));
        assert_eq!(rx.rxq_ovfl, Some(9));
        assert_eq!(rx.rx_time_ns, Some(5_000_000_007));
        assert_eq!(rx.ttl, Some(64));
        assert_eq!(rx.gro_segment, Some(1472));
    }

    #[test]
    fn malformed_control_data_is_skipped_not_trusted() {
        let mut buf = cmsg(libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &9u32.to_ne_bytes());
        buf[..ALIGN].copy_from_slice(&1000usize.to_ne_bytes()); // longer than the slice
        assert_eq!(decode(&buf), RxControl::default());
        assert_eq!(decode(&buf[..5]), RxControl::default());
        assert_eq!(decode(&[]), RxControl::default());
    }

    #[test]
    fn reply_pktinfo_keeps_interface_only_where_the_kernel_needs_it() {
        let mut out = [0u8; TX_CONTROL_LEN];
        let addr = "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        let n = encode_reply_pktinfo(&PktInfo::V6 { addr, ifindex: 4 }, &mut out);
        assert_eq!(n, PKTINFO_SPACE);
        assert_eq!(
            decode(&out[..n]).pktinfo,
            Some(PktInfo::V6 { addr, ifindex: 0 })
        );
        let ll = PktInfo::V6 {
            addr: "fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            ifindex: 4,
        };
        encode_reply_pktinfo(&ll, &mut out);
        assert_eq!(decode(&out).pktinfo, Some(ll));
        let v4 = PktInfo::V4 {
            spec_dst: [198, 51, 100, 7],
        };
        let n = encode_reply_pktinfo(&v4, &mut out);
        assert_eq!(decode(&out[..n]).pktinfo, Some(v4));
    }

    #[test]
    fn udp_segment_follows_a_pktinfo_in_one_control_area() {
        let mut out = [0xffu8; TX_CONTROL_LEN];
        let v4 = PktInfo::V4 {
            spec_dst: [198, 51, 100, 7],
        };
        let n = encode_reply_pktinfo(&v4, &mut out);
        let m = encode_udp_segment(1472, &mut out[n..]);
        assert!(n + m <= TX_CONTROL_LEN);
        assert_eq!(decode(&out[..n + m]).pktinfo, Some(v4));
        let seg = &out[n..n + m];
        assert_eq!(seg[..ALIGN], (align(HDR) + 2).to_ne_bytes());
        assert_eq!(seg[ALIGN..ALIGN + 4], libc::SOL_UDP.to_ne_bytes());
        assert_eq!(seg[ALIGN + 4..ALIGN + 8], libc::UDP_SEGMENT.to_ne_bytes());
        assert_eq!(seg[align(HDR)..align(HDR) + 2], 1472u16.to_ne_bytes());
    }
}
