"""Processes and measurements: start and stop reflectors, run bench and
sockperf, read /proc. Nothing here decides what is measured (steps.py) or
how it is reported (report.py)."""

import contextlib
import json
import shutil
import signal
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .common import (BASELINE, BASELINE_SRC, DUTY, DUTY_SRC, CLK_TCK, LOAD_CPU, OURS, OURS_KINDS,
                     REFLECTOR_CPU, ROOT, log)

LIVE = []  # processes started and not yet stopped


# --------------------------------------------------------------------------
# Processes


class Proc:
    """A child process with its output in files, stopped by pid."""

    def __init__(self, argv, logdir, tag):
        self.argv = argv
        self.out_path = logdir / f"{tag}.out"
        self.err_path = logdir / f"{tag}.err"
        self.out = open(self.out_path, "w+")
        self.err = open(self.err_path, "w+")
        self.p = subprocess.Popen(
            argv,
            stdout=self.out,
            stderr=self.err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop it
        )
        self.pid = self.p.pid
        LIVE.append(self)

    def alive(self):
        return self.p.poll() is None

    def stdout(self):
        # The child writes to the file directly; nothing is buffered here.
        return self.out_path.read_text(errors="replace")

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def stop(self):
        """SIGTERM, then SIGKILL after 2 s. Returns the exit status."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.p.kill()
                self.p.wait(5)
        if self in LIVE:
            LIVE.remove(self)
        self.out.close()
        self.err.close()
        return self.p.returncode


def stop_all():
    for p in list(LIVE):
        with contextlib.suppress(Exception):
            p.stop()


def free_port():
    """A UDP port nobody holds right now, found by binding port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def udp_sockets(port):
    """Rows of /proc/net/udp{,6} bound to local `port`: (inode, drops)."""
    rows = []
    for f in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(f).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port:
                    rows.append((parts[9], int(parts[-1])))
    return rows


def udp_drops(port):
    return sum(d for _, d in udp_sockets(port))


def wait_bound(proc, port, timeout=5.0):
    """Waits until some socket is bound to `port` (or the process dies)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not proc.alive():
            return False
        if udp_sockets(port):
            time.sleep(0.05)
            return True
        time.sleep(0.02)
    return False


def wait_listening(proc, timeout=5.0):
    """Waits for udp-reflector's JSON "listening" line; returns its ports."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in proc.stdout().splitlines():
            if '"listening"' in line:
                ev = json.loads(line)
                return [int(a.rsplit(":", 1)[1]) for a in ev["addrs"]]
        if not proc.alive():
            return None
        time.sleep(0.02)
    return None


def ours_summary(proc):
    for line in reversed(proc.stdout().splitlines()):
        if '"summary"' in line:
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None


# --------------------------------------------------------------------------
# /proc accounting


def proc_cpu(pid, tid=None):
    """(utime+stime in ns from clock ticks, on-CPU ns from schedstat)."""
    base = f"/proc/{pid}" if tid is None else f"/proc/{pid}/task/{tid}"
    stat = Path(f"{base}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    sched = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        sched = int(Path(f"{base}/schedstat").read_text().split()[0])
    return ticks * 1_000_000_000 // CLK_TCK, sched


def ctx_switches(pid, tid=None):
    base = f"/proc/{pid}" if tid is None else f"/proc/{pid}/task/{tid}"
    vol = inv = 0
    for line in Path(f"{base}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            vol = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches"):
            inv = int(line.split()[1])
    return vol, inv


def find_thread(pid, name):
    with contextlib.suppress(OSError):
        for t in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() == name:
                    return int(t)
    return None


def cpu_stat():
    """{cpu: (busy ticks, total ticks)} from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        m = re.match(r"cpu(\d+) (.*)", line)
        if m:
            v = [int(x) for x in m.group(2).split()]
            idle = v[3] + v[4]  # idle + iowait
            total = sum(v[:8])  # up to steal; guest time is inside user
            out[int(m.group(1))] = (total - idle, total)
    return out


def busy_pct(before, after, cpu):
    b0, t0 = before.get(cpu, (0, 0))
    b1, t1 = after.get(cpu, (0, 0))
    return 100.0 * (b1 - b0) / (t1 - t0) if t1 > t0 else None


def core_use(before, after, reflector_ns):
    """Busy % of both cores, and of the reflector's core what the reflector
    process itself did not use: other work there (other processes, softirq
    for others), a measure of noise."""
    out = {"cpu1_busy_pct": busy_pct(before, after, REFLECTOR_CPU),
           "cpu0_busy_pct": busy_pct(before, after, LOAD_CPU)}
    total_ns = (after[REFLECTOR_CPU][1] - before[REFLECTOR_CPU][1]) * 1e9 / CLK_TCK
    if total_ns > 0 and out["cpu1_busy_pct"] is not None:
        out["cpu1_other_pct"] = max(0.0, out["cpu1_busy_pct"] - 100 * reflector_ns / total_ns)
    return out


class Window:
    """Samples /proc at two instants in a background thread: the start and end
    of bench's measured phase (after its warmup, before its drain), so that
    busy figures describe the load, not the idle tail."""

    def __init__(self, refl, start_in, length):
        self.refl, self.samples = refl, []
        self.thread = threading.Thread(target=self._run, args=(start_in, length), daemon=True)
        self.thread.start()

    def _run(self, start_in, length):
        t0 = time.monotonic()
        pid = self.refl.proc.pid
        tid = self.refl.thread or pid
        for at in (start_in, start_in + length):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            try:
                self.samples.append((time.monotonic(), cpu_stat(), proc_cpu(pid),
                                     proc_cpu(pid, tid)))
            except (OSError, ValueError):
                return

    def result(self):
        self.thread.join(5)
        if len(self.samples) < 2:
            return {}
        (t0, c0, (p0, _), (_, w0)), (t1, c1, (p1, _), (_, w1)) = self.samples
        out = core_use(c0, c1, p1 - p0)
        if w0 is not None and t1 > t0:
            out["worker_busy_pct"] = 100.0 * (w1 - w0) / ((t1 - t0) * 1e9)
        return out


def wait_quiet(max_wait, threshold=15.0):
    """Waits (at most max_wait s) until both cores are under `threshold` %
    busy over 0.3 s, so that runs do not share the machine with other work.
    Returns the seconds waited."""
    t0 = time.monotonic()
    while True:
        a = cpu_stat()
        time.sleep(0.3)
        b = cpu_stat()
        busy = max(busy_pct(a, b, c) or 0.0 for c in (LOAD_CPU, REFLECTOR_CPU))
        waited = time.monotonic() - t0
        if busy < threshold or waited >= max_wait:
            return waited


def vm_status(pid):
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            k, v = line.split(":")
            out[k] = int(v.split()[0])  # kB
    return out


# --------------------------------------------------------------------------
# Reflectors


class Reflector:
    """One fresh reflector process, ready to answer on `self.port`."""

    def __init__(self, kind, size, logdir, tag, mode="echo", extra=()):
        self.kind = kind
        self.self_rx = self.self_tx = self.self_overflow = None
        self.self_p99 = self.self_max = None
        self.summary = None
        self.thread = None
        for attempt in range(3):
            if self._start(kind, size, logdir, f"{tag}.{attempt}", mode, extra):
                return
            err = self.proc.stderr().strip()
            self.proc.stop()
            log(f"  {kind}: did not start ({err[-200:]}); retrying")
            time.sleep(0.3)
        raise RuntimeError(f"{kind} did not start")

    def _start(self, kind, size, logdir, tag, mode, extra):
        cpu = str(REFLECTOR_CPU)
        if kind in OURS_KINDS:
            listen = "127.0.0.1:0" if kind in ("uring-lo", "ours-sockperf") else "0.0.0.0:0"
            argv = [str(OURS), "serve", "--cpus", cpu, "--listen", listen]
            argv += ["--backend", kind.split("-")[0]] if kind != "ours-sockperf" else []
            argv += ["--no-gso"] if kind == "uring-nogso" else []
            argv += ["--busy-poll"] if kind.endswith("-busy") else []
            argv += ["--coalesce-us", "50"] if kind == "uring-coalesce" else []
            argv += ["--mode", mode, "--stats-interval", "0", "--json", *extra]
            self.proc = Proc(argv, logdir, tag)
            ports = wait_listening(self.proc)
            if not ports:
                return False
            self.port = ports[0]
            self.thread = find_thread(self.proc.pid, "reflector-0")
            return True
        self.port = free_port()
        if kind == "baseline":
            argv = ["taskset", "-c", cpu, str(BASELINE), str(self.port), "64"]
        elif kind in ("duty", "baseline-gro", "baseline-spin"):
            opt = {"duty": "--duties", "baseline-gro": "--gro", "baseline-spin": "--spin"}[kind]
            argv = ["taskset", "-c", cpu, str(DUTY), str(self.port), "64", opt]
        elif kind == "socat":
            # -b SIZE: socat moves data through a pipe, and with its default
            # 8192-byte block it merges queued datagrams into one reply.
            argv = ["taskset", "-c", cpu, "socat", "-b", str(size),
                    f"UDP4-LISTEN:{self.port},reuseaddr", "PIPE"]
        elif kind == "sockperf-server":
            argv = ["taskset", "-c", cpu, "sockperf", "server",
                    "-i", "127.0.0.1", "-p", str(self.port)]
        else:
            raise ValueError(kind)
        self.proc = Proc(argv, logdir, tag)
        if not wait_bound(self.proc, self.port):
            return False
        if kind in ("baseline", "duty", "baseline-gro", "baseline-spin") and not probe(self.port):
            return False
        # socat cannot be probed: its first peer becomes its only peer.
        time.sleep(0.1)
        return True

    def cpu(self):
        pid = self.proc.pid
        whole = proc_cpu(pid)
        tid = self.thread if self.thread else pid
        thread = proc_cpu(pid, tid)
        return whole, thread, ctx_switches(pid, tid)

    def stop(self):
        rc = self.proc.stop()
        if self.kind in OURS_KINDS:
            s = ours_summary(self.proc)
            if s:
                t = s["total"]
                self.self_rx, self.self_tx = t["rx_packets"], t["tx_packets"]
                self.self_overflow = t["rxq_overflow"]
                lat = t.get("latency_us") or {}
                self.self_p99, self.self_max = lat.get("p99"), lat.get("max")
        elif self.kind == "baseline":
            m = re.search(r"rx=(\d+) tx=(\d+)", self.proc.stdout())
            if m:
                self.self_rx, self.self_tx = int(m.group(1)) - 1, int(m.group(2)) - 1  # probe
        return rc


def probe(port, timeout=3.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.05)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s.sendto(b"compare.py probe", ("127.0.0.1", port))
            with contextlib.suppress(socket.timeout):
                if s.recv(64) == b"compare.py probe":
                    return True
    return False


# --------------------------------------------------------------------------
# Load


def bench(port, size, flows, duration, warmup, timeout, rate=None, window=None, gso=False,
          hgrm=None, target="127.0.0.1", busy_poll=False):
    argv = [str(OURS), "bench", "--target", f"{target}:{port}", "--flows", str(flows),
            "--size", str(size), "--duration", str(duration), "--warmup", str(warmup),
            "--timeout", str(timeout), "--cpus", str(LOAD_CPU), "--json"]
    if rate is not None:
        argv += ["--rate", str(rate)]
    if window is not None:
        argv += ["--window", str(window)]
    if gso:
        argv += ["--gso"]
    if hgrm:
        argv += ["--hgrm", str(hgrm)]
    if busy_poll:
        argv += ["--busy-poll"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + warmup + 15,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"bench failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    return json.loads(r.stdout)


def bench_row(b):
    rtt = b.get("rtt_us") or {}
    return {
        "pps_sent": b["pps_sent"], "pps_received": b["pps_received"],
        "sent": b["sent"], "received": b["received"], "lost": b["lost"],
        "loss_ratio": b["loss_ratio"], "warmup_sent": b["warmup_sent"],
        "echoes": b["echoes"], "local_drops": b["local_drops"], "corrupt": b["corrupt"],
        "invalid": b["invalid"], "refused": b["refused"], "gso": b["gso"],
        "rtt_p50_us": rtt.get("p50"), "rtt_p90_us": rtt.get("p90"),
        "rtt_p99_us": rtt.get("p99"), "rtt_p999_us": rtt.get("p999"),
        "rtt_max_us": rtt.get("max"),
    }


# --------------------------------------------------------------------------
# Experiments



def self_counts(r):
    return {"self_rx": r.self_rx, "self_tx": r.self_tx, "self_rxq_overflow": r.self_overflow,
            "self_latency_p99_us": r.self_p99, "self_latency_max_us": r.self_max}


def check_sockperf_full_rtt():
    try:
        h = subprocess.run(["sockperf", "ping-pong", "--help"], capture_output=True, text=True,
                           timeout=10)
        return "--full-rtt" in (h.stdout + h.stderr)
    except (OSError, subprocess.TimeoutExpired):
        return False


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_sockperf(text, full_rtt):
    text = ANSI.sub("", text)
    out = {"sockperf_metric": "full RTT" if full_rtt else "half RTT (one way)"}
    for name, pct in (("rtt_p50_us", "50.000"), ("rtt_p90_us", "90.000"),
                      ("rtt_p99_us", "99.000"), ("rtt_p999_us", "99.900")):
        m = re.search(rf"percentile {re.escape(pct)} =\s*([0-9.]+)", text)
        if not m:
            raise ValueError("sockperf printed no percentiles: " + text.strip()[-300:])
        out[name] = float(m.group(1))
    m = re.search(r"<MAX> observation =\s*([0-9.]+)", text)
    out["rtt_max_us"] = float(m.group(1)) if m else None
    m = re.search(r"avg-(?:rtt|lat(?:ency)?)=([0-9.]+)", text)
    out["rtt_mean_us"] = float(m.group(1)) if m else None
    m = re.search(r"\[Valid Duration\].*?SentMessages=(\d+); ReceivedMessages=(\d+)", text)
    if m:
        out["sent"], out["received"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"# dropped messages = (\d+)", text)
    out["lost"] = int(m.group(1)) if m else None
    return out


def sh(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20,
                              cwd=ROOT).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"


def machine_txt(started, finished, load_before, load_after):
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines()
                  if ln.startswith("model name")), "unknown")
    mem = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/meminfo").read_text()
                .splitlines() if ln.startswith("MemTotal")), "unknown")
    gov = "n/a"
    with contextlib.suppress(OSError):
        gov = Path("/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor").read_text().strip()
    hyper = "yes" if re.search(r"^flags.*\bhypervisor\b", cpuinfo, re.M) else "no"
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"])
    lines = [
        f"date: {started:%Y-%m-%d %H:%M:%S %z} to {finished:%H:%M:%S}",
        f"host: {socket.gethostname()}",
        f"cpu: {model}",
        f"cores: {os.cpu_count()} online; affinity of this run: {sorted(os.sched_getaffinity(0))}",
        f"virtual machine: {hyper}",
        f"cpu1 scaling governor: {gov}",
        f"memory: {mem}",
        f"kernel: {sh(['uname', '-srvm'])}",
        f"os: {next((ln.split('=', 1)[1].strip(chr(34)) for ln in Path('/etc/os-release').read_text().splitlines() if ln.startswith('PRETTY_NAME')), 'n/a') if Path('/etc/os-release').exists() else 'n/a'}",
        f"git commit: {sh(['git', 'rev-parse', 'HEAD'])}{' (with uncommitted changes)' if dirty and dirty != 'n/a' else ''}",
        f"rustc: {sh(['rustc', '--version'])}",
        f"gcc: {sh(['gcc', '--version']).splitlines()[0] if sh(['gcc', '--version']) else 'n/a'}",
        f"sockperf: {sh(['sockperf', '--version']).splitlines()[0] if sh(['sockperf', '--version']) else 'n/a'}",
        f"socat: {next((ln for ln in sh(['socat', '-V']).splitlines() if 'socat version' in ln), 'n/a')}",
        f"clock ticks per second (SC_CLK_TCK): {CLK_TCK}",
        f"net.core.rmem_default: {Path('/proc/sys/net/core/rmem_default').read_text().strip()}",
        f"net.core.rmem_max: {Path('/proc/sys/net/core/rmem_max').read_text().strip()}",
        f"kernel.io_uring_disabled: {Path('/proc/sys/kernel/io_uring_disabled').read_text().strip() if Path('/proc/sys/kernel/io_uring_disabled').exists() else 'n/a'}",
        f"load average before: {load_before}",
        f"load average after: {load_after}",
        f"command: {' '.join(sys.argv)}",
    ]
    return "\n".join(lines) + "\n"


def build(args):
    if args.no_build:
        return
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    BASELINE.parent.mkdir(parents=True, exist_ok=True)
    log(f"gcc -O2 {BASELINE_SRC.relative_to(ROOT)}")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(BASELINE), str(BASELINE_SRC)], check=True)
    log(f"gcc -O2 {DUTY_SRC.relative_to(ROOT)}")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(DUTY), str(DUTY_SRC)], check=True)


def preflight():
    if len(os.sched_getaffinity(0)) < 2 or not {LOAD_CPU, REFLECTOR_CPU} <= os.sched_getaffinity(0):
        sys.exit(f"compare.py: needs CPUs {LOAD_CPU} and {REFLECTOR_CPU} "
                 f"(have {sorted(os.sched_getaffinity(0))})")
    for tool in ("taskset", "socat", "sockperf"):
        if not shutil.which(tool):
            sys.exit(f"compare.py: {tool} is missing; run it through perf/compare.sh")
    for b in (OURS, BASELINE, DUTY):
        if not b.exists():
            sys.exit(f"compare.py: {b} is missing (drop --no-build)")
