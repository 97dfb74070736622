//! UDP generic segmentation offload (`UDP_SEGMENT`): what a refused train means.

use std::io;

/// Whether `e`, returned for a message that carried a UDP GSO train, says
/// that the route cannot take trains at all, so that the same datagrams sent
/// one by one will go: EINVAL (segment plus headers above the route MTU, too
/// many segments, checksums off; `udp_send_skb` in net/ipv4/udp.c), EIO (the
/// device cannot checksum a train, or xfrm) and EMSGSIZE. Any other errno
/// (EPERM from a netfilter rule, EACCES, ENETUNREACH, EBADF...) is about that
/// one message or peer, not about GSO.
pub fn route_refuses_train(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EMSGSIZE | libc::EIO)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_route_wide_errnos_refuse_trains() {
        for errno in [libc::EINVAL, libc::EMSGSIZE, libc::EIO] {
            assert!(route_refuses_train(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [
            libc::EPERM,
            libc::EACCES,
            libc::ENETUNREACH,
            libc::EHOSTUNREACH,
            libc::EBADF,
            libc::EAGAIN,
            libc::ECONNREFUSED,
        ] {
            assert!(!route_refuses_train(&io::Error::from_raw_os_error(errno)));
        }
        assert!(!route_refuses_train(&io::Error::other("not an errno")));
    }
}
