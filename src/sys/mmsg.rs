//! recvmmsg / sendmmsg and poll, thin wrappers whose callers own the buffers.

use std::{io, os::fd::RawFd};

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
    super::syscall!(poll(
        fds.as_mut_ptr(),
        fds.len() as libc::nfds_t,
        timeout_ms
    ))
    .map(|n| n as usize)
}
