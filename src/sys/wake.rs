//! Waking one blocked worker thread: a signal with an empty handler,
//! installed without `SA_RESTART`, so the worker's blocking `poll` or
//! `io_uring_enter` returns EINTR and its loop comes round once.
//!
//! SIGURG is used because its default action is to ignore it: if the handler
//! were somehow missing, a stray one would still never kill the process.

use std::{io, sync::Once};

/// The signal that wakes a worker.
pub const WAKE_SIGNAL: libc::c_int = libc::SIGURG;

extern "C" fn on_wake(_: libc::c_int) {}

/// Installs the empty handler (once per process). Without it a default-ignored
/// signal would be discarded and interrupt nothing.
pub fn install() -> io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        // SAFETY: sigaction is plain data; all-zero is a valid start.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = 0; // no SA_RESTART: the blocked call must return EINTR
                         // SAFETY: `sa.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: `sa` is fully initialised; the handler is async-signal-safe
        // (it does nothing); a null old-action pointer is allowed.
        if unsafe { libc::sigaction(WAKE_SIGNAL, &sa, std::ptr::null_mut()) } != 0 {
            result = Err(io::Error::last_os_error());
        }
    });
    result
}

/// The calling thread's kernel id, to wake it later with [`wake`].
pub fn current_tid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Sends the wake signal to thread `tid` of this process. `tgkill` confines
/// it to our own thread group: a thread that has ended gives ESRCH, and at
/// worst an id reused by another of our threads receives a signal whose
/// handler does nothing.
pub fn wake(tid: libc::pid_t) -> io::Result<()> {
    // SAFETY: tgkill takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, WAKE_SIGNAL) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
