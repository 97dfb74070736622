//! Limits of UDP that the kernel enforces, each stated once with its source.

/// Largest UDP payload over IPv4: the 16-bit IP total length less the IPv4
/// (20) and UDP (8) headers, 65535 - 20 - 8.
pub const MAX_PAYLOAD_V4: usize = 65_507;

/// Largest UDP payload over IPv6 without jumbograms: the 16-bit payload
/// length (which excludes the 40-byte IPv6 header) less the UDP header,
/// 65535 - 8.
pub const MAX_PAYLOAD_V6: usize = 65_527;

/// Most datagrams in one UDP GSO train (`UDP_SEGMENT`): `UDP_MAX_SEGMENTS`
/// in include/linux/udp.h, 64 (`1 << 6`) from UDP GSO's introduction in
/// Linux 4.18; Linux 6.9 raised it to 128 (commit 1382e3b6a350, "net: change
/// maximum number of UDP segments to 128", also backported to some stable
/// series). 64 is what every kernel with UDP GSO accepts; `udp_send_skb`
/// (net/ipv4/udp.c) refuses a longer train with EINVAL.
pub const GSO_MAX_SEGMENTS: usize = 64;

/// Most payload bytes in one GSO train: the train leaves as one UDP datagram
/// before segmentation, so it must fit an IPv4 one ([`MAX_PAYLOAD_V4`]; over
/// IPv6 this keeps 20 bytes in hand).
pub const GSO_MAX_BYTES: usize = MAX_PAYLOAD_V4;
