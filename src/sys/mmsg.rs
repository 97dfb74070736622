//! recvmmsg / sendmmsg and poll, thin wrappers whose callers own the buffers.

use super::cvt;
use std::{io, os::fd::RawFd};

use super::sockaddr::NAME_LEN;

/// Sends `msgs` with one `sendmmsg`; returns how many left (at least one) or
/// the error of the first that could not.
///
/// # Safety
/// Every `msg_hdr` in `msgs` must point to a valid name, iovec array and
/// control buffer for the lengths it states, all alive for the call.
pub unsafe fn sendmmsg(fd: RawFd, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let n = msgs.len().min(u32::MAX as usize) as libc::c_uint;
    // SAFETY: forwarded to the caller, see `# Safety`.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Receives up to `msgs.len()` datagrams without blocking. With MSG_TRUNC,
/// each `msg_len` is the datagram's full length even when it did not fit.
///
/// # Safety
/// Every `msg_hdr` in `msgs` must point to writable name, iovec and control
/// buffers of the lengths it states, alive for the call.
pub unsafe fn recvmmsg(fd: RawFd, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let n = msgs.len().min(u32::MAX as usize) as libc::c_uint;
    // SAFETY: forwarded to the caller, see `# Safety`; a null timeout is allowed.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Waits up to `timeout_ms` for any of `fds` to be readable; fills
/// `revents` in place and returns how many are ready.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a live, writable array of `fds.len()` pollfds.
    cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) })
        .map(|n| n as usize)
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data; all-zero (null pointers, zero lengths) is valid.
    unsafe { std::mem::zeroed() }
}

/// The recvmmsg slot layout, for the reflector's mmsg backend and for bench:
/// per slot a payload area of `stride` bytes and, when asked for, room for
/// the peer's address and for control messages. The headers point into
/// this struct only during [`RecvSlots::recv`], which exclusively borrows
/// it, so callers see slices and never a pointer.
pub struct RecvSlots {
    payload: Vec<u8>,
    stride: usize,
    /// `NAME_LEN` bytes per slot, or empty (connected sockets).
    names: Vec<u8>,
    /// `control_len` bytes per slot, or empty.
    control: Vec<u8>,
    control_len: usize,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

/// One datagram read into a slot.
pub struct Slot<'a> {
    /// The peer's sockaddr bytes (becomes the reply's destination; empty
    /// without names).
    pub name: &'a mut [u8],
    /// Control messages the kernel attached (empty without control room).
    pub control: &'a [u8],
    /// The whole payload area: the datagram is `payload[..len]`.
    pub payload: &'a mut [u8],
    pub len: usize,
    /// The datagram's full length on the wire (larger than `len` if cut).
    pub wire_len: usize,
    /// The datagram did not fit in the slot (MSG_TRUNC).
    pub truncated: bool,
    /// Its control data did not fit the control room (MSG_CTRUNC).
    pub control_truncated: bool,
}

impl RecvSlots {
    /// `slots` slots of `stride` payload bytes each (both at least 1), with
    /// a name area if `names`, and `control_len` bytes of control room.
    pub fn new(slots: usize, stride: usize, names: bool, control_len: usize) -> RecvSlots {
        let (slots, stride) = (slots.max(1), stride.max(1));
        RecvSlots {
            payload: vec![0; slots * stride],
            stride,
            names: vec![0; if names { slots * NAME_LEN } else { 0 }],
            control: vec![0; slots * control_len],
            control_len,
            iovs: vec![empty_iovec(); slots],
            msgs: vec![empty_mmsghdr(); slots],
        }
    }

    /// How many datagrams one read can hold.
    pub fn capacity(&self) -> usize {
        self.msgs.len()
    }

    /// Reads up to [`RecvSlots::capacity`] datagrams from `fd` without
    /// blocking (MSG_DONTWAIT | MSG_TRUNC); returns how many. EAGAIN is an
    /// error here: callers decide what it means.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let control_len = self.control_len;
        let mut names = self.names.chunks_exact_mut(NAME_LEN);
        let mut controls = self.control.chunks_exact_mut(control_len.max(1));
        let payloads = self.payload.chunks_mut(self.stride);
        for ((payload, iov), m) in payloads.zip(&mut self.iovs).zip(&mut self.msgs) {
            iov.iov_base = payload.as_mut_ptr().cast();
            iov.iov_len = payload.len();
            // Only the fields set here are ever non-zero (the kernel writes
            // back lengths and flags), so the headers are not cleared.
            let h = &mut m.msg_hdr;
            if let Some(name) = names.next() {
                h.msg_name = name.as_mut_ptr().cast();
                h.msg_namelen = NAME_LEN as libc::socklen_t;
            }
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            if let Some(control) = controls.next() {
                h.msg_control = control.as_mut_ptr().cast();
                h.msg_controllen = control_len as _;
            }
            h.msg_flags = 0;
        }
        // SAFETY: every header points at its own slot's payload, name and
        // control areas, of the lengths it states, all inside buffers that
        // `&mut self` keeps alive and unaliased for the call.
        unsafe { recvmmsg(fd, &mut self.msgs) }
    }

    /// Slot `i`'s whole payload area.
    pub fn payload(&self, i: usize) -> &[u8] {
        &self.payload[i * self.stride..(i + 1) * self.stride]
    }

    /// Datagram `i` of the last [`RecvSlots::recv`] (`i` below what it returned).
    pub fn slot(&mut self, i: usize) -> Slot<'_> {
        let m = &self.msgs[i];
        let h = &m.msg_hdr;
        let wire_len = m.msg_len as usize;
        let name = match self.names.is_empty() {
            true => &mut [][..],
            false => {
                let used = (h.msg_namelen as usize).min(NAME_LEN);
                &mut self.names[i * NAME_LEN..i * NAME_LEN + used]
            }
        };
        // msg_controllen is size_t on glibc and socklen_t on musl.
        #[allow(clippy::unnecessary_cast)]
        let used = (h.msg_controllen as usize).min(self.control_len);
        let control = &self.control[i * self.control_len..i * self.control_len + used];
        let payload = &mut self.payload[i * self.stride..(i + 1) * self.stride];
        Slot {
            name,
            control,
            len: wire_len.min(payload.len()),
            payload,
            wire_len,
            truncated: h.msg_flags & libc::MSG_TRUNC != 0,
            control_truncated: h.msg_flags & libc::MSG_CTRUNC != 0,
        }
    }
}

/// Reusable sendmmsg vectors for a connected socket: one buffer cut into
/// messages, sent with one call. The headers point into the buffer only
/// during [`SendChunks::send`], which borrows it.
pub struct SendChunks {
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl SendChunks {
    /// Vectors for up to `capacity` messages (at least 1).
    pub fn new(capacity: usize) -> SendChunks {
        let capacity = capacity.max(1);
        SendChunks {
            iov: vec![empty_iovec(); capacity],
            msgs: vec![empty_mmsghdr(); capacity],
        }
    }

    /// Sends `buf` cut into messages of `msg_len` bytes (the last may be
    /// shorter), at most the capacity, on the connected socket `fd` with one
    /// `sendmmsg`. Returns how many messages, from the first, the kernel
    /// accepted; an error means none was sent.
    pub fn send(&mut self, fd: RawFd, buf: &[u8], msg_len: usize) -> io::Result<usize> {
        if buf.is_empty() || msg_len == 0 {
            return Ok(0);
        }
        let mut n = 0;
        for (chunk, (iov, m)) in buf
            .chunks(msg_len)
            .zip(self.iov.iter_mut().zip(&mut self.msgs))
        {
            *iov = libc::iovec {
                iov_base: chunk.as_ptr() as *mut libc::c_void,
                iov_len: chunk.len(),
            };
            *m = empty_mmsghdr();
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            n += 1;
        }
        // SAFETY: each of the first `n` headers names no address (the socket
        // is connected), no control, and one iovec over a chunk of `buf`;
        // `buf` and `self.iov` outlive the call and the kernel only reads them.
        unsafe { sendmmsg(fd, &mut self.msgs[..n]) }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn control_data_that_does_not_fit_is_flagged() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = rx.as_raw_fd();
        crate::sys::socket::setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let cmsg_pktinfo = super::super::cmsg::space(std::mem::size_of::<libc::in_pktinfo>());
        for (control_len, cut) in [(cmsg_pktinfo, false), (cmsg_pktinfo - 8, true)] {
            tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
            let mut slots = RecvSlots::new(1, 64, true, control_len);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            let n = loop {
                match slots.recv(fd) {
                    Ok(n) if n > 0 => break n,
                    _ if std::time::Instant::now() > deadline => panic!("no datagram"),
                    _ => std::thread::sleep(std::time::Duration::from_millis(1)),
                }
            };
            assert_eq!(n, 1);
            let s = slots.slot(0);
            assert_eq!(s.control_truncated, cut, "control room {control_len}");
            assert!(!s.truncated);
        }
    }
}
