//! Listening sockets: options the reflector relies on, binding with errors
//! that name the culprit, and the kernel's per-socket drop counter.

use super::cvt;
use std::{
    io,
    net::SocketAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use super::sockaddr;

/// What a listening socket needs beyond its address.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenOptions {
    /// SO_RCVBUF request in bytes (SO_RCVBUFFORCE first, when privileged).
    pub rcvbuf: Option<u32>,
    /// Ask for the received TTL / hop limit on every datagram.
    pub recv_ttl: bool,
    /// SO_INCOMING_CPU: prefer this socket, within its SO_REUSEPORT group,
    /// for packets the kernel processed on this CPU.
    pub incoming_cpu: Option<usize>,
    /// UDP_GRO: receive a flow's train of datagrams in one read.
    pub gro: bool,
    /// SO_BUSY_POLL and SO_PREFER_BUSY_POLL, where permitted.
    pub busy_poll: bool,
}

/// SO_BUSY_POLL's value with --busy-poll: how long, in microseconds, a
/// receive may spin on the device queue (the value the kernel's
/// documentation suggests, Documentation/networking/napi.rst).
const BUSY_POLL_USEC: i32 = 50;
/// SO_PREFER_BUSY_POLL from include/uapi/asm-generic/socket.h (Linux >= 5.11).
const SO_PREFER_BUSY_POLL: i32 = 69;

/// Checks that this kernel takes UDP_GRO (Linux >= 5.0; ENOPROTOOPT before).
pub fn probe_gro() -> io::Result<()> {
    let fd = new_udp_socket(&SocketAddr::from(([127, 0, 0, 1], 0)))?;
    setsockopt_int(fd.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Says once per process that busy polling on sockets was refused.
fn warn_busy_poll(e: &io::Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "udp-reflector: --busy-poll: SO_BUSY_POLL refused ({e}; it needs CAP_NET_ADMIN); workers still poll without sleeping"
        )
    });
}

/// SO_INCOMING_CPU from include/uapi/asm-generic/socket.h (not in libc).
const SO_INCOMING_CPU: i32 = 49;

/// setsockopt of one `int` option.
pub(crate) fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: reads the stated size (one int) from a live i32.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: writes at most `len` bytes into the live buffer given, and its length into `len`.
    cvt(unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) })?;
    Ok(value)
}

/// A non-blocking UDP socket of `addr`'s family.
fn udp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket takes no pointers.
    let fd = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A non-blocking UDP socket connected to `target`: the kernel picks the
/// source address and port, and only datagrams from `target` are received.
pub fn connected_udp_socket(target: &SocketAddr) -> io::Result<OwnedFd> {
    let fd = udp_socket(target)?;
    let addr = sockaddr::to_raw(target);
    // A non-blocking UDP connect completes at once: it only sets the peer.
    // SAFETY: `addr` is a valid sockaddr of `addr.len` bytes, alive for the call.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr(), addr.len) })?;
    Ok(fd)
}

fn new_udp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let fd = udp_socket(addr)?;
    if addr.is_ipv6() {
        // Separate IPv4 and IPv6 sockets: never rely on v4-mapped dual stack.
        setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    Ok(fd)
}

fn bind(fd: &OwnedFd, addr: &SocketAddr) -> io::Result<()> {
    let raw = sockaddr::to_raw(addr);
    // SAFETY: `raw` is a valid sockaddr of `raw.len` bytes, alive for the call.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), raw.as_ptr(), raw.len) }).map(drop)
}

/// Which step of [`open_listener`] failed.
#[derive(Debug)]
pub enum ListenError {
    /// Setting a socket option.
    Options(io::Error),
    /// Creating the socket or binding it (EADDRINUSE, EADDRNOTAVAIL, ...).
    Bind(io::Error),
}

/// The address a socket is bound to.
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: writes at most `len` bytes into `storage`, a live sockaddr_storage of that size.
    cvt(unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    // SAFETY: the kernel initialised `len` bytes of `storage`, len <= its size.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&storage as *const libc::sockaddr_storage).cast::<u8>(),
            len as usize,
        )
    };
    sockaddr::from_bytes(bytes).ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

/// Whether this host has IPv6 sockets at all: `Err` (EAFNOSUPPORT) when the
/// kernel was booted with ipv6.disable=1 or built without IPv6. Binds nothing.
pub fn ipv6_available() -> io::Result<()> {
    match new_udp_socket(&SocketAddr::from(([0u16; 8], 0))) {
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => Err(e),
        // Any other failure (fd limit, ...) is for the bind to report.
        _ => Ok(()),
    }
}

/// Checks that nobody holds `addr` and resolves port 0 to a free port.
///
/// Binds without SO_REUSEPORT, so any socket already on the port, even
/// another reflector's SO_REUSEPORT group, makes it fail: two reflectors
/// would otherwise silently split the traffic between them.
pub fn claim_port(addr: &SocketAddr) -> io::Result<SocketAddr> {
    let fd = new_udp_socket(addr)?;
    bind(&fd, addr)?;
    local_addr(fd.as_raw_fd())
}

/// Opens one worker's SO_REUSEPORT socket on `addr` (a resolved port) with
/// every receive option the reflector reads: IP_PKTINFO / IPV6_RECVPKTINFO
/// (wildcard addresses only), SO_RXQ_OVFL, SO_TIMESTAMPNS, and the TTL when
/// asked for.
pub fn open_listener(addr: &SocketAddr, opts: &ListenOptions) -> Result<OwnedFd, ListenError> {
    let setup = |fd: RawFd| -> io::Result<()> {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        // The destination address is only unknown to a wildcard socket; a
        // socket bound to one address replies from it without pktinfo.
        let wildcard = addr.ip().is_unspecified();
        if addr.is_ipv4() {
            if wildcard {
                setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
            }
            if opts.recv_ttl {
                setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
            }
        } else {
            if wildcard {
                setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            }
            if opts.recv_ttl {
                setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
            }
        }
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)?;
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
        if opts.gro {
            setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1)?;
        }
        if opts.busy_poll {
            // Raising SO_BUSY_POLL above net.core.busy_read, and preferring
            // busy polling, need CAP_NET_ADMIN (net/core/sock.c): EPERM
            // otherwise, which only costs the device-queue polling.
            let set = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, BUSY_POLL_USEC)
                .and_then(|()| setsockopt_int(fd, libc::SOL_SOCKET, SO_PREFER_BUSY_POLL, 1));
            if let Err(e) = set {
                warn_busy_poll(&e);
            }
        }
        if let Some(cpu) = opts.incoming_cpu {
            // Before bind: a reuseport group notes at join time that some
            // member steers by CPU (net/core/sock_reuseport.c).
            setsockopt_int(fd, libc::SOL_SOCKET, SO_INCOMING_CPU, cpu as i32)?;
        }
        if let Some(bytes) = opts.rcvbuf {
            // The kernel doubles the request and clamps it at net.core.rmem_max
            // unless forced; the reporter prints what was granted.
            let want = (bytes.min(i32::MAX as u32 / 2)) as i32;
            if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want).is_err() {
                setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, want)?;
            }
        }
        Ok(())
    };
    let fd = new_udp_socket(addr).map_err(ListenError::Bind)?;
    setup(fd.as_raw_fd()).map_err(ListenError::Options)?;
    bind(&fd, addr).map_err(ListenError::Bind)?;
    Ok(fd)
}

/// The receive buffer the kernel granted (SO_RCVBUF, already doubled).
pub fn rcvbuf(fd: RawFd) -> io::Result<u32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).map(|v| v as u32)
}

/// The socket's cumulative drop counter (SK_MEMINFO_DROPS), the same that
/// SO_RXQ_OVFL reports and /proc/net/udp shows as `drops`.
pub fn meminfo_drops(fd: RawFd) -> io::Result<u32> {
    // SK_MEMINFO_VARS is 9 today; leave room for fields added later.
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: writes at most `len` bytes into the live buffer given, and its length into `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    if (len as usize) <= libc::SK_MEMINFO_DROPS as usize * 4 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(info[libc::SK_MEMINFO_DROPS as usize])
}

/// A connected AF_UNIX datagram pair, for probing kernel features without
/// touching any network.
pub fn socketpair_dgram() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: writes two descriptors into `fds`, a live [c_int; 2].
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair returned two fresh descriptors that nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one byte on a connected socket.
pub fn send_byte(fd: &OwnedFd) -> io::Result<()> {
    let b = [0u8; 1];
    // SAFETY: sends 1 byte from a live 1-byte array.
    cvt(unsafe { libc::send(fd.as_raw_fd(), b.as_ptr().cast(), 1, 0) }).map(drop)
}
