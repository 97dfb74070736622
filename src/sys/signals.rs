//! Signals without handlers (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR2,
//! SIGALRM to stop, SIGUSR1 for the summary so far): blocked in every thread and taken
//! synchronously by the reporter with `sigtimedwait`, so no system call in a
//! worker is ever interrupted.

use std::{io, time::Duration};

/// Signals that stop the reflector with its summary: the usual ones, a
/// terminal hang-up, and those whose default would kill it silently.
pub const STOP_SIGNALS: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR2,
    libc::SIGALRM,
];

/// The signal that prints the summary so far and goes on (as `dd` does).
pub const SUMMARY_SIGNAL: i32 = libc::SIGUSR1;

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; every signal added is a valid one.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS.iter().chain([&SUMMARY_SIGNAL]) {
            libc::sigaddset(&mut set, *sig);
        }
    }
    set
}

/// Blocks the stop signals and SIGUSR1 in the calling thread and every thread it
/// spawns afterwards. Call before spawning workers.
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: `set` is a valid sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Waits up to `timeout` for a stop signal or SIGUSR1; returns the signal if one came.
pub fn wait_stop_signal(timeout: Duration) -> Option<i32> {
    let set = stop_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}
