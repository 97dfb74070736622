//! The only place that talks to the kernel through raw pointers.
//!
//! Each file wraps one kernel concept behind a safe, checked interface; the
//! rest of the crate works on slices and typed values.

/// Calls a libc function, turning `-1` into `io::Error::last_os_error()`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller upholds the C function's contract; each call site
        // documents why its arguments are valid.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

pub mod affinity;
pub mod bufring;
pub mod clock;
pub mod cmsg;
pub mod event;
pub mod gso;
pub mod mmsg;
pub mod signals;
pub mod sockaddr;
pub mod socket;
pub mod udp;
pub mod wake;

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
