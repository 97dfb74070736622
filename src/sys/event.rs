//! An eventfd: one thread raises it, others see it readable (poll or
//! io_uring) and wake. Used to stop workers without any timeout in their
//! waits: a timed wait arms a high-resolution timer on every call, which on
//! a VM is a trap to the hypervisor per wakeup.

use super::cvt;
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

/// A nonblocking eventfd that, once raised, stays readable.
#[derive(Debug)]
pub struct Event {
    fd: OwnedFd,
}

impl Event {
    pub fn new() -> io::Result<Event> {
        // SAFETY: eventfd takes no pointers.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: eventfd just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Event { fd })
    }

    /// Makes the eventfd readable (and wakes every poller). Nobody reads it,
    /// so it stays readable.
    pub fn raise(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let n = cvt(unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        })?;
        debug_assert_eq!(n, 8);
        Ok(())
    }
}

impl AsRawFd for Event {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(e: &Event) -> bool {
        let mut p = [libc::pollfd {
            fd: e.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        crate::sys::mmsg::poll(&mut p, 0).unwrap() == 1
    }

    #[test]
    fn readable_once_raised_and_stays_so() {
        let e = Event::new().unwrap();
        assert!(!readable(&e));
        e.raise().unwrap();
        assert!(readable(&e));
        e.raise().unwrap();
        assert!(readable(&e));
    }
}
