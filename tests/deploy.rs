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
    // It takes part in the host's registry of reflector ports.
    let entry = sd.ok(&format!("cat /run/udp-reflector/{pid}.ports"));
    assert!(entry.contains("ports 7 862"), "{entry}");
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
    let j = sd.wait_journal("invalid --workers");
    assert_eq!(sd.prop("NRestarts"), "0", "{j}");
    assert_eq!(sd.prop("ActiveState"), "failed");
    // ...nor from the reflector itself (a busy port, which --check cannot see).
    set_args(&default, "--listen 127.0.0.1:7 --workers 1");
    let holder = in_netns_of(nspid, || UdpSocket::bind("127.0.0.1:7").unwrap());
    sd.ok("systemctl reset-failed udp-reflector; systemctl start udp-reflector");
    sd.wait_until(10, "exit 2", |s| s.prop("ActiveState") == "failed");
    std::thread::sleep(Duration::from_millis(2500));
    let j = sd.wait_journal("already in use");
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

// ---------------------------------------------------------------------------
// Docker: the seccomp profile under runc, with Docker's settings

/// Docker's default capabilities (moby daemon/pkg/oci/caps/defaults.go).
const DOCKER_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn docker_seccomp_profile_is_the_upstream_default_plus_exactly_io_uring() {
    if !have("python3") {
        skip(Need::Tools, "python3 is not installed");
        return;
    }
    let dir = TempDir::new("seccomp-gen");
    let out = dir.0.join("profile.json");
    let o = Command::new("python3")
        .arg(repo("deploy/docker/make-seccomp-profile.py"))
        .arg(repo("deploy/docker/seccomp-default.upstream.json"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        fs::read_to_string(repo("deploy/docker/seccomp-io-uring.json")).unwrap(),
        "the shipped profile is not the script's output: run deploy/docker/make-seccomp-profile.py"
    );
    let upstream = json_file(&repo("deploy/docker/seccomp-default.upstream.json"));
    let mut ours = json_file(&out);
    assert_eq!(upstream["defaultAction"], "SCMP_ACT_ERRNO");
    // Take our one rule out: what is left is the upstream profile, unchanged.
    let rules = ours["syscalls"].as_array_mut().unwrap();
    let added: Vec<serde_json::Value> = rules
        .iter()
        .filter(|r| {
            r["names"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n.as_str().unwrap().starts_with("io_uring"))
        })
        .cloned()
        .collect();
    rules.retain(|r| !added.contains(r));
    assert_eq!(ours, upstream);
    assert_eq!(added.len(), 1);
    assert_eq!(
        added[0]["names"],
        serde_json::json!(["io_uring_enter", "io_uring_register", "io_uring_setup"])
    );
    assert_eq!(added[0]["action"], "SCMP_ACT_ALLOW");
    assert!(added[0].get("args").is_none() && added[0].get("includes").is_none());
}

/// Docker's seccomp profile turned into the OCI runtime's form, the way
/// Docker does it for a container (moby profiles/seccomp: a rule applies
/// if its arches, capabilities and minimum kernel match).
fn oci_seccomp(docker: &serde_json::Value, caps: &[&str]) -> serde_json::Value {
    use serde_json::{json, Value};
    let (scmp, go) = if cfg!(target_arch = "x86_64") {
        ("SCMP_ARCH_X86_64", "amd64")
    } else if cfg!(target_arch = "aarch64") {
        ("SCMP_ARCH_AARCH64", "arm64")
    } else {
        ("SCMP_ARCH_RISCV64", "riscv64")
    };
    let mut arches = vec![json!(scmp)];
    for m in docker["archMap"].as_array().unwrap() {
        if m["architecture"] == scmp {
            arches.extend(m["subArchitectures"].as_array().unwrap().iter().cloned());
        }
    }
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let kernel = kernel_version();
    let mut syscalls = Vec::new();
    for r in docker["syscalls"].as_array().unwrap() {
        let (inc, exc) = (&r["includes"], &r["excludes"]);
        let inc_arches = strs(&inc["arches"]);
        if !inc_arches.is_empty() && !inc_arches.iter().any(|a| a == go) {
            continue;
        }
        if strs(&exc["arches"]).iter().any(|a| a == go) {
            continue;
        }
        if !strs(&inc["caps"])
            .iter()
            .all(|c| caps.contains(&c.as_str()))
        {
            continue;
        }
        if strs(&exc["caps"])
            .iter()
            .any(|c| caps.contains(&c.as_str()))
        {
            continue;
        }
        if let Some(k) = inc["minKernel"].as_str() {
            let mut it = k.split('.').map(|p| p.parse::<u32>().unwrap());
            if kernel < (it.next().unwrap(), it.next().unwrap_or(0)) {
                continue;
            }
        }
        let mut o = json!({"names": r["names"], "action": r["action"]});
        if let Some(e) = r.get("errnoRet") {
            o["errnoRet"] = e.clone();
        }
        if let Some(a) = r.get("args").filter(|a| !a.is_null()) {
            o["args"] = a.clone();
        }
        syscalls.push(o);
    }
    json!({
        "defaultAction": docker["defaultAction"],
        "defaultErrnoRet": docker["defaultErrnoRet"],
        "architectures": arches,
        "syscalls": syscalls,
    })
}

/// Copies `file` into `rootfs` at the same path.
fn copy_into(rootfs: &Path, file: &Path) {
    let to = rootfs.join(file.strip_prefix("/").unwrap());
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(file, &to).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
}

/// An OCI bundle as Docker would run the image: the binary (with its shared
/// libraries) carrying the file capability the Dockerfile gives it, user
/// 65534, Docker's default capabilities, a read-only root, the network
/// namespace `netns`, and `seccomp` (a Docker-format profile).
/// The process's privileges in a container: its capability sets (bounding,
/// effective, permitted) and no_new_privs.
struct Privileges<'a> {
    caps: &'a [&'a str],
    no_new_privs: bool,
}

/// What Docker gives a container by default.
const DOCKER: Privileges = Privileges {
    caps: &DOCKER_CAPS,
    no_new_privs: false,
};

fn oci_bundle(
    dir: &Path,
    netns: &str,
    seccomp: &serde_json::Value,
    privileges: &Privileges,
    file_cap: bool,
    args: &[&str],
) {
    let rootfs = dir.join("rootfs");
    if !rootfs.exists() {
        for d in ["proc", "dev", "sys", "tmp", "usr/local/bin"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let ldd = Command::new("ldd").arg(common::BIN).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            copy_into(&rootfs, Path::new(lib));
        }
        let bin = rootfs.join("usr/local/bin/udp-reflector");
        fs::copy(common::BIN, &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = rootfs.join("usr/local/bin/udp-reflector");
    let cap = if file_cap {
        "cap_net_bind_service=+ep"
    } else {
        "-r"
    };
    let o = Command::new("setcap").arg(cap).arg(&bin).output().unwrap();
    assert!(o.status.success() || !file_cap, "setcap: {}", text(&o));
    let mut argv = vec!["/usr/local/bin/udp-reflector"];
    argv.extend(args);
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 65534, "gid": 65534},
            "args": argv,
            "env": ["PATH=/usr/local/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": privileges.caps, "effective": privileges.caps,
                "permitted": privileges.caps,
            },
            "noNewPrivileges": privileges.no_new_privs,
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "udp-reflector",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network", "path": format!("/run/netns/{netns}")},
            ],
            "seccomp": oci_seccomp(seccomp, privileges.caps),
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    });
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// `runc run` of the bundle, its stdio ours.
fn runc_command(state: &Path, bundle: &Path, id: &str) -> Command {
    let mut cmd = Command::new("runc");
    cmd.arg("--root")
        .arg(state)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn docker_image_under_runc_uses_uring_with_our_profile_and_falls_back_under_the_default() {
    if !prerequisites(&["runc", "setcap", "ldd", "ip"]) {
        return;
    }
    if !host_has_uring() {
        skip(Need::Uring, "io_uring is refused on this host");
        return;
    }
    let ns = common::NetNs::create("runc").expect("a network namespace");
    let dir = TempDir::new("runc");
    let (state, bundle) = (dir.0.join("state"), dir.0.join("bundle"));
    fs::create_dir_all(&bundle).unwrap();
    let args = [
        "serve",
        "--json",
        "--workers",
        "1",
        "--listen",
        "0.0.0.0:7",
        "--listen",
        "0.0.0.0:862,mode=stamp",
    ];
    for (profile, backend) in [
        ("deploy/docker/seccomp-io-uring.json", "uring"),
        ("deploy/docker/seccomp-default.upstream.json", "mmsg"),
    ] {
        oci_bundle(
            &bundle,
            &ns.name,
            &json_file(&repo(profile)),
            &DOCKER,
            true,
            &args,
        );
        let id = format!("urt-{}-{backend}", std::process::id());
        let mut cmd = runc_command(&state, &bundle, &id);
        let r = match common::Reflector::start(&mut cmd).unwrap() {
            common::Started::Listening(r) => r,
            common::Started::Exited(o) => panic!("under {profile}: {o:#?}"),
        };
        assert_eq!(r.listening["backend"], backend, "under {profile}");
        let (echo, stamp) = std::thread::scope(|s| {
            s.spawn(|| {
                ns.enter_current_thread().unwrap();
                (
                    ask("127.0.0.1:7", b"in a container"),
                    ask("127.0.0.1:862", &stamp_packet()),
                )
            })
            .join()
            .unwrap()
        });
        assert_eq!(echo, b"in a container");
        assert_eq!(stamp.len(), 44);
        // `docker stop` sends SIGTERM; runc forwards it.
        let out = r.stop();
        assert_eq!(out.status.code(), Some(0), "under {profile}: {out:#?}");
        assert_eq!(
            common::counter(&out.expect_summary()["total"], "tx_packets"),
            2
        );
        let refusals = out
            .stderr
            .matches("io_uring unavailable (Operation not permitted")
            .count();
        assert_eq!(refusals, usize::from(backend == "mmsg"), "{}", out.stderr);
    }

    // Without the file capability, a non-root user cannot bind port 7 even
    // with CAP_NET_BIND_SERVICE in Docker's set: no ambient capabilities.
    oci_bundle(
        &bundle,
        &ns.name,
        &json_file(&repo("deploy/docker/seccomp-io-uring.json")),
        &DOCKER,
        false,
        &args,
    );
    let id = format!("urt-{}-nocap", std::process::id());
    let out = common::run_to_exit(
        &mut runc_command(&state, &bundle, &id),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(out.stderr.contains("0.0.0.0:7"), "{}", out.stderr);
}

/// The Dockerfile's instructions, continuation lines joined: (INSTRUCTION, rest).
fn dockerfile() -> Vec<(String, String)> {
    let raw = fs::read_to_string(repo("deploy/docker/Dockerfile")).unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut cont = false;
    for line in raw.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        let (body, more) = match l.strip_suffix('\\') {
            Some(b) => (b.trim(), true),
            None => (l, false),
        };
        if cont {
            let last = out.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(body);
        } else {
            let (i, rest) = body.split_once(' ').unwrap_or((body, ""));
            out.push((i.to_uppercase(), rest.trim().to_string()));
        }
        cont = more;
    }
    out
}

fn exec_form(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not an exec-form array ({e}): {s}"))
}

#[test]
fn dockerfile_pins_its_bases_and_caches_dependencies() {
    let df = dockerfile();
    let args: Vec<(String, String)> = df
        .iter()
        .filter(|(i, _)| i == "ARG")
        .filter_map(|(_, a)| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let mut froms = 0;
    for (_, from) in df.iter().filter(|(i, _)| i == "FROM") {
        froms += 1;
        let image = from.split_whitespace().next().unwrap();
        let image = args
            .iter()
            .find(|(k, _)| image == format!("${{{k}}}"))
            .map_or(image.to_string(), |(_, v)| v.clone());
        let (_, tag) = image
            .split_once(':')
            .unwrap_or_else(|| panic!("{image}: no tag"));
        // A version with at least major.minor, never a floating tag.
        let version = tag.split('-').next().unwrap();
        assert!(
            version.split('.').count() >= 2 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{image} is not pinned to a version"
        );
    }
    assert_eq!(froms, 2, "a build stage and a runtime stage");
    // The dependency layer builds against stubs of every target Cargo.toml names.
    let manifest = fs::read_to_string(repo("Cargo.toml")).unwrap();
    let run = df
        .iter()
        .find(|(i, r)| i == "RUN" && r.contains("benches/$b.rs"))
        .expect("a RUN that builds the dependencies against stubs")
        .1
        .clone();
    let mut lines = manifest.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "[[bench]]" {
            let name = lines.next().unwrap().split('"').nth(1).unwrap();
            assert!(
                run.contains(name),
                "bench {name} has no stub in the dependency layer"
            );
        }
    }
    let copies: Vec<&str> = df
        .iter()
        .filter(|(i, _)| i == "COPY")
        .map(|(_, r)| r.as_str())
        .collect();
    assert_eq!(
        copies[0], "Cargo.toml Cargo.lock ./",
        "manifests first, then the sources"
    );
    // The build context sends only what the build reads.
    let ignore = fs::read_to_string(repo(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
    for c in &copies {
        let src = c.split_whitespace().next().unwrap();
        if src.starts_with("--from") {
            continue;
        }
        for s in c
            .split_whitespace()
            .filter(|s| !s.ends_with("./") && *s != "./src" && *s != "./benches")
        {
            assert!(
                ignore.contains(&format!("!{s}")),
                "COPY {s} but .dockerignore leaves it out"
            );
        }
    }
    // The file capability for ports below 1024, and a non-root user.
    assert!(df.iter().any(|(i, r)| i == "RUN"
        && r.contains("setcap cap_net_bind_service=+ep /usr/local/bin/udp-reflector")));
    assert_eq!(
        df.iter().rfind(|(i, _)| i == "USER").unwrap().1,
        "65534:65534"
    );
}

#[test]
fn dockerfile_exposes_and_probes_what_the_default_command_serves() {
    let df = dockerfile();
    let find = |what: &str| {
        df.iter()
            .rfind(|(i, _)| i == what)
            .unwrap_or_else(|| panic!("no {what}"))
            .1
            .clone()
    };
    let entrypoint = exec_form(&find("ENTRYPOINT"));
    assert_eq!(entrypoint, ["/usr/local/bin/udp-reflector"]);
    let cmd = exec_form(&find("CMD"));
    // The ports the default command listens on, as the binary resolves them.
    let check = Command::new(common::BIN)
        .args(&cmd)
        .args(["--check", "--json"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));
    let j: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    let mut served: Vec<String> = j["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{}/udp",
                l["addr"].as_str().unwrap().rsplit(':').next().unwrap()
            )
        })
        .collect();
    served.dedup();
    let exposed: Vec<String> = find("EXPOSE")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(exposed, served);

    // The HEALTHCHECK, run as Docker would, against the default command in
    // a namespace of its own: healthy while it serves, unhealthy after.
    let hc = find("HEALTHCHECK");
    let probe = exec_form(
        hc.split_once("CMD")
            .expect("HEALTHCHECK ... CMD [...]")
            .1
            .trim(),
    );
    assert_eq!(probe[0], "/usr/local/bin/udp-reflector");
    if !common::is_root() {
        skip(
            Need::Netns,
            "needs root to serve the default port in a namespace of its own",
        );
        return;
    }
    let ns = common::NetNs::create("docker-hc").expect("a network namespace");
    let mut serve = Command::new(common::BIN);
    serve
        .args(&cmd)
        .args(["--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    ns.apply(&mut serve).unwrap();
    let r = match common::Reflector::start(&mut serve).unwrap() {
        common::Started::Listening(r) => r,
        common::Started::Exited(o) => panic!("the default command did not start: {o:#?}"),
    };
    let run_probe = || {
        let mut c = Command::new(common::BIN);
        c.args(&probe[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        ns.apply(&mut c).unwrap();
        common::run_to_exit(&mut c, Duration::from_secs(10)).unwrap()
    };
    let healthy = run_probe();
    assert_eq!(healthy.status.code(), Some(0), "{healthy:#?}");
    let out = r.stop();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let unhealthy = run_probe();
    assert_eq!(unhealthy.status.code(), Some(1), "{unhealthy:#?}");
    assert!(
        unhealthy.stderr.contains("--max-loss"),
        "{}",
        unhealthy.stderr
    );
}

// ---------------------------------------------------------------------------
// Kubernetes

/// Debian's python3, which sees Debian's python3-kubernetes and
/// python3-yaml (a python3 earlier on PATH may be another one).
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// Whether Debian's python3 has the Kubernetes client and YAML; else a
/// printed reason.
fn k8s_python() -> bool {
    let ok = Command::new(DEBIAN_PYTHON)
        .args(["-c", "import kubernetes, yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(
            Need::Tools,
            "python3-kubernetes (with python3-yaml) is not installed",
        );
    }
    ok
}

/// Every YAML document of a manifest, as JSON.
fn manifest(path: &str) -> Vec<serde_json::Value> {
    let o = Command::new(DEBIAN_PYTHON)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(repo(path))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// "32Mi" -> bytes.
fn quantity_bytes(q: &str) -> u64 {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let mul = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        u => panic!("unit {u} in {q}"),
    };
    n.parse::<u64>().unwrap() * mul
}

#[test]
fn kubernetes_manifests_are_valid_api_objects() {
    if !k8s_python() {
        return;
    }
    let validate = |files: &[PathBuf]| {
        Command::new(DEBIAN_PYTHON)
            .arg(repo("tests/k8s_validate.py"))
            .args(files)
            .output()
            .unwrap()
    };
    let files = [
        repo("deploy/kubernetes/daemonset.yaml"),
        repo("deploy/kubernetes/bench-job.yaml"),
    ];
    let o = validate(&files);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).matches(": valid").count(), 3, "{}", text(&o));
    // The validator sees a misspelt field and a wrong type.
    let dir = TempDir::new("k8s-bad");
    let good = fs::read_to_string(&files[0]).unwrap();
    for (from, to) in [
        ("imagePullPolicy:", "imagePulPolicy:"),
        ("containerPort: 862", "containerPort: \"862\""),
    ] {
        let bad = dir.0.join("bad.yaml");
        fs::write(&bad, good.replacen(from, to, 1)).unwrap();
        let o = validate(&[bad]);
        assert!(
            !o.status.success() && text(&o).contains("INVALID"),
            "{to}: {}",
            text(&o)
        );
    }
}

/// The DaemonSet's container, with its pod spec.
fn daemonset_container() -> (serde_json::Value, serde_json::Value) {
    let docs = manifest("deploy/kubernetes/daemonset.yaml");
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let pod = ds["spec"]["template"]["spec"].clone();
    (pod["containers"][0].clone(), pod)
}

#[test]
fn kubernetes_daemonset_pulls_locally_and_may_bind_862() {
    if !k8s_python() {
        return;
    }
    let (c, pod) = daemonset_container();
    assert_eq!(
        c["imagePullPolicy"], "IfNotPresent",
        "a loaded image is used, never pulled"
    );
    assert!(!c["image"].as_str().unwrap().ends_with(":latest"));
    assert_eq!(pod["hostNetwork"], true);
    // ports == what the args listen on.
    let mut listened: Vec<u64> = strings(&c["args"])
        .iter()
        .filter_map(|a| a.strip_prefix("--listen="))
        .map(|l| {
            l.split(',')
                .next()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    listened.sort_unstable();
    listened.dedup();
    let mut ports: Vec<u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|p| assert_eq!(p["protocol"], "UDP"))
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, listened);
    assert!(ports.contains(&862));
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(strings(&sc["capabilities"]["add"]), ["NET_BIND_SERVICE"]);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);

    // Run the image's binary with exactly that securityContext under runc:
    // user 65534, only the added capability in its sets (as containerd puts
    // it: bounding, permitted, effective), no_new_privs as
    // allowPrivilegeEscalation says, the runtime's default seccomp profile.
    // Without the added capability the same container does not even start.
    if !prerequisites(&["runc", "setcap", "ldd", "ip"]) {
        return;
    }
    assert_eq!(sc["runAsUser"], 65534, "the bundle below runs as 65534");
    let no_new_privs = !sc["allowPrivilegeEscalation"].as_bool().unwrap_or(true);
    let ns = common::NetNs::create("k8s-sc").expect("a network namespace");
    let dir = TempDir::new("k8s-sc");
    let (state, bundle) = (dir.0.join("state"), dir.0.join("bundle"));
    fs::create_dir_all(&bundle).unwrap();
    let args = [
        "serve",
        "--json",
        "--workers",
        "1",
        "--listen",
        "0.0.0.0:862,mode=stamp",
    ];
    let default_profile = json_file(&repo("deploy/docker/seccomp-default.upstream.json"));
    for (caps, binds) in [(&["CAP_NET_BIND_SERVICE"][..], true), (&[][..], false)] {
        let privileges = Privileges { caps, no_new_privs };
        oci_bundle(
            &bundle,
            &ns.name,
            &default_profile,
            &privileges,
            true,
            &args,
        );
        let id = format!("urt-{}-k8s-{binds}", std::process::id());
        let mut cmd = runc_command(&state, &bundle, &id);
        match common::Reflector::start(&mut cmd).unwrap() {
            common::Started::Listening(r) => {
                assert!(binds, "bound 862 without NET_BIND_SERVICE");
                let reply = std::thread::scope(|s| {
                    s.spawn(|| {
                        ns.enter_current_thread().unwrap();
                        ask("127.0.0.1:862", &stamp_packet())
                    })
                    .join()
                });
                let out = r.stop();
                assert_eq!(reply.map(|r| r.len()).ok(), Some(44), "{out:#?}");
                assert_eq!(out.status.code(), Some(0));
            }
            common::Started::Exited(o) => {
                assert!(
                    !binds,
                    "the manifest's securityContext cannot bind 862: {o:#?}"
                );
                // The kernel refuses to exec a binary whose file capability
                // the container cannot grant: the pod would not start.
                assert_ne!(o.status.code(), Some(0), "{o:#?}");
                assert!(o.stderr.contains("operation not permitted"), "{}", o.stderr);
            }
        }
    }
}

/// Starts the DaemonSet's container command (WORKERS = its CPU request) in
/// a network namespace of its own.
fn start_daemonset_args(
    ns: &common::NetNs,
    c: &serde_json::Value,
    backend: &str,
) -> common::Reflector {
    let cpu = c["resources"]["requests"]["cpu"].as_str().unwrap();
    let workers: u64 = cpu.parse().expect("a whole number of cores");
    let args: Vec<String> = strings(&c["args"])
        .into_iter()
        .map(|a| a.replace("$(WORKERS)", &workers.to_string()))
        .filter(|a| a != "--json")
        .collect();
    let extra = ["--json".to_string(), format!("--backend={backend}")];
    let mut cmd = common::serve_command(args.iter().skip(1).chain(&extra));
    ns.apply(&mut cmd).unwrap();
    match common::Reflector::start(&mut cmd).unwrap() {
        common::Started::Listening(r) => {
            assert_eq!(
                r.listening["cpus"].as_array().unwrap().len() as u64,
                workers
            );
            r
        }
        common::Started::Exited(o) => panic!("the DaemonSet's args do not start: {o:#?}"),
    }
}

#[test]
fn kubernetes_daemonset_fits_its_memory_limit_and_its_probe_sees_the_echo() {
    if !k8s_python() {
        return;
    }
    let (c, _) = daemonset_container();
    let env = &c["env"][0];
    assert_eq!(env["name"], "WORKERS");
    assert_eq!(
        env["valueFrom"]["resourceFieldRef"]["resource"],
        "requests.cpu"
    );
    assert!(strings(&c["args"]).contains(&"--workers=$(WORKERS)".to_string()));
    let workers: usize = c["resources"]["requests"]["cpu"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        c["resources"]["requests"], c["resources"]["limits"],
        "Guaranteed QoS"
    );
    let limit = quantity_bytes(c["resources"]["limits"]["memory"].as_str().unwrap());
    assert_eq!(
        limit,
        (16 + 20 * workers as u64) << 20,
        "the formula in the comment"
    );
    if !common::is_root() {
        skip(
            Need::Netns,
            "needs root to serve the DaemonSet's ports in a namespace",
        );
        return;
    }
    if common::usable_cpus() < workers {
        skip(
            Need::Cpus,
            format!("the CPU request asks for {workers} workers"),
        );
        return;
    }
    let ns = common::NetNs::create("k8s-ds").expect("a network namespace");
    // Both backends: mmsg is what runs under RuntimeDefault, uring with the
    // Localhost profile.
    for backend in ["mmsg", "uring"] {
        if backend == "uring" && !host_has_uring() {
            skip(Need::Uring, "io_uring is refused on this host");
            return;
        }
        let r = start_daemonset_args(&ns, &c, backend);
        let pid = r.proc.pid();
        // The worst case for memory: every buffer of every worker touched, by
        // jumbo datagrams to both modes.
        let bench = |args: &[&str]| {
            let mut b = Command::new(common::BIN);
            b.arg("bench")
                .args(args)
                .args(["--timeout", "0.2"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            ns.apply(&mut b).unwrap();
            common::run_to_exit(&mut b, Duration::from_secs(15)).unwrap()
        };
        bench(&[
            "--target",
            "127.0.0.1:7007",
            "--rate",
            "0",
            "--size",
            "9000",
            "--flows",
            "16",
            "--duration",
            "1",
        ]);
        bench(&[
            "--target",
            "[::1]:7007",
            "--rate",
            "0",
            "--size",
            "9000",
            "--flows",
            "16",
            "--duration",
            "0.5",
        ]);
        bench(&[
            "--target",
            "127.0.0.1:862",
            "--stamp",
            "--size",
            "9000",
            "--rate",
            "0",
            "--flows",
            "16",
            "--duration",
            "0.5",
        ]);
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let hwm_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap();
        eprintln!(
            "{backend}: peak RSS with {workers} workers: {hwm_kb} kB, limit {} kB",
            limit >> 10
        );
        assert!(
            hwm_kb << 10 <= limit,
            "{backend}: peak RSS {hwm_kb} kB is above the limit {limit} B"
        );

        // The readiness probe, as the kubelet runs it in the pod (host network).
        let probe_cmd = strings(&c["readinessProbe"]["exec"]["command"]);
        assert_eq!(probe_cmd[0], "/usr/local/bin/udp-reflector");
        let probe = || {
            let mut p = Command::new(common::BIN);
            p.args(&probe_cmd[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            ns.apply(&mut p).unwrap();
            common::run_to_exit(&mut p, Duration::from_secs(10)).unwrap()
        };
        let ready = probe();
        assert_eq!(ready.status.code(), Some(0), "{ready:#?}");
        let j: serde_json::Value = serde_json::from_str(&ready.stdout[0]).unwrap();
        assert!(j["received"].as_u64().unwrap() > 0, "echoes came back: {j}");
        assert_eq!(r.stop().status.code(), Some(0));
        let not_ready = probe();
        assert_eq!(not_ready.status.code(), Some(1), "{not_ready:#?}");
    }
}

/// The awk program README gives to split a bench pod's log into its files.
const SPLIT_LOG: &str = "/^--- /{f=$2; next} f{print > f}";

#[test]
fn kubernetes_bench_job_pods_merge_into_one_report() {
    if !k8s_python() {
        return;
    }
    let job = &manifest("deploy/kubernetes/bench-job.yaml")[0];
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["parallelism"], spec["completions"]);
    let c = &spec["template"]["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(strings(&c["command"]), ["/bin/sh", "-c"]);
    let script = strings(&c["args"])[0].clone();
    let readme = fs::read_to_string(repo("README.md")).unwrap();
    assert!(
        readme.contains(SPLIT_LOG),
        "README splits the logs another way"
    );
    assert!(readme.contains("udp-reflector bench merge bench-*.json bench-*.hlog"));

    // Two pods' worth, on loopback: the script as the Job runs it (its
    // /tmp made ours), udp-reflector on PATH, the Job's env but a short run.
    let mut cmd = common::serve_command(["--json", "--listen", "127.0.0.1:0", "--workers", "1"]);
    let r = match common::Reflector::start(&mut cmd).unwrap() {
        common::Started::Listening(r) => r,
        common::Started::Exited(o) => panic!("{o:#?}"),
    };
    let dir = TempDir::new("k8s-job");
    let bin = dir.0.join("bin");
    fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(common::BIN, bin.join("udp-reflector")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = script.replace("/tmp/", &format!("{}/", dir.0.display()));
    for index in 0..2 {
        let log = Command::new("sh")
            .args(["-c", &script])
            .env("PATH", &path)
            .env("TARGET", r.addr().to_string())
            .env("RATE", "2000")
            .env("DURATION", "0.5")
            .env("FLOWS", "2")
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .current_dir(&dir.0)
            .output()
            .unwrap();
        assert!(log.status.success(), "pod {index}: {}", text(&log));
        let split = Command::new("awk")
            .arg(SPLIT_LOG)
            .current_dir(&dir.0)
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut a| {
                a.stdin.take().unwrap().write_all(&log.stdout)?;
                a.wait()
            })
            .unwrap();
        assert!(split.success());
    }
    r.stop();
    let runs: Vec<serde_json::Value> = (0..2)
        .map(|i| json_file(&dir.0.join(format!("bench-{i}.json"))))
        .collect();
    let merged = Command::new("sh")
        .args([
            "-c",
            "udp-reflector bench merge --json bench-*.json bench-*.hlog",
        ])
        .env("PATH", &path)
        .current_dir(&dir.0)
        .output()
        .unwrap();
    assert!(merged.status.success(), "{}", text(&merged));
    let m: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    let sum = |k: &str| runs.iter().map(|j| j[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(m["sent"].as_u64(), Some(sum("sent")), "{m}");
    assert_eq!(m["received"].as_u64(), Some(sum("received")), "{m}");
    assert_eq!(
        m["rtt_us"]["count"].as_u64(),
        Some(sum("received")),
        "from both logs: {m}"
    );
}
