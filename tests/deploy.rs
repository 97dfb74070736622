//! The files under deploy/, run as an operator runs them: the systemd unit
//! booted under a real systemd (systemd-nspawn), the Docker seccomp profile
//! under runc, the sysctl files with `sysctl -p`, the Kubernetes manifests
//! against the API's schema. Each test skips with a reason where its tool
//! or root is missing.

mod common;

use std::{
    fs,
    io::{self, Write},
    net::UdpSocket,
    os::{fd::AsRawFd, unix::fs::PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{skip, Need};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `name` is an executable on PATH (or an absolute path that exists).
fn have(name: &str) -> bool {
    if name.starts_with('/') {
        return Path::new(name).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Root and every tool named, or a printed reason and `false`.
fn prerequisites(tools: &[&str]) -> bool {
    if !common::is_root() {
        skip(Need::Netns, "needs root");
        return false;
    }
    if let Some(t) = tools.iter().find(|t| !have(t)) {
        skip(Need::Tools, format!("{t} is not installed"));
        return false;
    }
    true
}

/// A directory of our own under /tmp, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("urt-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        // Others (a dynamic user, uid 65534) must traverse it.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copies the binary under test to `dir/udp-reflector`, mode 0755.
fn install_binary(dir: &Path) -> PathBuf {
    let to = dir.join("udp-reflector");
    fs::copy(common::BIN, &to).unwrap();
    fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
    to
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `f` on a thread of its own inside the network namespace of `pid`.
fn in_netns_of<T: Send>(pid: i32, f: impl FnOnce() -> T + Send) -> T {
    let ns = fs::File::open(format!("/proc/{pid}/ns/net")).expect("the namespace");
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on an open namespace file; moves this thread only.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    })
}

/// Sends `payload` to `to` and returns the reply (2 s at most).
fn ask(to: &str, payload: &[u8]) -> Vec<u8> {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c.send_to(payload, to).unwrap();
    let mut buf = [0u8; 2048];
    let n = c
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no reply from {to}: {e}"));
    buf[..n].to_vec()
}

// ---------------------------------------------------------------------------
// systemd

/// systemd as PID 1 of a container booted from this host's /usr
/// (`systemd-nspawn --volatile=yes`: a fresh tmpfs root, empty /etc), with
/// its own network namespace. Halted and removed on drop.
struct Booted {
    nspawn: Child,
    /// PID 1 of the container, as this host sees it.
    pid1: i32,
}

impl Booted {
    fn boot(name: &str, binds: &[String]) -> Result<Booted, String> {
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "--quiet",
            "--directory=/",
            "--volatile=yes",
            "--private-network",
        ])
        .args(["--register=no", "--keep-unit", "--boot", "--console=pipe"])
        .arg(format!("--machine={name}"))
        .args(binds)
        // Only what the unit needs: no wait for a network that a private
        // namespace never gets, none of the host's other services.
        .args([
            "--",
            "systemd.unit=basic.target",
            "systemd.mask=systemd-networkd-wait-online.service",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let nspawn = cmd.spawn().map_err(|e| format!("systemd-nspawn: {e}"))?;
        let mut b = Booted { nspawn, pid1: 0 };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = b.nspawn.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = b.nspawn.stderr.take() {
                    let _ = io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(format!("systemd-nspawn exited ({st}): {}", err.trim()));
            }
            if b.pid1 == 0 {
                b.pid1 = child_named(b.nspawn.id() as i32, "systemd").unwrap_or(0);
            }
            if b.pid1 != 0 {
                let o = b.sh("systemctl is-system-running");
                let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if state == "running" || state == "degraded" {
                    return Ok(b);
                }
            }
            if Instant::now() > deadline {
                return Err("systemd did not finish booting within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `script` with `sh -c` in every namespace of the container
    /// (bounded: 30 s).
    fn sh(&self, script: &str) -> Output {
        Command::new("timeout")
            .args([
                "30",
                "nsenter",
                "-t",
                &self.pid1.to_string(),
                "-a",
                "sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// Like [`sh`](Self::sh); the script must succeed. Its stdout.
    fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(o.status.success(), "`{script}` failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn prop(&self, name: &str) -> String {
        self.ok(&format!("systemctl show -p {name} --value udp-reflector"))
    }

    /// Everything the unit's current (or last) activation logged,
    /// ExecStartPre included.
    fn journal(&self) -> String {
        let id = self.prop("InvocationID");
        self.ok(&format!(
            "journalctl --sync 2>/dev/null; journalctl -o cat --no-pager _SYSTEMD_INVOCATION_ID={id}"
        ))
    }

    /// Polls the journal of the current activation until it holds `what`.
    fn wait_journal(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let j = self.journal();
            if j.contains(what) {
                return j;
            }
            assert!(Instant::now() < deadline, "no {what:?} in the journal: {j}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (at most `secs`) for `cond` on the unit's properties.
    fn wait_until(&self, secs: u64, what: &str, cond: impl Fn(&Booted) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {secs} s; {}",
                self.ok("systemctl status --no-pager udp-reflector || true")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        // SIGTERM asks systemd-nspawn to halt the container cleanly.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.nspawn.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The first child of `parent` whose command name is `comm`.
fn child_named(parent: i32, comm: &str) -> Option<i32> {
    let children = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm))
}

/// What the host allows: whether `serve` picks io_uring here at all.
fn host_has_uring() -> bool {
    let o = Command::new(common::BIN)
        .args(["serve", "--check", "--json", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).contains("\"backend\":\"uring\"")
}

fn set_args(dir: &Path, args: &str) {
    let mut f = fs::File::create(dir.join("udp-reflector")).unwrap();
    writeln!(f, "UDP_REFLECTOR_ARGS=\"{args}\"").unwrap();
}

/// A STAMP test packet (RFC 8762, unauthenticated): 44 bytes, sequence 7.
fn stamp_packet() -> Vec<u8> {
    let mut p = vec![0u8; 44];
    p[3] = 7;
    p
}

#[test]
fn systemd_unit_runs_as_shipped_under_systemd() {
    if !prerequisites(&[
        "systemd-nspawn",
        "nsenter",
        "timeout",
        "/usr/lib/systemd/systemd",
    ]) {
        return;
    }
    if !host_has_uring() {
        skip(Need::Uring, "io_uring is refused on this host");
        return;
    }
    let dir = TempDir::new("systemd");
    let bin = dir.0.join("bin");
    let default = dir.0.join("default");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&default).unwrap();
    install_binary(&bin);
    set_args(
        &default,
        "--listen 0.0.0.0:7 --listen 127.0.0.1:862,mode=stamp --workers 1",
    );
    let unit = repo("deploy/systemd/udp-reflector.service");
    let sd = Booted::boot(
        &format!("urt-sd-{}", std::process::id()),
        &[
            format!("--bind-ro={}:/usr/local/bin", bin.display()),
            format!(
                "--bind-ro={}:/etc/systemd/system/udp-reflector.service",
                unit.display()
            ),
            format!("--bind={}:/etc/default", default.display()),
        ],
    )
    .unwrap_or_else(|e| panic!("booting systemd in a container: {e}"));

    // The unit as systemd itself reads it: not a single warning.
    let v = sd.sh("systemd-analyze verify /etc/systemd/system/udp-reflector.service");
    assert!(
        v.status.success() && text(&v).trim().is_empty(),
        "verify: {}",
        text(&v)
    );

    // Starts, checks its flags first, binds 7 and 862 as a non-root user
    // holding CAP_NET_BIND_SERVICE and nothing else.
    sd.ok("systemctl start udp-reflector");
    let j = sd.wait_journal("listening on");
    assert!(j.contains("configuration OK (nothing bound)"), "{j}");
    let backend = "uring";
    assert!(j.contains(&format!("backend {backend}")), "{j}");
    let pid = sd.prop("MainPID");
    let status = sd.ok(&format!("cat /proc/{pid}/status"));
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {status}"))
            .trim()
            .to_string()
    };
    let uid: u32 = field("Uid:")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(uid, 0, "runs as root: {status}");
    assert_eq!(
        field("CapEff:"),
        "0000000000000400",
        "only CAP_NET_BIND_SERVICE"
    );
    let nspid = sd.pid1;
    let (echo, stamp) = in_netns_of(nspid, || {
        (
            ask("127.0.0.1:7", b"through systemd"),
            ask("127.0.0.1:862", &stamp_packet()),
        )
    });
    assert_eq!(echo, b"through systemd");
    assert_eq!(stamp.len(), 44, "a STAMP reflection");

    // `systemctl stop`: SIGTERM, a clean exit, the summary in the journal.
    sd.ok("systemctl stop udp-reflector");
    let j = sd.journal();
    assert!(j.contains(&format!("summary: backend {backend}")), "{j}");
    assert!(j.contains("total:  rx_packets=2 "), "{j}");
    assert_eq!(sd.prop("ExecMainStatus"), "0");
    assert_eq!(sd.prop("Result"), "success");

    // A crash is restarted...
    sd.ok("systemctl start udp-reflector");
    let pid = sd.prop("MainPID");
    sd.ok(&format!("kill -ABRT {pid}"));
    sd.wait_until(10, "restart after SIGABRT", |s| {
        s.prop("NRestarts") == "1" && s.prop("ActiveState") == "active"
    });
    sd.ok("systemctl stop udp-reflector");

    // ...a configuration error (exit status 2) is not: neither from
    // ExecStartPre's --check...
    set_args(&default, "--workers 0");
    assert!(!sd.sh("systemctl start udp-reflector").status.success());
    std::thread::sleep(Duration::from_millis(2500)); // RestartSec=1, twice over
    let j = sd.journal();
    assert!(j.contains("invalid --workers"), "{j}");
    assert_eq!(sd.prop("NRestarts"), "0", "{j}");
    assert_eq!(sd.prop("ActiveState"), "failed");
    // ...nor from the reflector itself (a busy port, which --check cannot see).
    set_args(&default, "--listen 127.0.0.1:7 --workers 1");
    let holder = in_netns_of(nspid, || UdpSocket::bind("127.0.0.1:7").unwrap());
    sd.ok("systemctl reset-failed udp-reflector; systemctl start udp-reflector");
    sd.wait_until(10, "exit 2", |s| s.prop("ActiveState") == "failed");
    std::thread::sleep(Duration::from_millis(2500));
    let j = sd.journal();
    assert!(j.contains("already in use"), "{j}");
    assert_eq!(sd.prop("ExecMainStatus"), "2");
    assert_eq!(sd.prop("NRestarts"), "0", "{j}");
    assert_eq!(sd.prop("ActiveState"), "failed");
    drop(holder);

    // A drop-in that takes io_uring away: the filter answers EPERM, the
    // reflector says so once and runs the recvmmsg/sendmmsg backend.
    sd.ok("mkdir -p /etc/systemd/system/udp-reflector.service.d && \
         printf '[Service]\\nSystemCallFilter=~io_uring_setup io_uring_enter io_uring_register\\n' \
           > /etc/systemd/system/udp-reflector.service.d/no-io-uring.conf && \
         systemctl daemon-reload && systemctl reset-failed udp-reflector && \
         systemctl start udp-reflector");
    let j = sd.wait_journal("listening on");
    assert!(j.contains("backend mmsg"), "{j}");
    assert_eq!(
        j.matches("io_uring unavailable (Operation not permitted")
            .count(),
        2,
        "once from --check (in its configuration), once from serve: {j}"
    );
    let echo = in_netns_of(nspid, || ask("127.0.0.1:7", b"no io_uring"));
    assert_eq!(echo, b"no io_uring");
    sd.ok("systemctl stop udp-reflector");
    assert!(sd.journal().contains("summary: backend mmsg"));
}

// ---------------------------------------------------------------------------
// sysctl

/// `(key, value)` of every setting in a sysctl.d file.
fn sysctl_settings(file: &str) -> Vec<(String, String)> {
    fs::read_to_string(repo(file))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY = VALUE: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

fn proc_sys(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// (major, minor) of the running kernel.
fn kernel_version() -> (u32, u32) {
    let r = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = r.trim().split(['.', '-']).map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn sysctl_files_set_only_keys_the_kernel_has() {
    let main = sysctl_settings("deploy/sysctl/90-udp-reflector.conf");
    let keys: Vec<&str> = main.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["net.core.rmem_max", "net.core.rmem_default"]);
    for k in &keys {
        assert!(proc_sys(k).exists(), "{k} does not exist on this kernel");
    }
    // The optional file holds io_uring's switch, which exists since 6.6 only.
    let uring = sysctl_settings("deploy/sysctl/91-udp-reflector-io-uring.conf");
    assert_eq!(uring, [("kernel.io_uring_disabled".into(), "0".into())]);
    assert_eq!(
        proc_sys("kernel.io_uring_disabled").exists(),
        kernel_version() >= (6, 6),
        "kernel.io_uring_disabled exists exactly from Linux 6.6 on"
    );
}

#[test]
fn sysctl_p_applies_the_main_file_in_a_private_network_namespace() {
    if !prerequisites(&["sysctl", "unshare"]) {
        return;
    }
    let file = repo("deploy/sysctl/90-udp-reflector.conf");
    let settings = sysctl_settings("deploy/sysctl/90-udp-reflector.conf");
    let keys: Vec<String> = settings
        .iter()
        .map(|(k, _)| proc_sys(k).display().to_string())
        .collect();
    // In a namespace of its own: the host's values are never touched.
    let script = format!(
        "for f in {keys}; do [ -w $f ] || {{ echo READONLY $f; exit 0; }}; done; \
         sysctl -p {file} && sysctl -n {names}",
        keys = keys.join(" "),
        file = file.display(),
        names = settings
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    );
    let o = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("sysctl:"), "sysctl -p complained: {out}");
    if out.starts_with("READONLY") {
        // This kernel keeps them host-wide: what the file's comment says.
        let host_writable = keys
            .iter()
            .all(|k| fs::metadata(k).is_ok_and(|m| m.permissions().mode() & 0o200 != 0));
        assert!(host_writable, "writable on the host: {keys:?}");
        eprintln!("net.core.rmem_* are read-only in a child namespace here: {out}");
        return;
    }
    let values: Vec<&str> = out
        .lines()
        .rev()
        .take(settings.len())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let want: Vec<&str> = settings.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, want, "{out}");
}
