//! The only place that talks to the kernel through raw pointers.
//!
//! Each file wraps one kernel concept behind a safe, checked interface; the
//! rest of the crate works on slices and typed values.

/// A libc return value that says failure with -1.
pub(crate) trait MinusOne: Copy + PartialEq {
    const MINUS_ONE: Self;
}

impl MinusOne for i32 {
    const MINUS_ONE: i32 = -1;
}

impl MinusOne for isize {
    const MINUS_ONE: isize = -1;
}

/// Turns a libc call's -1 into `io::Error::last_os_error()`, as std does.
/// Used as `cvt(unsafe { libc::bind(..) })`, with a `// SAFETY:` line at
/// each call saying why its arguments are valid.
#[inline]
pub(crate) fn cvt<T: MinusOne>(res: T) -> std::io::Result<T> {
    if res == T::MINUS_ONE {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(res)
    }
}

pub mod affinity;
pub(crate) mod bufring;
pub(crate) mod clock;
pub mod cmsg;
pub(crate) mod event;
pub(crate) mod gso;
pub(crate) mod mmsg;
pub(crate) mod signals;
pub(crate) mod sockaddr;
pub mod socket;
pub(crate) mod udp;
pub(crate) mod wake;

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether stdout was closed when the process started.
///
/// The Rust runtime opens /dev/null read-write in place of a closed
/// standard descriptor before `main` (std's `sanitize_standard_fds`);
/// redirections (`>/dev/null`, `Stdio::null`, systemd's `null`) open it
/// write-only. So: fd 1 closed, or /dev/null opened read-write.
pub fn stdout_was_closed() -> bool {
    // SAFETY: F_GETFL only reads the descriptor's flags; any int is allowed.
    let flags = unsafe { libc::fcntl(1, libc::F_GETFL) };
    if flags == -1 {
        return true;
    }
    // SAFETY: `st` is a plain struct that fstat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd 1 is open (F_GETFL succeeded); `st` is writable.
    if unsafe { libc::fstat(1, &mut st) } != 0 {
        return false;
    }
    let dev_null = (st.st_mode & libc::S_IFMT) == libc::S_IFCHR
        && libc::major(st.st_rdev) == 1
        && libc::minor(st.st_rdev) == 3;
    dev_null && flags & libc::O_ACCMODE == libc::O_RDWR
}

/// The index of the network interface `name` (if_nametoindex), if it exists.
pub fn interface_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// The soft limit on open file descriptors (RLIMIT_NOFILE).
pub fn open_files_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0).then_some(r.rlim_cur)
}
