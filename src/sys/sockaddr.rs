//! Conversions between `SocketAddr` and the kernel's sockaddr bytes, in one place.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Bytes reserved for a peer address: sockaddr_in6 (28) rounded up to 8.
pub const NAME_LEN: usize = 32;

/// A sockaddr the kernel can read, and its length.
pub struct RawAddr {
    pub storage: libc::sockaddr_storage,
    pub len: libc::socklen_t,
}

impl RawAddr {
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }
}

pub fn to_raw(addr: &SocketAddr) -> RawAddr {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    RawAddr {
        storage,
        len: len as libc::socklen_t,
    }
}

/// Decodes a sockaddr_in or sockaddr_in6 written by the kernel; `None` for
/// anything else or a short buffer.
pub fn from_bytes(b: &[u8]) -> Option<SocketAddr> {
    if b.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([b[0], b[1]]) as i32;
    let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
    match family {
        libc::AF_INET if b.len() >= 8 => {
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port(b))))
        }
        libc::AF_INET6 if b.len() >= 28 => {
            let flow = u32::from_ne_bytes(b[4..8].try_into().ok()?);
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&b[8..24]).ok()?);
            let scope = u32::from_ne_bytes(b[24..28].try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port(b), flow, scope)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for s in [
            "127.0.0.1:7007",
            "[::1]:9",
            "[fe80::1%3]:65535",
            "0.0.0.0:0",
        ] {
            let a: SocketAddr = s.parse().unwrap();
            let raw = to_raw(&a);
            // SAFETY: `raw.storage` is initialised for `raw.len` bytes.
            let bytes =
                unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len as usize) };
            assert_eq!(from_bytes(bytes), Some(a));
        }
        assert_eq!(from_bytes(&[0; 1]), None);
        assert_eq!(from_bytes(&(libc::AF_INET6 as u16).to_ne_bytes()), None);
    }
}
