//! Helpers shared by the end-to-end tests: run the reflector binary and read
//! its JSON lines, check the counter identity, build payloads, create a
//! private network namespace, and refuse a system call to a child (seccomp).
//!
//! Every wait here is bounded; every process and namespace created here is
//! removed on drop, even when the test panics.
#![allow(dead_code)]

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    net::{SocketAddr, UdpSocket},
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_udp-reflector");

/// How long a reflector may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a reply may take on loopback before it counts as missing.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// What a test may need that a host may lack. `UDP_REFLECTOR_REQUIRE`
/// (comma-separated names, as [`Need::name`] gives them; CI sets it) lists
/// the needs that must be met: a test that would skip for one of them
/// fails instead, naming it. Without the variable, skips stay skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The io_uring backend: a kernel and a sandbox that allow it.
    Uring,
    /// Root and iproute2: private network namespaces, raw sockets there.
    Netns,
    /// The real clients the tests drive: sockperf, tshark (with its
    /// TWAMP-Test dissector), tcpdump, prometheus and promtool, python3;
    /// and the deploy tools: systemd with systemd-nspawn, nsenter, unshare,
    /// sysctl, runc, setcap.
    Tools,
    /// IPv6 loopback (::1).
    Ipv6,
    /// At least two usable CPUs (two workers).
    Cpus,
    /// A seccomp filter installed on a child (what container runtimes do).
    Seccomp,
    /// Extras of this host's own setup (a second local IPv6 address, an
    /// unassigned documentation address): never required.
    Host,
}

impl Need {
    /// Every need, in the order of `name`.
    pub const ALL: [Need; 7] = [
        Need::Uring,
        Need::Netns,
        Need::Tools,
        Need::Ipv6,
        Need::Cpus,
        Need::Seccomp,
        Need::Host,
    ];

    /// The need's name in `UDP_REFLECTOR_REQUIRE`.
    pub fn name(self) -> &'static str {
        match self {
            Need::Uring => "uring",
            Need::Netns => "netns",
            Need::Tools => "tools",
            Need::Ipv6 => "ipv6",
            Need::Cpus => "cpus",
            Need::Seccomp => "seccomp",
            Need::Host => "host",
        }
    }

    /// Whether `UDP_REFLECTOR_REQUIRE` lists this need. Panics on a name it
    /// does not know, so that a typo cannot turn a requirement off.
    pub fn is_required(self) -> bool {
        let Ok(list) = std::env::var(REQUIRE_VAR) else {
            return false;
        };
        let mut required = false;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(need) = Need::ALL.iter().find(|n| n.name() == name) else {
                panic!(
                    "{REQUIRE_VAR}={list:?} names {name:?}, which is no requirement; known: {}",
                    Need::ALL.map(Need::name).join(", ")
                );
            };
            required |= *need == self;
        }
        required
    }
}

/// The variable that turns skips into failures (see [`Need`]).
pub const REQUIRE_VAR: &str = "UDP_REFLECTOR_REQUIRE";

/// Prints why the current test does not run here (the test's thread is
/// named after it); the caller returns right after. If `need` is required
/// (see [`Need`]), fails the test instead, naming what was missing.
pub fn skip(need: Need, reason: impl std::fmt::Display) {
    let t = std::thread::current();
    let test = t.name().unwrap_or("test");
    if need.is_required() {
        panic!(
            "REQUIRED `{}` is missing ({REQUIRE_VAR} lists it), so {test} cannot run: {reason}",
            need.name()
        );
    }
    eprintln!("SKIPPED {test} (needs `{}`): {reason}", need.name());
}

/// `udp-reflector serve ARGS...` with piped stdout/stderr and no stdin.
pub fn serve_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").args(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env("RUST_BACKTRACE", "1");
    // Test reflectors come and go by the hundred on ephemeral ports: in a
    // shared registry, a client could get the port of one that just exited
    // while another still refuses it (for up to a second). Tests of the
    // registry pass --registry DIR.
    cmd.env("UDP_REFLECTOR_REGISTRY", "off");
    cmd
}

/// `udp-reflector bench ARGS` with piped stdout/stderr and no stdin.
pub fn bench_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("bench").args(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// What a finished process left behind.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    /// Every stdout line, the listening line included.
    pub stdout: Vec<String>,
    pub stderr: String,
    /// The time from the start of the wait (e.g. the signal) to the exit.
    pub exited_after: Duration,
}

impl Outcome {
    /// The `{"event":"summary",...}` object, if one was printed.
    pub fn summary(&self) -> Option<Value> {
        self.events("summary").into_iter().next_back()
    }

    /// Every JSON line whose `event` is `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.stdout
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// The summary, or a panic that shows everything the process said.
    pub fn expect_summary(&self) -> Value {
        self.summary()
            .unwrap_or_else(|| panic!("no summary line; process outcome: {self:#?}"))
    }

    /// Non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// A child process whose stdout lines arrive through a channel. Killed (by
/// its pid, SIGKILL) on drop if it is still running.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    out_reader: Option<JoinHandle<()>>,
    err_reader: Option<JoinHandle<String>>,
    reaped: bool,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> io::Result<Proc> {
        let mut child = cmd.spawn()?;
        let out = child.stdout.take().expect("stdout is piped");
        let mut err = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Ok(Proc {
            child,
            lines,
            stdout: Vec::new(),
            out_reader: Some(out_reader),
            err_reader: Some(err_reader),
            reaped: false,
        })
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// The next stdout line, or `None` at EOF or after `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => {
                self.stdout.push(l.clone());
                Some(l)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Sends `sig` to the child, by pid, if it has not been reaped.
    pub fn signal(&self, sig: libc::c_int) {
        if !self.reaped {
            // SAFETY: kill(2) with the pid of our own unreaped child.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// Waits up to `timeout` for the child to exit by itself; panics (and
    /// the drop kills it) if it does not.
    pub fn wait(&mut self, timeout: Duration) -> Outcome {
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.reaped = true;
                let partial = self.collect_output();
                panic!(
                    "udp-reflector (pid {}) still running {timeout:?} after it should have \
                     stopped; killed it. stdout: {:?} stderr: {:?}",
                    self.child.id(),
                    partial.0,
                    partial.1
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let exited_after = started.elapsed();
        self.reaped = true;
        let (stdout, stderr) = self.collect_output();
        Outcome {
            status,
            stdout,
            stderr,
            exited_after,
        }
    }

    /// Sends `sig` and waits up to `timeout`; `exited_after` counts from the signal.
    pub fn signal_and_wait(&mut self, sig: libc::c_int, timeout: Duration) -> Outcome {
        self.signal(sig);
        self.wait(timeout)
    }

    fn collect_output(&mut self) -> (Vec<String>, String) {
        // The pipes close when the child exits; the readers then end.
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => self.stdout.push(l),
                Err(_) => break,
            }
        }
        if let Some(h) = self.out_reader.take() {
            let _ = h.join();
        }
        let stderr = self
            .err_reader
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (std::mem::take(&mut self.stdout), stderr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            // Child::kill sends SIGKILL to this child's pid only.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A reflector that printed its listening line.
pub struct Reflector {
    pub proc: Proc,
    /// The `{"event":"listening",...}` object.
    pub listening: Value,
    /// Resolved listening addresses, in `--listen` order.
    pub addrs: Vec<SocketAddr>,
}

/// How a start attempt ended.
pub enum Started {
    Listening(Reflector),
    /// The process exited before it printed a listening line.
    Exited(Outcome),
}

impl Reflector {
    /// Spawns `cmd` (which must pass `--json`) and waits for the listening
    /// line. Panics if neither the line nor an exit comes in time.
    /// An error only if the process could not be spawned at all (e.g. a
    /// `pre_exec` step failed).
    pub fn start(cmd: &mut Command) -> io::Result<Started> {
        let mut proc = Proc::spawn(cmd)?;
        match proc.next_line(START_TIMEOUT) {
            Some(line) => {
                let listening: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("first stdout line is not JSON ({e}): {line:?}"));
                assert_eq!(listening["event"], "listening", "first line: {line}");
                let addrs = listening["addrs"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no addrs in {line}"))
                    .iter()
                    .map(|a| {
                        let s = a.as_str().expect("addr is a string");
                        s.parse().unwrap_or_else(|e| panic!("addr {s:?}: {e}"))
                    })
                    .collect::<Vec<SocketAddr>>();
                assert!(
                    addrs.iter().all(|a| a.port() != 0),
                    "port 0 not resolved: {line}"
                );
                Ok(Started::Listening(Reflector {
                    proc,
                    listening,
                    addrs,
                }))
            }
            None => Ok(Started::Exited(proc.wait(START_TIMEOUT))),
        }
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// SIGTERM, then the outcome (the reflector must exit within `timeout`).
    pub fn stop(mut self) -> Outcome {
        self.proc
            .signal_and_wait(libc::SIGTERM, Duration::from_secs(5))
    }
}

/// Runs `cmd` to its exit (bounded by `timeout`), for commands that are
/// expected to fail at start. An error only if it could not be spawned.
pub fn run_to_exit(cmd: &mut Command, timeout: Duration) -> io::Result<Outcome> {
    let mut proc = Proc::spawn(cmd)?;
    Ok(proc.wait(timeout))
}

/// A counter from a summary's `total` or `workers[i]` object.
pub fn counter(obj: &Value, name: &str) -> u64 {
    obj[name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name:?} missing or not a u64 in {obj}"))
}

/// Sum of every `no_reply_*` counter of `obj`.
pub fn no_reply_total(obj: &Value) -> u64 {
    obj.as_object()
        .expect("counters object")
        .iter()
        .filter(|(k, _)| k.starts_with("no_reply_"))
        .map(|(k, v)| v.as_u64().unwrap_or_else(|| panic!("{k} is not a u64")))
        .sum()
}

/// Checks what every summary must satisfy: each received datagram ends in
/// exactly one outcome (total and per worker), and the total is the sum of
/// the workers.
pub fn assert_summary_consistent(summary: &Value) {
    let total = &summary["total"];
    let workers = summary["workers"].as_array().expect("workers array");
    assert!(!workers.is_empty(), "no workers in {summary}");
    for obj in std::iter::once(total).chain(workers) {
        let rx = counter(obj, "rx_packets");
        let outcomes = counter(obj, "tx_packets")
            + counter(obj, "tx_dropped")
            + counter(obj, "tx_errors")
            + counter(obj, "truncated")
            + no_reply_total(obj);
        assert_eq!(
            rx, outcomes,
            "rx_packets != tx_packets + tx_dropped + tx_errors + truncated + no_reply_*: {obj}"
        );
    }
    for (name, v) in total.as_object().expect("total object") {
        if let Some(t) = v.as_u64() {
            let sum: u64 = workers.iter().map(|w| counter(w, name)).sum();
            assert_eq!(
                t, sum,
                "total {name} is not the sum over workers: {summary}"
            );
        }
    }
}

/// Deterministic, non-repeating-looking bytes (xorshift64*), so an echo that
/// mixes up, shifts or cuts buffers is caught byte for byte.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Waits up to `timeout` for one datagram on `sock`; `None` on timeout.
pub fn recv_within(
    sock: &UdpSocket,
    buf: &mut [u8],
    timeout: Duration,
) -> Option<(usize, SocketAddr)> {
    sock.set_read_timeout(Some(timeout))
        .expect("set_read_timeout");
    match sock.recv_from(buf) {
        Ok(r) => Some(r),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("recv_from: {e}"),
    }
}

/// Sum of the `dropped` column of /proc/net/softnet_stat (packets the
/// per-CPU input backlog refused: lost after a successful send, before any
/// socket saw them).
pub fn softnet_dropped() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter_map(|h| u64::from_str_radix(h, 16).ok())
                .sum()
        })
        .unwrap_or(0)
}

/// CPUs this process may run on.
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `ip ARGS`; the error says what failed and why.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace of our own, deleted on drop (also after a panic).
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// Creates `NAME` = `urt-TAG-PID` and brings its loopback up.
    pub fn create(tag: &str) -> Result<NetNs, String> {
        let name = format!("urt-{tag}-{}", std::process::id());
        // A namespace left by an earlier, killed run of this very pid: ours.
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn file(&self) -> io::Result<File> {
        File::open(format!("/run/netns/{}", self.name))
            .or_else(|_| File::open(format!("/var/run/netns/{}", self.name)))
    }

    /// Moves the calling thread (only) into the namespace: sockets it opens
    /// afterwards belong there. Use a dedicated thread.
    pub fn enter_current_thread(&self) -> io::Result<()> {
        let f = self.file()?;
        // SAFETY: setns on an open namespace file; affects this thread only.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Makes `cmd` run inside the namespace (setns in the child before exec),
    /// so the child's pid is the program's own and signals reach it.
    pub fn apply(&self, cmd: &mut Command) -> io::Result<()> {
        let f = self.file()?;
        // SAFETY: the closure only calls setns (async-signal-safe) on a
        // descriptor that it owns; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!(
                "warning: could not delete network namespace {}: {e}",
                self.name
            );
        }
    }
}

/// AUDIT_ARCH_* of the target (include/uapi/linux/audit.h).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH: u32 = 0xC000_00F3;

/// Makes `cmd`'s child refuse system call `nr` with `errno` (a classic BPF
/// seccomp filter installed after fork, before exec), everything else
/// allowed, like a container runtime's seccomp profile does.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
pub fn refuse_syscall(cmd: &mut Command, nr: libc::c_long, errno: i32) {
    install_refusal(cmd, nr, None, errno)
}

/// Like [`refuse_syscall`], but only the calls whose first argument is
/// `arg0` (compared as a 32-bit int, like `socket`'s `domain`): e.g.
/// `socket(AF_INET6, ...)` failing with EAFNOSUPPORT is what a kernel
/// booted with `ipv6.disable=1` does.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
pub fn refuse_syscall_with_arg0(cmd: &mut Command, nr: libc::c_long, arg0: u32, errno: i32) {
    install_refusal(cmd, nr, Some(arg0), errno)
}

#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
fn install_refusal(cmd: &mut Command, nr: libc::c_long, arg0: Option<u32>, errno: i32) {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const OFF_NR: u32 = 0; // offsetof(struct seccomp_data, nr)
    const OFF_ARCH: u32 = 4; // offsetof(struct seccomp_data, arch)
    const OFF_ARG0_LO: u32 = 16; // offsetof(struct seccomp_data, args[0]), low word (little endian)
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let refuse = ins(
        RET_K,
        0,
        0,
        libc::SECCOMP_RET_ERRNO | (errno as u32 & 0xffff),
    );
    let allow = ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW);
    let mut prog_insns = vec![
        ins(LD_W_ABS, 0, 0, OFF_ARCH),
        ins(JEQ_K, 1, 0, AUDIT_ARCH),
        allow, // another ABI: leave it alone
        ins(LD_W_ABS, 0, 0, OFF_NR),
    ];
    match arg0 {
        None => prog_insns.extend([ins(JEQ_K, 0, 1, nr as u32), refuse, allow]),
        Some(a) => prog_insns.extend([
            ins(JEQ_K, 0, 3, nr as u32), // another call: to the last `allow`
            ins(LD_W_ABS, 0, 0, OFF_ARG0_LO),
            ins(JEQ_K, 0, 1, a),
            refuse,
            allow,
        ]),
    }
    // SAFETY: the closure runs in the forked child before exec; it calls only
    // prctl (async-signal-safe) with a program that lives in the closure.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: prog_insns.len() as u16,
                filter: prog_insns.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Turns on UDP_GRO: the socket accepts a whole GSO train in one read.
pub fn set_udp_gro(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: passes a live c_int of the stated size to setsockopt.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "UDP_GRO: {}", io::Error::last_os_error());
}

/// Generates `NAME::uring` and `NAME::mmsg`, each calling `NAME(backend)`.
#[allow(unused_macros)]
macro_rules! both_backends {
    // With one attribute (e.g. `#[ignore = "why"]`) given to both tests.
    (#[$attr:meta] $($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            #[$attr]
            fn uring() {
                super::$name("uring")
            }
            #[test]
            #[$attr]
            fn mmsg() {
                super::$name("mmsg")
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn uring() {
                super::$name("uring")
            }
            #[test]
            fn mmsg() {
                super::$name("mmsg")
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use both_backends;

/// Starts `serve --backend BACKEND --json ARGS`. `None` (reason printed)
/// when the uring backend is refused on this host.
pub fn start(backend: &str, args: &[&str]) -> Option<Reflector> {
    let mut cmd = serve_command(["--backend", backend, "--json"].iter().chain(args));
    start_cmd(backend, &mut cmd)
}

pub fn start_cmd(backend: &str, cmd: &mut Command) -> Option<Reflector> {
    match Reflector::start(cmd).expect("spawning udp-reflector") {
        Started::Listening(r) => {
            let got = r.listening["backend"].as_str().unwrap_or("");
            if backend == "auto" {
                assert!(
                    ["uring", "mmsg"].contains(&got),
                    "listening line: {}",
                    r.listening
                );
            } else {
                assert_eq!(got, backend, "listening line: {}", r.listening);
            }
            Some(r)
        }
        Started::Exited(o)
            if backend == "uring"
                && o.status.code() == Some(2)
                && o.stderr.contains("io_uring unavailable") =>
        {
            skip(
                Need::Uring,
                format!("io_uring is refused on this host: {}", o.stderr.trim()),
            );
            None
        }
        Started::Exited(o) => panic!("udp-reflector exited before listening: {o:#?}"),
    }
}

/// Stops the reflector, checks the exit and the summary's invariants, and
/// returns the summary.
pub fn stop_and_summarise(r: Reflector) -> Value {
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "exit after SIGTERM: {out:#?}");
    // Explicit backends have nothing to warn about in these runs.
    assert!(
        out.stderr_lines().is_empty(),
        "unexpected stderr: {:?}",
        out.stderr
    );
    let s = out.expect_summary();
    assert_summary_consistent(&s);
    s
}

/// The /proc directories of every thread of process `pid`.
pub fn threads(pid: libc::pid_t) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| t.path())
        .collect()
}

/// One read on a socket with UDP_GRO on: the bytes, and the segment size
/// from the UDP_GRO cmsg when the kernel handed over a whole GSO train.
pub fn recv_gro(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, Option<u16>)> {
    use std::os::fd::AsRawFd;
    sock.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return None;
    }
    let mut segment = None;
    // SAFETY: the CMSG_* walk stays within the control length the kernel set.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                segment = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()) as u16);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((n as usize, segment))
}

/// Holds the reflector stopped (SIGSTOP) while each datagram is sent on its
/// socket, in order, so that all of them wait in the socket queue and are
/// reflected as one batch when the reflector resumes.
pub fn send_while_stopped(r: &Reflector, sends: &[(&UdpSocket, &[u8])]) {
    r.proc.signal(libc::SIGSTOP);
    // A stop is delivered asynchronously: wait until every thread is in
    // state T.
    let pid = r.proc.pid();
    let all_stopped = || {
        threads(pid).iter().all(|t| {
            std::fs::read_to_string(t.join("stat"))
                .ok()
                .and_then(|st| {
                    st.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .next()
                        .map(String::from)
                })
                .as_deref()
                == Some("T")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while !all_stopped() {
        assert!(
            Instant::now() < deadline,
            "udp-reflector did not stop on SIGSTOP"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    for (sock, d) in sends {
        sock.send(d).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    r.proc.signal(libc::SIGCONT);
}
