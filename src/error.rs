//! The errors a user can meet, each one line naming its culprit.

use std::{fmt, io, net::SocketAddr};

use crate::{parse::format_cpu_list, sys::socket::ListenError};

/// Everything that stops the reflector or the load generator from starting.
///
/// All of these map to exit status 2 in the binary: they are problems with
/// what the user asked for, or with the host it asked it of.
#[derive(Debug)]
pub enum Error {
    /// The address is already bound by another socket (ours or not).
    AddrInUse(SocketAddr),
    /// The address is not assigned to any local interface.
    AddrNotLocal(SocketAddr),
    /// Binding failed for another reason.
    Bind(SocketAddr, io::Error),
    /// A port below net.ipv4.ip_unprivileged_port_start, without the
    /// privilege to bind it.
    PrivilegedPort { addr: SocketAddr, start: u16 },
    /// RLIMIT_NOFILE is below what the workers' sockets and rings need.
    TooFewFiles { need: u64, limit: u64 },
    /// A CPU that does not exist or that this process may not run on.
    Cpu { cpu: usize, allowed: Vec<usize> },
    /// `--backend uring` was asked for and io_uring is refused.
    UringUnavailable(io::Error),
    /// A flag value that parsed but cannot be honoured.
    Invalid { flag: &'static str, reason: String },
    /// stdout is a closed descriptor: the summary could not be written, and
    /// the first socket opened would take its number.
    StdoutClosed,
    /// stdout did not take the summary (or other lines).
    Output(crate::output::OutputError),
    /// Any other system call failure, with what we were doing.
    Io {
        context: &'static str,
        source: io::Error,
    },
}

impl Error {
    pub fn io(context: &'static str, source: io::Error) -> Self {
        Error::Io { context, source }
    }

    /// Creating or binding a socket on `addr` failed: name the culprit.
    pub fn bind(addr: SocketAddr, e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::EADDRINUSE) => Error::AddrInUse(addr),
            Some(libc::EADDRNOTAVAIL) => Error::AddrNotLocal(addr),
            Some(libc::EACCES) => {
                let start =
                    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(1024);
                if addr.port() < start {
                    Error::PrivilegedPort { addr, start }
                } else {
                    Error::Bind(addr, e)
                }
            }
            Some(libc::EMFILE | libc::ENFILE) => Error::TooFewFiles {
                need: 0,
                limit: crate::sys::open_files_limit().unwrap_or(0),
            },
            _ => Error::Bind(addr, e),
        }
    }

    /// Opening a listener on `addr` failed.
    pub fn listen(addr: SocketAddr, e: ListenError) -> Self {
        match e {
            ListenError::Options(e) => Error::io("setting socket options", e),
            ListenError::Bind(e) => Error::bind(addr, e),
        }
    }
}

/// What io_uring's refusal most likely means, and what to do about it.
pub fn uring_refusal_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) => {
            "io_uring is blocked: a container seccomp profile (Docker's default, containerd 2.0) \
             or sysctl kernel.io_uring_disabled; allow io_uring_setup/enter/register in the \
             profile or set kernel.io_uring_disabled=0"
        }
        Some(libc::ENOSYS) => "this kernel was built without io_uring (CONFIG_IO_URING=n)",
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
            "this kernel's io_uring lacks multishot recvmsg or provided buffer rings (needs Linux >= 6.0)"
        }
        Some(libc::ENOMEM) => "the locked-memory limit is too low for the ring (raise RLIMIT_MEMLOCK)",
        _ => "io_uring could not be set up",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AddrInUse(a) => write!(f, "address {a} is already in use by another socket"),
            Error::AddrNotLocal(a) => {
                write!(f, "address {a} is not assigned to any local interface")
            }
            Error::Bind(a, e) => write!(f, "cannot bind {a}: {e}"),
            Error::PrivilegedPort { addr, start } => write!(
                f,
                "cannot bind {addr}: ports below {start} need root or the capability \
                 CAP_NET_BIND_SERVICE; grant it with `sudo setcap cap_net_bind_service=+ep {}` \
                 (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE), or use a port from {start} up",
                std::env::current_exe()
                    .map_or_else(|_| "udp-reflector".into(), |p| p.display().to_string())
            ),
            Error::TooFewFiles { need, limit } => {
                write!(f, "too few file descriptors: the limit (ulimit -n) is {limit}")?;
                if *need > 0 {
                    write!(f, " and this configuration needs about {need}")?;
                }
                write!(
                    f,
                    " (one socket per worker and listener, and a ring per worker); raise it with \
                     `ulimit -n`, or LimitNOFILE= in a systemd unit"
                )
            }
            Error::Cpu { cpu, allowed } => write!(
                f,
                "cpu {cpu} does not exist or is not allowed for this process (allowed: {})",
                format_cpu_list(allowed)
            ),
            Error::UringUnavailable(e) => {
                write!(f, "io_uring unavailable ({e}): {}", uring_refusal_hint(e))
            }
            Error::Invalid { flag, reason } => write!(f, "invalid {flag}: {reason}"),
            Error::StdoutClosed => write!(
                f,
                "stdout is closed: the summary would be lost (redirect it, e.g. >/dev/null, to discard it)"
            ),
            Error::Output(e @ crate::output::OutputError::Dropped(_)) => write!(f, "{e}"),
            Error::Output(e) => write!(f, "{e}; the summary is lost"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {}
