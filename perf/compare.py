#!/usr/bin/env python3
"""Compare udp-reflector with a plain C reflector, socat and sockperf's server.

Run through perf/compare.sh, which installs what this needs. Everything runs
on loopback. The reflector under test is pinned to CPU 1, the load
(`udp-reflector bench`, or sockperf's client) to CPU 0. Every measurement
step runs each reflector once, freshly started, in alternating order, and the
steps are repeated for several rounds; the summary reports medians over the
rounds and ratios to the plain C baseline measured in the same session.

Measurements, for 64- and 1472-byte datagrams:
  rate   open-loop ladder of offered rates, plus one run as fast as bench can
         offer (--rate 0, with --gso when that offers more): reflected rate
         and loss from bench's own counts; the highest reflected rate with at
         most 0.1% loss.
  cpu    CPU time per reflected packet at 100k packets/s: utime+stime of the
         reflector process (/proc/PID/stat) and the on-CPU time of its worker
         thread (/proc/PID/task/TID/schedstat), before and after the run.
  rtt    ping-pong round-trip time (bench --flows 1 --window 1) and its CDF;
         sockperf's ping-pong client against sockperf's server and against
         udp-reflector's sockperf mode.
  rss    resident memory of udp-reflector --workers 2 after a load burst.

Writes perf/results/DATE-HOST/: raw.csv, summary.md, rate.png, rtt_cdf.png,
machine.txt, hgrm/ (bench's RTT distributions) and, with --profile, perf_*.txt.
"""

import argparse
import contextlib
import csv
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ROOT / "target/release/udp-reflector"
BASELINE_SRC = ROOT / "perf/baseline/mmsg_reflector.c"
BASELINE = ROOT / "target/perf/mmsg_reflector"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REFLECTOR_CPU = 1
LOAD_CPU = 0
LOSS_LIMIT = 0.001  # 0.1 %
CPU_RATE = 100_000
RSS_LIMIT_MIB = 64
SIZES = (64, 1472)
FLOWS = 8

# name -> (label for tables, flows it can serve)
REFLECTORS = {
    "uring": ("udp-reflector, uring", FLOWS),
    "mmsg": ("udp-reflector, mmsg", FLOWS),
    "baseline": ("plain C recvmmsg/sendmmsg", FLOWS),
    "socat": ("socat UDP-LISTEN PIPE", 1),
    # CPU step only: our uring backend bound to one address, so without
    # IP_PKTINFO, to show what answering from the right address costs.
    "uring-lo": ("udp-reflector, uring, 127.0.0.1 (no pktinfo)", FLOWS),
    # CPU step only: every reply its own message, to show what GSO trains save.
    "uring-nogso": ("udp-reflector, uring, --no-gso", FLOWS),
}
ORDER = ["uring", "mmsg", "baseline", "socat"]
CPU_ORDER = ["uring", "uring-lo", "uring-nogso", "mmsg", "baseline", "socat"]
# Kinds that are our own binary (started and summarised the same way).
OURS_KINDS = ("uring", "uring-lo", "uring-nogso", "mmsg", "ours-sockperf")
COLORS = {
    "uring": "tab:blue",
    "mmsg": "tab:orange",
    "baseline": "tab:green",
    "socat": "tab:red",
    "sockperf-server": "tab:purple",
    "ours-sockperf": "tab:cyan",
}

LIVE = []  # processes started and not yet stopped
PLAN = {}  # durations of this session, see plan()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
        if kind == "baseline" and not probe(self.port):
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


def bench(port, size, flows, duration, warmup, rate=None, window=None, gso=False, hgrm=None,
          target="127.0.0.1"):
    argv = [str(OURS), "bench", "--target", f"{target}:{port}", "--flows", str(flows),
            "--size", str(size), "--duration", str(duration), "--warmup", str(warmup),
            "--timeout", str(PLAN["timeout_s"]), "--cpus", str(LOAD_CPU), "--json"]
    if rate is not None:
        argv += ["--rate", str(rate)]
    if window is not None:
        argv += ["--window", str(window)]
    if gso:
        argv += ["--gso"]
    if hgrm:
        argv += ["--hgrm", str(hgrm)]
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


class Session:
    def __init__(self, args, outdir):
        self.args = args
        self.outdir = outdir
        self.logdir = Path(tempfile.mkdtemp(prefix="udp-reflector-perf."))
        self.rows = []
        self.n = 0
        self.plan = plan(args.quick)
        PLAN.update(self.plan)
        self.quiet_wait = 0.0
        self.waited = 0.0
        self.max_plain, self.use_gso = {}, {}

    def tag(self, what):
        self.n += 1
        return f"{self.n:04d}-{what}"

    def add(self, row):
        row.setdefault("quiet_wait_s", round(self.quiet_wait, 1))
        self.rows.append(row)

    def step(self, fn, *args):
        """Runs one measurement step after waiting for a quiet machine (within
        the session's waiting budget); a failure is logged, not fatal."""
        budget = min(self.plan["quiet_step_s"], self.plan["quiet_total_s"] - self.waited)
        self.quiet_wait = wait_quiet(max(0.0, budget)) if budget > 0 else 0.0
        self.waited += self.quiet_wait
        if self.quiet_wait >= 1:
            log(f"  waited {self.quiet_wait:.0f} s for other work to end")
        try:
            fn(*args)
        except (RuntimeError, OSError, ValueError, KeyError, TypeError,
                subprocess.SubprocessError) as e:
            log(f"  {fn.__name__}{args}: failed: {e!r}")
            self.add({"experiment": fn.__name__, "error": repr(e)})

    def order(self, rnd, names):
        # A B C D, then D C B A: every reflector runs early and late.
        return list(names) if rnd % 2 == 0 else list(reversed(names))

    # ---- capacity probe: how much bench can offer, with and without GSO

    def probe_capacity(self):
        p = self.plan
        for size in SIZES:
            offered = {}
            for gso in (False, True):
                r = Reflector("baseline", size, self.logdir, self.tag("probe"))
                try:
                    b = bench(r.port, size, FLOWS, p["probe_s"], p["warmup_s"], rate=0, gso=gso)
                finally:
                    r.stop()
                offered[gso] = b["pps_sent"]
                self.add({"experiment": "probe", "round": 0, "size": size,
                          "reflector": "baseline", "flows": FLOWS, "rate": 0,
                          **bench_row(b)})
            self.max_plain[size] = offered[False]
            self.use_gso[size] = offered[True] > offered[False]
            log(f"probe {size} B: bench offers {offered[False]:.0f} pps plain, "
                f"{offered[True]:.0f} pps with GSO")

    def ladder(self, size):
        return sorted(set(self.plan["ladder"])) + [0]

    def measured(self, row, kind, size, tag, body, errors, counts=True, mode="echo"):
        """Starts reflector `kind`, fills `row` with body(r, row), stops it and records
        the row, with the error if the start or `body` failed (`errors`: what `body` may
        raise). Returns the row, or None if the reflector did not start."""
        try:
            r = Reflector(kind, size, self.logdir, self.tag(tag), mode=mode)
        except RuntimeError as e:
            self.add({**row, "error": str(e)})
            return None
        try:
            body(r, row)
        except errors as e:
            row["error"] = str(e)
        finally:
            r.stop()
        if counts:
            row.update(self_counts(r))
        self.add(row)
        return row

    # ---- rate ladder

    def rate_step(self, rnd, size, rate):
        p = self.plan
        gso = rate == 0 and self.use_gso[size]
        for kind in self.order(rnd, ORDER):
            flows = REFLECTORS[kind][1]
            row = {"experiment": "rate", "round": rnd, "size": size, "reflector": kind,
                   "flows": flows, "rate": rate}

            def body(r, row):
                win = Window(r, p["warmup_s"] + 0.05, p["rate_s"] - 0.1)
                b = bench(r.port, size, flows, p["rate_s"], p["warmup_s"], rate=rate, gso=gso)
                row.update(bench_row(b))
                row["reflector_socket_drops"] = udp_drops(r.port)
                row.update(win.result())

            if self.measured(row, kind, size, f"rate-{kind}", body,
                             (RuntimeError, subprocess.TimeoutExpired, ValueError)) is None:
                continue
            if "error" not in row:
                log(f"  rate r{rnd} {size:>4} B {kind:<8} offered {row['pps_sent']:>9.0f} "
                    f"reflected {row['pps_received']:>9.0f} loss {100 * row['loss_ratio']:.3f}% "
                    f"worker {fmt(row.get('worker_busy_pct'))}% cpu1 {fmt(row.get('cpu1_busy_pct'))}%")
            else:
                log(f"  rate r{rnd} {size} B {kind}: {row['error']}")

    # ---- CPU per packet at a fixed rate

    def cpu_step(self, rnd, size):
        p = self.plan
        kinds = CPU_ORDER if p["cpu_no_pktinfo"] else ORDER
        for kind in self.order(rnd, kinds):
            flows = REFLECTORS[kind][1]
            row = {"experiment": "cpu", "round": rnd, "size": size, "reflector": kind,
                   "flows": flows, "rate": CPU_RATE}

            def body(r, row):
                c0 = cpu_stat()
                (p0, s0), (tp0, ts0), (v0, i0) = r.cpu()
                b = bench(r.port, size, flows, p["cpu_s"], p["warmup_s"], rate=CPU_RATE)
                (p1, s1), (tp1, ts1), (v1, i1) = r.cpu()
                c1 = cpu_stat()
                row.update(bench_row(b))
                pkts = b["echoes"] + b["local_drops"]  # every reply the reflector sent
                row["packets"] = pkts
                row["proc_cpu_ns"] = p1 - p0
                row["proc_sched_ns"] = (s1 - s0) if s0 is not None else None
                row["thread_cpu_ns"] = tp1 - tp0
                row["thread_sched_ns"] = (ts1 - ts0) if ts0 is not None else None
                row["ns_per_pkt"] = (p1 - p0) / pkts if pkts else None
                row["thread_ns_per_pkt"] = (
                    (ts1 - ts0) / pkts if pkts and ts0 is not None else None)
                row["wakeups_per_pkt"] = (v1 - v0) / pkts if pkts else None
                row["preemptions"] = i1 - i0
                row.update(core_use(c0, c1, p1 - p0))
                secs = (c1[REFLECTOR_CPU][1] - c0[REFLECTOR_CPU][1]) / CLK_TCK
                row["cpu1_ns_per_pkt"] = (
                    row["cpu1_busy_pct"] / 100 * secs * 1e9 / pkts if pkts else None)
                row["reflector_socket_drops"] = udp_drops(r.port)

            if self.measured(row, kind, size, f"cpu-{kind}", body,
                             (RuntimeError, subprocess.TimeoutExpired, ValueError,
                              OSError)) is None:
                continue
            if "error" not in row:
                log(f"  cpu  r{rnd} {size:>4} B {kind:<8} {fmt(row['ns_per_pkt'])} ns/pkt "
                    f"(thread {fmt(row['thread_ns_per_pkt'], '.0f')}), "
                    f"{row['packets']} pkts, loss {100 * row['loss_ratio']:.3f}%")
            else:
                log(f"  cpu  r{rnd} {size} B {kind}: {row['error']}")

    # ---- ping-pong RTT

    def rtt_step(self, rnd, size):
        p = self.plan
        hdir = self.outdir / "hgrm"
        hdir.mkdir(exist_ok=True)
        for kind in self.order(rnd, ORDER):
            row = {"experiment": "rtt", "round": rnd, "size": size, "reflector": kind,
                   "flows": 1, "window": 1}
            hgrm = hdir / f"rtt_{kind}_{size}B_r{rnd}.hgrm"

            def body(r, row):
                b = bench(r.port, size, 1, p["rtt_s"], p["rtt_warmup_s"], window=1, hgrm=hgrm)
                row.update(bench_row(b))
                row["hgrm"] = str(hgrm.relative_to(self.outdir))

            if self.measured(row, kind, size, f"rtt-{kind}", body,
                             (RuntimeError, subprocess.TimeoutExpired, ValueError),
                             counts=False) is None:
                continue
            if "error" not in row:
                log(f"  rtt  r{rnd} {size:>4} B {kind:<8} p50 {row['rtt_p50_us']:.1f} us "
                    f"p99 {row['rtt_p99_us']:.1f} us")

    # ---- sockperf ping-pong

    def sockperf_step(self, rnd, size):
        p = self.plan
        for kind in self.order(rnd, ["sockperf-server", "ours-sockperf"]):
            row = {"experiment": "sockperf", "round": rnd, "size": size, "reflector": kind,
                   "flows": 1}

            def body(r, row):
                argv = ["taskset", "-c", str(LOAD_CPU), "sockperf", "ping-pong",
                        "-i", "127.0.0.1", "-p", str(r.port), "-t", str(p["sockperf_s"]),
                        "-m", str(size)]
                if SOCKPERF_FULL_RTT:
                    argv.append("--full-rtt")
                out = subprocess.run(argv, capture_output=True, text=True,
                                     stdin=subprocess.DEVNULL, timeout=p["sockperf_s"] + 15)
                row.update(parse_sockperf(out.stdout + out.stderr))

            if self.measured(row, kind, size, kind, body,
                             (subprocess.TimeoutExpired, ValueError), mode="sockperf") is None:
                continue
            if "error" not in row:
                log(f"  sockperf r{rnd} {size} B {kind:<15} p50 {row['rtt_p50_us']:.1f} us "
                    f"p99 {row['rtt_p99_us']:.1f} us ({row['sockperf_metric']})")
            else:
                log(f"  sockperf r{rnd} {size} B {kind}: {row['error']}")

    # ---- resident memory with two workers

    def rss(self):
        p = self.plan
        for backend in ("uring", "mmsg"):
            argv = [str(OURS), "serve", "--workers", "2", "--backend", backend,
                    "--listen", "0.0.0.0:0", "--listen", "[::]:0",
                    "--stats-interval", "0", "--json"]
            proc = Proc(argv, self.logdir, self.tag(f"rss-{backend}"))
            row = {"experiment": "rss", "round": 0, "reflector": backend, "workers": 2}
            try:
                ports = wait_listening(proc)
                if not ports:
                    raise RuntimeError(f"did not start: {proc.stderr().strip()[-200:]}")
                time.sleep(0.2)
                row["vmrss_idle_kib"] = vm_status(proc.pid)["VmRSS"]
                for size, target, port in ((64, "127.0.0.1", ports[0]),
                                           (1472, "127.0.0.1", ports[0]),
                                           (1472, "[::1]", ports[1])):
                    bench(port, size, FLOWS, p["rss_burst_s"], 0.0, rate=0, gso=True,
                          target=target)
                time.sleep(0.2)
                st = vm_status(proc.pid)
                row["vmrss_kib"], row["vmhwm_kib"] = st["VmRSS"], st["VmHWM"]
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, OSError) as e:
                row["error"] = str(e)
            finally:
                proc.stop()
            self.add(row)
            if "error" not in row:
                log(f"  rss  {backend}: idle {row['vmrss_idle_kib']} KiB, after burst "
                    f"{row['vmrss_kib']} KiB (peak {row['vmhwm_kib']} KiB)")
            else:
                log(f"  rss  {backend}: {row['error']}")

    # ---- optional profile of the worker at 100k pps

    def profile(self, size=64):
        if not shutil.which("perf"):
            log("profile: no perf on PATH; skipped")
            return
        secs = self.plan["cpu_s"]
        for kind in ("uring", "mmsg", "baseline"):
            r = Reflector(kind, size, self.logdir, self.tag(f"profile-{kind}"))
            tid = r.thread or r.proc.pid
            data = self.logdir / f"perf-{kind}.data"
            stat_out = self.logdir / f"perf-{kind}.stat"
            try:
                rec = subprocess.Popen(
                    ["perf", "record", "-g", "-F", "2999", "-t", str(tid), "-o", str(data),
                     "--", "sleep", str(secs)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                st = subprocess.Popen(
                    ["perf", "stat", "-x", ",", "-o", str(stat_out), "-t", str(tid),
                     "-e", "task-clock,context-switches,raw_syscalls:sys_enter",
                     "--", "sleep", str(secs)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                b = bench(r.port, size, FLOWS, secs, 0.0, rate=CPU_RATE)
                rec.wait(secs + 30)
                st.wait(secs + 30)
                rep = subprocess.run(
                    ["perf", "report", "-i", str(data), "--no-children", "--stdio",
                     "--sort", "sym", "-g", "none", "--percent-limit", "0.7"],
                    capture_output=True, text=True, timeout=120).stdout
                dso = subprocess.run(
                    ["perf", "report", "-i", str(data), "--no-children", "--stdio",
                     "--sort", "dso", "-g", "none"],
                    capture_output=True, text=True, timeout=120).stdout
                lines = [ln for ln in rep.splitlines() if ln.strip() and not ln.startswith("#")]
                dlines = [ln for ln in dso.splitlines() if ln.strip() and not ln.startswith("#")]
                stat = stat_out.read_text() if stat_out.exists() else ""
                with open(self.outdir / f"perf_{kind}.txt", "w") as f:
                    f.write(f"# {REFLECTORS[kind][0]}: worker thread {tid}, {size}-byte "
                            f"datagrams, {CPU_RATE} pps offered by bench, {secs} s\n")
                    f.write(f"# bench: sent {b['sent']}, received {b['received']}, "
                            f"echoes {b['echoes']}\n")
                    f.write("\n## perf stat (CSV: value,unit,event,...)\n")
                    f.write("\n".join(ln for ln in stat.splitlines() if ln and ln[0] != "#"))
                    f.write("\n\n## by shared object (self)\n" + "\n".join(dlines[:12]))
                    f.write("\n\n## top symbols (self, >= 0.7%)\n" + "\n".join(lines[:40]) + "\n")
                log(f"  profile {kind}: perf_{kind}.txt")
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                log(f"  profile {kind}: {e}")
            finally:
                r.stop()


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


SOCKPERF_FULL_RTT = False
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_sockperf(text):
    text = ANSI.sub("", text)
    out = {"sockperf_metric": "full RTT" if SOCKPERF_FULL_RTT else "half RTT (one way)"}
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


# --------------------------------------------------------------------------
# Plan


def plan(quick):
    if quick:
        return dict(rounds=2, warmup_s=0.2, rate_s=0.7, probe_s=0.7, cpu_s=1.5,
                    rtt_s=0.7, rtt_warmup_s=0.1, sockperf_s=1, rss_burst_s=0.5,
                    timeout_s=0.3, ladder=(40_000, 80_000, 120_000), quiet_step_s=4,
                    cpu_no_pktinfo=False,
                    quiet_total_s=10)
    return dict(rounds=2, warmup_s=0.5, rate_s=2.0, probe_s=1.0, cpu_s=5.0,
                rtt_s=2.0, rtt_warmup_s=0.3, sockperf_s=5, rss_burst_s=1.0,
                timeout_s=0.5, ladder=(20_000, 40_000, 60_000, 80_000, 100_000, 120_000),
                quiet_step_s=20, quiet_total_s=100, cpu_no_pktinfo=True)


# --------------------------------------------------------------------------
# Results


FIELDS = [
    "experiment", "round", "size", "reflector", "flows", "rate", "window", "gso",
    "pps_sent", "pps_received", "sent", "received", "lost", "loss_ratio", "warmup_sent",
    "echoes", "local_drops", "corrupt", "invalid", "refused",
    "rtt_p50_us", "rtt_p90_us", "rtt_p99_us", "rtt_p999_us", "rtt_max_us", "rtt_mean_us",
    "sockperf_metric", "hgrm",
    "packets", "proc_cpu_ns", "proc_sched_ns", "thread_cpu_ns", "thread_sched_ns",
    "ns_per_pkt", "thread_ns_per_pkt", "cpu1_ns_per_pkt", "wakeups_per_pkt", "preemptions",
    "worker_busy_pct", "cpu0_busy_pct", "cpu1_busy_pct", "cpu1_other_pct", "quiet_wait_s",
    "reflector_socket_drops",
    "self_rx", "self_tx", "self_rxq_overflow", "self_latency_p99_us", "self_latency_max_us",
    "workers", "vmrss_idle_kib", "vmrss_kib", "vmhwm_kib", "error",
]


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def fmt(v, spec=".0f"):
    return "n/a" if v is None else format(v, spec)


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None and "error" not in r]
    return statistics.median(vals) if vals else None


def si(v):
    if v is None:
        return "n/a"
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def ratio(v, base):
    if v is None or not base:
        return "n/a"
    return f"{v / base:.2f}x"


def rate_points(rows, size, kind):
    """Per offered-rate setting: medians over rounds."""
    pts = []
    for rate in sorted({r["rate"] for r in rows if r["experiment"] == "rate"},
                       key=lambda x: (x == 0, x)):
        rs = [r for r in rows if r["experiment"] == "rate" and r["size"] == size
              and r["reflector"] == kind and r["rate"] == rate and "error" not in r]
        if rs:
            pts.append({"rate": rate, "offered": med(rs, "pps_sent"),
                        "reflected": med(rs, "pps_received"), "loss": med(rs, "loss_ratio"),
                        "worker": med(rs, "worker_busy_pct"), "cpu1": med(rs, "cpu1_busy_pct"),
                        "cpu0": med(rs, "cpu0_busy_pct"), "n": len(rs)})
    return pts


def best_by_round(rows, size, kind):
    """Median over rounds of each round's highest reflected rate with loss
    within the limit; whether every round's best was its highest offered load;
    and the per-round values."""
    per_round, bound = [], True
    for rnd in sorted({r["round"] for r in rows if r["experiment"] == "rate"}):
        rs = [r for r in rows if r["experiment"] == "rate" and r["size"] == size
              and r["reflector"] == kind and r["round"] == rnd and "error" not in r]
        if not rs:
            continue
        ok = [r for r in rs if r["loss_ratio"] <= LOSS_LIMIT]
        if not ok:
            per_round.append(0.0)
            bound = False
            continue
        best = max(ok, key=lambda r: r["pps_received"])
        per_round.append(best["pps_received"])
        bound &= best["pps_sent"] >= max(r["pps_sent"] for r in rs)
    if not per_round:
        return None, False, []
    return statistics.median(per_round), bound, per_round


def read_sysctl(name):
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return "n/a"


def summarize(s, started, finished):
    rows, p = s.rows, s.plan
    out = []
    w = out.append
    host = socket.gethostname().split(".")[0]
    w(f"# udp-reflector performance comparison, {started:%Y-%m-%d} on {host}\n")
    w(f"Produced by `bash perf/compare.sh{' --quick' if s.args.quick else ''}` in "
      f"{(finished - started).total_seconds() / 60:.1f} minutes. Loopback only. "
      f"Reflector under test pinned to CPU {REFLECTOR_CPU}, load (`udp-reflector bench`, "
      f"sockperf's client) pinned to CPU {LOAD_CPU}. Each step runs every reflector once, "
      f"freshly started, in alternating order (A B C D, then D C B A); "
      f"{p['rounds']} rounds; figures are medians over rounds, and ratios are to the plain C "
      f"baseline of the same session. The machine is in machine.txt; every run is a row of "
      f"raw.csv.\n")
    w("Reflectors:\n")
    w("- **udp-reflector, uring**: `udp-reflector serve --cpus 1 --backend uring "
      "--listen 0.0.0.0:PORT` (wildcard address, so every reply carries IP_PKTINFO).")
    w("- **udp-reflector, mmsg**: the same with `--backend mmsg`.")
    w("- **udp-reflector, uring, 127.0.0.1 (no pktinfo)**, CPU step only (not with --quick): `--listen "
      "127.0.0.1:PORT`. A socket bound to one address needs no IP_PKTINFO, so the "
      "difference to the wildcard row is what answering from the right address costs.")
    w("- **udp-reflector, uring, --no-gso**, CPU step only (not with --quick): the uring row "
      "with every reply its own message, so the difference is what GSO trains save.")
    w("- **plain C recvmmsg/sendmmsg**: `taskset -c 1 target/perf/mmsg_reflector PORT 64` "
      "(perf/baseline/mmsg_reflector.c: one thread, blocking recvmmsg MSG_WAITFORONE of 64, "
      "one sendmmsg back, no pktinfo, no counters).")
    w(f"- **socat**: `taskset -c 1 socat -b SIZE UDP4-LISTEN:PORT,reuseaddr PIPE`, with "
      f"**1 flow** instead of {FLOWS}: UDP-LISTEN connects its socket to the first peer, so "
      f"datagrams from any other source port are refused (ICMP port unreachable). `-b SIZE` "
      f"is needed for correct echoes: socat passes data through a pipe, and with its default "
      f"8192-byte blocks it merges queued datagrams into one larger reply under load (bench "
      f"counts every such reply `corrupt`).\n")

    # Rate.
    w("## Highest reflected rate with at most 0.1% loss\n")
    w(f"{FLOWS} flows (socat 1), open loop: `bench --rate R --cpus {LOAD_CPU}` over a ladder "
      f"of offered rates ({', '.join(si(x) for x in p['ladder'])} pps), plus one run at "
      f"`--rate 0` (as fast as bench can; with `--gso` where the probe at the start of the "
      f"session showed that GSO offers more). {p['rate_s']} s measured after a "
      f"{p['warmup_s']} s warmup per run. Loss is bench's own count: datagrams sent and not "
      f"echoed within {p['timeout_s']} s. Per round, the best is the highest reflected rate "
      f"among that round's runs with at most 0.1% loss; the table gives the median over rounds "
      f"(a round with no such run counts 0). \u2265: in every round that best was also the "
      f"highest load bench offered, so the reflector's own limit is higher.\n")
    probe = {(r["size"], r["gso"]): r["pps_sent"] for r in rows
             if r["experiment"] == "probe" and "error" not in r}
    for size in SIZES:
        w(f"### {size}-byte datagrams\n")
        if (size, False) in probe:
            w(f"Probe against the baseline: bench offers {si(probe[(size, False)])} pps "
              f"without GSO and {si(probe.get((size, True)))} pps with it"
              f"{'; the --rate 0 runs use --gso' if s.use_gso.get(size) else ''}.\n")
        w("| reflector | flows | reflected pps, loss \u2264 0.1% | rounds | vs baseline "
          "| --rate 0: offered | reflected | vs baseline | loss | worker CPU busy |")
        w("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        base_best, _, _ = best_by_round(rows, size, "baseline")
        base_sat = next((q for q in rate_points(rows, size, "baseline") if q["rate"] == 0), None)
        for kind in ORDER:
            pts = rate_points(rows, size, kind)
            if not pts:
                continue
            best, bound, per_round = best_by_round(rows, size, kind)
            sat = next((q for q in pts if q["rate"] == 0), None)
            ge = "\u2265 " if bound else ""
            w(f"| {REFLECTORS[kind][0]} | {REFLECTORS[kind][1]} | {ge}{si(best)} | "
              f"{' / '.join(si(x) for x in per_round)} | {ratio(best, base_best)} | "
              f"{si(sat['offered']) if sat else 'n/a'} | {si(sat['reflected']) if sat else 'n/a'} | "
              f"{ratio(sat['reflected'] if sat else None, base_sat['reflected'] if base_sat else None)} | "
              f"{fmt(100 * sat['loss'] if sat else None, '.1f')}% | "
              f"{fmt(sat['worker'] if sat else None)}% |")
        w("")
        w("Every ladder step, median over rounds: reflected pps (loss %; the reflector's worker "
          "thread busy %).\n")
        rates = [q["rate"] for q in rate_points(rows, size, "baseline")] or list(s.ladder(size))
        w("| reflector | " + " | ".join(si(x) if x else "--rate 0" for x in rates) + " |")
        w("| --- |" + " ---: |" * len(rates))
        for kind in ORDER:
            pts = {q["rate"]: q for q in rate_points(rows, size, kind)}
            if pts:
                cells = []
                for x in rates:
                    q = pts.get(x)
                    cells.append("n/a" if not q else
                                 f"{si(q['reflected'])} ({100 * q['loss']:.2g}%; "
                                 f"{fmt(q['worker'])}%)")
                w(f"| {REFLECTORS[kind][0]} | " + " | ".join(cells) + " |")
        w("")
    lossy = [r for r in rows if r["experiment"] == "rate" and "error" not in r
             and r.get("lost") and r.get("reflector_socket_drops") is not None]
    at_sock = [r for r in lossy if r["reflector_socket_drops"] >= r["lost"]]
    w(f"Where the loss happened: in {len(at_sock)} of {len(lossy)} runs with loss, the drop "
      f"counter of the reflector's own socket (/proc/net/udp) covers all of bench's losses "
      f"(it also counts warmup drops): the datagrams were dropped at the reflector's receive "
      f"queue (default SO_RCVBUF, net.core.rmem_default = {read_sysctl('net/core/rmem_default')}"
      f" bytes), not in bench or in the network stack. Every point is plotted in rate.png.\n")

    # CPU.
    w(f"## CPU time per reflected packet at {si(CPU_RATE)} packets/s\n")
    w(f"{FLOWS} flows (socat 1), `bench --rate {CPU_RATE}`, {p['cpu_s']} s after a "
      f"{p['warmup_s']} s warmup. Packets: every echo bench read (warmup included) plus any its "
      f"sockets dropped, i.e. every reply the reflector sent in the window. **process**: utime+"
      f"stime of the reflector process from /proc/PID/stat (clock ticks of "
      f"{1000 // CLK_TCK} ms, read right before and right after the bench run). **worker**: "
      f"on-CPU time of the thread that does the work (udp-reflector's `reflector-0`, the "
      f"baseline's and socat's only thread) from /proc/PID/task/TID/schedstat, in ns. "
      f"**wakeups/pkt**: the worker's voluntary context switches per packet (1 means one "
      f"sleep per datagram; 1/64 would be a full batch per wakeup). **CPU {REFLECTOR_CPU}**: "
      f"busy time of the whole core from /proc/stat, which also holds softirq work and "
      f"anything else that ran there (tick-sampled, so coarse). The kernel work of delivering each reply over loopback "
      f"runs inside the reflector's sendmmsg, so it is part of every figure here.\n")
    for size in SIZES:
        w(f"### {size}-byte datagrams\n")
        w("| reflector | flows | reflected pps | loss | ns/pkt, process | vs baseline | "
          "ns/pkt, worker | vs baseline | wakeups/pkt | ns/pkt, CPU 1 |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

        def sel(kind):
            return [r for r in rows if r["experiment"] == "cpu" and r["size"] == size
                    and r["reflector"] == kind and "error" not in r]

        bp, bt = med(sel("baseline"), "ns_per_pkt"), med(sel("baseline"), "thread_ns_per_pkt")
        for kind in CPU_ORDER:
            rs = sel(kind)
            if not rs:
                continue
            np_, nt = med(rs, "ns_per_pkt"), med(rs, "thread_ns_per_pkt")
            w(f"| {REFLECTORS[kind][0]} | {REFLECTORS[kind][1]} | {si(med(rs, 'pps_received'))} | "
              f"{fmt(100 * med(rs, 'loss_ratio'), '.3f')}% | {fmt(np_)} | {ratio(np_, bp)} | "
              f"{fmt(nt)} | {ratio(nt, bt)} | {fmt(med(rs, 'wakeups_per_pkt'), '.3f')} | "
              f"{fmt(med(rs, 'cpu1_ns_per_pkt'))} |")
        w("")

    # RTT.
    w("## Ping-pong round-trip time\n")
    w(f"`bench --flows 1 --window 1`: one datagram in flight, {p['rtt_s']} s after a "
      f"{p['rtt_warmup_s']} s warmup; RTT from just before bench's sendmmsg to its read of the "
      f"echo, both on CPU {LOAD_CPU}. CDFs in rtt_cdf.png, distributions in hgrm/.\n")
    for size in SIZES:
        w(f"### {size}-byte datagrams\n")
        w("| reflector | round trips | p50 \u00b5s | p90 \u00b5s | p99 \u00b5s | p99.9 \u00b5s "
          "| p50 vs baseline | p99 vs baseline |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

        def sel(kind):
            return [r for r in rows if r["experiment"] == "rtt" and r["size"] == size
                    and r["reflector"] == kind and "error" not in r]

        b50, b99 = med(sel("baseline"), "rtt_p50_us"), med(sel("baseline"), "rtt_p99_us")
        for kind in ORDER:
            rs = sel(kind)
            if not rs:
                continue
            w(f"| {REFLECTORS[kind][0]} | {si(med(rs, 'received'))} | "
              f"{fmt(med(rs, 'rtt_p50_us'), '.1f')} | {fmt(med(rs, 'rtt_p90_us'), '.1f')} | "
              f"{fmt(med(rs, 'rtt_p99_us'), '.1f')} | {fmt(med(rs, 'rtt_p999_us'), '.1f')} | "
              f"{ratio(med(rs, 'rtt_p50_us'), b50)} | {ratio(med(rs, 'rtt_p99_us'), b99)} |")
        w("")
    sp = [r for r in rows if r["experiment"] == "sockperf"]
    if sp:
        metric = next((r["sockperf_metric"] for r in sp if r.get("sockperf_metric")), "?")
        w("### sockperf ping-pong\n")
        w(f"`taskset -c {LOAD_CPU} sockperf ping-pong -i 127.0.0.1 -p PORT -t "
          f"{p['sockperf_s']} -m SIZE{' --full-rtt' if SOCKPERF_FULL_RTT else ''}` against "
          f"`taskset -c {REFLECTOR_CPU} sockperf server -i 127.0.0.1 -p PORT` and against "
          f"`udp-reflector serve --mode sockperf --cpus {REFLECTOR_CPU} --listen "
          f"127.0.0.1:PORT`. sockperf reports half the round trip unless given --full-rtt; "
          f"these figures are: **{metric}** (\u00b5s), over sockperf's own valid window.\n")
        w("| server | size | messages | p50 | p90 | p99 | p99.9 | mean | p50 vs sockperf server |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for size in sorted({r["size"] for r in sp}):
            base = med([r for r in sp if r["size"] == size
                        and r["reflector"] == "sockperf-server" and "error" not in r],
                       "rtt_p50_us")
            for kind, label in (("sockperf-server", "sockperf server"),
                                ("ours-sockperf", "udp-reflector --mode sockperf (uring)")):
                rs = [r for r in sp if r["size"] == size and r["reflector"] == kind
                      and "error" not in r]
                if rs:
                    w(f"| {label} | {size} | {si(med(rs, 'received'))} | "
                      f"{fmt(med(rs, 'rtt_p50_us'), '.1f')} | {fmt(med(rs, 'rtt_p90_us'), '.1f')} | "
                      f"{fmt(med(rs, 'rtt_p99_us'), '.1f')} | {fmt(med(rs, 'rtt_p999_us'), '.1f')} | "
                      f"{fmt(med(rs, 'rtt_mean_us'), '.1f')} | {ratio(med(rs, 'rtt_p50_us'), base)} |")
        w("")

    # RSS.
    rss = [r for r in rows if r["experiment"] == "rss"]
    if rss:
        w("## Resident memory, two workers\n")
        w("`udp-reflector serve --workers 2 --backend B --listen 0.0.0.0:0 --listen [::]:0` "
          "with every other flag at its default (uring: 256 ring buffers of 9216 + 176 bytes "
          "per worker), after bursts of `bench --rate 0 --gso` with 64- and 1472-byte "
          f"datagrams over IPv4 and 1472-byte over IPv6 ({p['rss_burst_s']} s each). "
          f"Limit: {RSS_LIMIT_MIB} MiB.\n")
        w("| backend | VmRSS idle | VmRSS after the burst | VmHWM (peak) | under the limit |")
        w("| --- | ---: | ---: | ---: | --- |")
        for r in rss:
            if "error" in r:
                w(f"| {r['reflector']} | error: {r['error']} | | | |")
                continue
            ok = r["vmhwm_kib"] < RSS_LIMIT_MIB * 1024
            w(f"| {r['reflector']} | {r['vmrss_idle_kib'] / 1024:.1f} MiB | "
              f"{r['vmrss_kib'] / 1024:.1f} MiB | {r['vmhwm_kib'] / 1024:.1f} MiB | "
              f"{'yes' if ok else '**NO**'} |")
        w("")

    # Notes.
    errs = [r for r in rows if "error" in r]
    noisy = [r for r in rows if (r.get("cpu1_other_pct") or 0) > 10 and "error" not in r]
    w("## Notes\n")
    w(f"- Noise: before each step the script waits for both cores to be under 15% busy "
      f"(at most {p['quiet_step_s']} s a step, {p['quiet_total_s']} s in all; it waited "
      f"{s.waited:.0f} s). raw.csv's `cpu1_other_pct` is the share of CPU {REFLECTOR_CPU} "
      f"that the reflector process did not use during a run: other processes, or "
      f"softirq work run outside its context. "
      + (f"{len(noisy)} of {len([r for r in rows if r.get('cpu1_other_pct') is not None])} "
         f"runs had more than 10%: "
         + ", ".join(sorted({f"{r['experiment']} {r.get('size')} B {r['reflector']} "
                             f"r{r['round']} ({r['cpu1_other_pct']:.0f}%)" for r in noisy})[:12])
         + ("" if len(noisy) <= 12 else ", ...") + "."
         if noisy else "No run had more than 10%."))
    w("- Both cores of a 2-core machine are in use: bench's sender and receiver threads share "
      f"CPU {LOAD_CPU} with the kernel's loopback receive work for every request, and the "
      f"reflector's core does the loopback delivery of every reply inside its sendmmsg. The "
      f"worker-busy figures (the reflector's worker thread's on-CPU share during bench's "
      f"measured phase) say whether the reflector or the load generator ran out first; ratios within one session are the figures to trust, absolute rates "
      f"depend on the machine.")
    w("- `reflector_socket_drops` in raw.csv is the drops column of /proc/net/udp for the "
      "reflector's port (datagrams lost at its receive queue); `self_*` are the reflector's "
      "own counters where it has them.")
    w(f"- sockperf rows are {('full round trips' if SOCKPERF_FULL_RTT else 'half round trips')}"
      "; bench's rows are always full round trips.")
    if errs:
        w(f"- {len(errs)} run(s) failed and are left out of the medians; see the `error` "
          f"column of raw.csv.")
    w("")
    return "\n".join(out)


def plots(s):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator
    except ImportError:
        log("no matplotlib: plots skipped (perf/compare.sh installs it)")
        return
    rows = s.rows
    kilo = FuncFormatter(lambda v, _: f"{v / 1e3:g}k" if v < 1e6 else f"{v / 1e6:g}M")
    fig, axes = plt.subplots(2, len(SIZES), figsize=(13, 9.5), sharex="col",
                             gridspec_kw={"height_ratios": [3, 1.4]})
    for col, size in enumerate(SIZES):
        ax, lax = axes[0][col], axes[1][col]
        lo, hi = float("inf"), 0.0
        for kind in ORDER:
            raw = [r for r in rows if r["experiment"] == "rate" and r["size"] == size
                   and r["reflector"] == kind and "error" not in r and r["pps_received"] > 0]
            pts = rate_points(rows, size, kind)
            if not raw:
                continue
            c = COLORS[kind]
            flows = REFLECTORS[kind][1]
            label = f"{REFLECTORS[kind][0]} ({flows} flow{'s' if flows > 1 else ''})"
            ax.scatter([r["pps_sent"] for r in raw], [r["pps_received"] for r in raw],
                       s=12, color=c, alpha=0.35, lw=0)
            pts = sorted(pts, key=lambda q: q["offered"])
            ax.plot([q["offered"] for q in pts], [q["reflected"] for q in pts], "-o", color=c,
                    label=label, ms=4, lw=1.4)
            sat = [q for q in pts if q["rate"] == 0]
            ax.plot([q["offered"] for q in sat], [q["reflected"] for q in sat], "*", color=c,
                    ms=14, mec="black", mew=0.5)
            lax.plot([q["offered"] for q in pts], [max(100 * q["loss"], 1e-4) for q in pts],
                     "-o", color=c, ms=4, lw=1.2)
            lo = min(lo, min(r["pps_received"] for r in raw))
            hi = max(hi, max(r["pps_sent"] for r in raw))
        if hi > 0:
            ax.plot([lo * 0.8, hi * 1.2], [lo * 0.8, hi * 1.2], "--", color="grey", lw=0.8,
                    label="reflected = offered")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for a in (ax.xaxis, ax.yaxis, lax.xaxis):
            a.set_major_locator(LogLocator(base=10, subs=(1.0,)))
            a.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
            a.set_major_formatter(kilo)
            a.set_minor_formatter(kilo)
        ax.tick_params(axis="both", which="minor", labelsize=7)
        ax.set_title(f"{size}-byte datagrams")
        ax.set_ylabel("reflected packets/s (bench received), log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left",
                  title="\u2605 = --rate 0 (as fast as bench can)", title_fontsize=8)
        lax.axhline(100 * LOSS_LIMIT, color="grey", ls=":", lw=0.9)
        lax.text(0.01, 100 * LOSS_LIMIT * 1.3, "0.1%",
                 transform=lax.get_yaxis_transform(), fontsize=7, color="grey")
        lax.set_yscale("log")
        lax.set_ylim(5e-5, 200)
        lax.set_ylabel("loss %, log (0 at 1e-4)")
        lax.set_xlabel("offered packets/s (bench sent), log")
        lax.tick_params(axis="x", which="minor", labelsize=7)
        lax.grid(alpha=0.3, which="both")
    fig.suptitle("Reflected against offered rate, loopback: reflector on CPU 1, bench on CPU 0\n"
                 "dots: single runs; lines: medians over rounds")
    fig.tight_layout()
    fig.savefig(s.outdir / "rate.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, len(SIZES), figsize=(13, 9))
    for col, size in enumerate(SIZES):
        ax, tax = axes[0][col], axes[1][col]
        for kind in ORDER:
            rs = [r for r in rows if r["experiment"] == "rtt" and r["size"] == size
                  and r["reflector"] == kind and r.get("hgrm")]
            for i, r in enumerate(rs):
                xs, ys = read_hgrm(s.outdir / r["hgrm"])
                if not xs:
                    continue
                kw = dict(color=COLORS[kind], lw=1.3, alpha=0.95 if i == 0 else 0.5,
                          label=REFLECTORS[kind][0] if i == 0 else None)
                ax.plot(xs, ys, drawstyle="steps-post", **kw)
                tail = [(x, 1 / (1 - y)) for x, y in zip(xs, ys) if y < 1]
                tax.plot([t[1] for t in tail], [t[0] for t in tail], **kw)
        ax.set_xscale("log")
        ax.set_xlabel("round-trip time, \u00b5s (log)")
        ax.set_ylabel("fraction of round trips \u2264 x")
        ax.set_title(f"{size}-byte datagrams: CDF")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
        tax.set_xscale("log")
        tax.set_yscale("log")
        ticks = [2, 10, 100, 1000, 10000]
        tax.set_xticks(ticks)
        tax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
        tax.set_xlim(1, 2e4)
        tax.set_ylabel("round-trip time, \u00b5s (log)")
        tax.set_title(f"{size}-byte datagrams: percentiles (tail)")
        tax.grid(alpha=0.3, which="both")
    fig.suptitle("Ping-pong RTT, bench --flows 1 --window 1 on CPU 0, reflector on CPU 1 "
                 "(one line per round)")
    fig.tight_layout()
    fig.savefig(s.outdir / "rtt_cdf.png", dpi=110)
    plt.close(fig)


def read_hgrm(path):
    xs, ys = [], []
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#"):
                with contextlib.suppress(ValueError):
                    xs.append(float(parts[0]))
                    ys.append(float(parts[1]))
    return xs, ys


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


def preflight():
    if len(os.sched_getaffinity(0)) < 2 or not {LOAD_CPU, REFLECTOR_CPU} <= os.sched_getaffinity(0):
        sys.exit(f"compare.py: needs CPUs {LOAD_CPU} and {REFLECTOR_CPU} "
                 f"(have {sorted(os.sched_getaffinity(0))})")
    for tool in ("taskset", "socat", "sockperf"):
        if not shutil.which(tool):
            sys.exit(f"compare.py: {tool} is missing; run it through perf/compare.sh")
    for b in (OURS, BASELINE):
        if not b.exists():
            sys.exit(f"compare.py: {b} is missing (drop --no-build)")


def main():
    global SOCKPERF_FULL_RTT
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs (about 3 minutes)")
    ap.add_argument("--rounds", type=int, help="rounds of every step (default 2, at least 2)")
    ap.add_argument("--out", type=Path, help="results folder (default perf/results/DATE-HOST)")
    ap.add_argument("--ladder", help="offered rates of the ladder, pps, comma-separated "
                    "(default 20000,40000,...,120000; --quick 40000,80000,120000)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--replot", type=Path, metavar="DIR",
                    help="only rewrite summary.md and the plots of an earlier results folder")
    ap.add_argument("--profile", action="store_true",
                    help="also perf-record each worker thread at 100k pps (perf_*.txt)")
    args = ap.parse_args()
    if args.replot:
        return replot(args)

    started = datetime.datetime.now().astimezone()
    host = socket.gethostname().split(".")[0]
    outdir = args.out or ROOT / "perf/results" / f"{started:%Y-%m-%d}-{host}"
    if args.out is None and outdir.exists():
        n = 2
        while (outdir.parent / f"{outdir.name}-{n}").exists():
            n += 1
        outdir = outdir.parent / f"{outdir.name}-{n}"
    build(args)
    preflight()
    outdir.mkdir(parents=True, exist_ok=True)
    SOCKPERF_FULL_RTT = check_sockperf_full_rtt()
    load_before = Path("/proc/loadavg").read_text().strip()

    s = Session(args, outdir)
    if args.rounds:
        s.plan["rounds"] = max(2, args.rounds)
    if args.ladder:
        s.plan["ladder"] = tuple(int(x) for x in args.ladder.split(",") if int(x) > 0)

    def on_signal(sig, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    try:
        log(f"results go to {outdir}")
        s.step(s.probe_capacity)
        if not s.max_plain:
            raise RuntimeError("bench could not drive the baseline; see the log above")
        for rnd in range(s.plan["rounds"]):
            log(f"round {rnd + 1} of {s.plan['rounds']}")
            for size in SIZES:
                for rate in s.ladder(size):
                    s.step(s.rate_step, rnd, size, rate)
            for size in SIZES:
                s.step(s.cpu_step, rnd, size)
            for size in SIZES:
                s.step(s.rtt_step, rnd, size)
            s.step(s.sockperf_step, rnd, 64)
            write_csv(s.rows, outdir / "raw.csv")  # partial results survive a crash
        s.step(s.rss)
        if args.profile:
            s.step(s.profile)
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    except RuntimeError as e:
        log(f"stopped: {e}")
    finally:
        stop_all()
        shutil.rmtree(s.logdir, ignore_errors=True)
    finished = datetime.datetime.now().astimezone()
    write_csv(s.rows, outdir / "raw.csv")
    (outdir / "meta.json").write_text(json.dumps({
        "started": started.isoformat(), "finished": finished.isoformat(),
        "quick": args.quick, "plan": s.plan, "use_gso": {str(k): v for k, v in s.use_gso.items()},
        "max_plain": {str(k): v for k, v in s.max_plain.items()}, "waited": s.waited,
        "sockperf_full_rtt": SOCKPERF_FULL_RTT}, indent=1) + "\n")
    (outdir / "machine.txt").write_text(
        machine_txt(started, finished, load_before, Path("/proc/loadavg").read_text().strip()))
    summary = summarize(s, started, finished)
    (outdir / "summary.md").write_text(summary)
    plots(s)
    log(f"done in {time.monotonic() - t0:.0f} s: {outdir}")
    print(summary)


def replot(args):
    """Rebuilds summary.md and the plots from raw.csv and meta.json."""
    global SOCKPERF_FULL_RTT
    d = args.replot
    meta = json.loads((d / "meta.json").read_text())
    s = Session.__new__(Session)
    s.args = argparse.Namespace(quick=meta["quick"])
    s.outdir = d
    s.plan = meta["plan"]
    s.plan["ladder"] = tuple(s.plan["ladder"])
    s.plan.setdefault("cpu_no_pktinfo", True)
    PLAN.update(s.plan)
    s.use_gso = {int(k): v for k, v in meta["use_gso"].items()}
    s.max_plain = {int(k): v for k, v in meta["max_plain"].items()}
    s.waited = meta["waited"]
    SOCKPERF_FULL_RTT = meta["sockperf_full_rtt"]
    s.rows = []
    for r in csv.DictReader(open(d / "raw.csv")):
        row = {}
        for k, v in r.items():
            if v == "":
                continue
            if k in ("experiment", "reflector", "sockperf_metric", "hgrm", "error"):
                row[k] = v
            elif v in ("True", "False"):
                row[k] = v == "True"
            else:
                try:
                    row[k] = int(v)
                except ValueError:
                    row[k] = float(v)
        s.rows.append(row)
    summary = summarize(s, datetime.datetime.fromisoformat(meta["started"]),
                        datetime.datetime.fromisoformat(meta["finished"]))
    (d / "summary.md").write_text(summary)
    plots(s)
    print(summary)


if __name__ == "__main__":
    main()
