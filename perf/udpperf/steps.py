"""The measurement steps of a session: the capacity probe, the rate
ladder, CPU per packet, round-trip times, sockperf, memory and profiles.
Each step appends rows; report.py turns them into summary.md."""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .common import (BUSY_RTT_ORDER, CLK_TCK, CPU_ORDER, CPU_RATE, FLOWS, LOAD_CPU, ORDER,
                     OURS, OURS_KINDS, REFLECTOR_CPU, REFLECTORS, SIZES, TRAINS_ORDER, log)
from .report import fmt
from .runner import (Proc, Reflector, Window, bench, bench_row, core_use, cpu_stat,
                     parse_sockperf, self_counts, udp_drops, vm_status, wait_listening,
                     wait_quiet)

# --------------------------------------------------------------------------
# Plan


def plan(quick):
    if quick:
        return dict(rounds=2, warmup_s=0.2, rate_s=0.7, probe_s=0.7, cpu_s=1.5,
                    rtt_s=0.7, rtt_warmup_s=0.1, sockperf_s=1, rss_burst_s=0.5,
                    timeout_s=0.3, ladder=(40_000, 80_000, 120_000), quiet_step_s=4,
                    trains_ladder=(2_000_000,),
                    cpu_no_pktinfo=False,
                    quiet_total_s=10)
    return dict(rounds=2, warmup_s=0.5, rate_s=2.0, probe_s=1.0, cpu_s=5.0,
                rtt_s=2.0, rtt_warmup_s=0.3, sockperf_s=5, rss_burst_s=1.0,
                timeout_s=0.5, ladder=(20_000, 40_000, 60_000, 80_000, 100_000, 120_000),
                trains_ladder=(1_000_000, 2_000_000, 4_000_000, 7_000_000),
                quiet_step_s=20, quiet_total_s=100, cpu_no_pktinfo=True)



class Session:
    def __init__(self, args, outdir):
        self.args = args
        self.outdir = outdir
        self.logdir = Path(tempfile.mkdtemp(prefix="udp-reflector-perf."))
        self.rows = []
        self.n = 0
        self.plan = plan(args.quick)
        self.quiet_wait = 0.0
        self.waited = 0.0
        self.max_plain, self.use_gso = {}, {}
        self.full_rtt = False

    def bench(self, *args, **kwargs):
        """Runs bench with this session's --timeout."""
        return bench(*args[:5], self.plan["timeout_s"], *args[5:], **kwargs)

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
                    b = self.bench(r.port, size, FLOWS, p["probe_s"], p["warmup_s"], rate=0, gso=gso)
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

    def measured(self, row, kind, size, tag, body, errors, counts=True, mode="echo", extra=()):
        """Starts reflector `kind`, fills `row` with body(r, row), stops it and records
        the row, with the error if the start or `body` failed (`errors`: what `body` may
        raise). Returns the row, or None if the reflector did not start."""
        try:
            r = Reflector(kind, size, self.logdir, self.tag(tag), mode=mode, extra=extra)
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
                b = self.bench(r.port, size, flows, p["rate_s"], p["warmup_s"], rate=rate, gso=gso)
                row.update(bench_row(b))
                row["reflector_socket_drops"] = udp_drops(r.port)
                row.update(win.result())

            # No trains here: ours reads datagram by datagram, as the C
            # baseline does (bench's GSO trains are cut at the socket).
            extra = ("--no-gro",) if kind in OURS_KINDS else ()
            if self.measured(row, kind, size, f"rate-{kind}", body,
                             (RuntimeError, subprocess.TimeoutExpired, ValueError),
                             extra=extra) is None:
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
        kinds = CPU_ORDER if p["cpu_no_pktinfo"] else ORDER + ["duty", "uring-coalesce"]
        for kind in self.order(rnd, kinds):
            flows = REFLECTORS[kind][1]
            row = {"experiment": "cpu", "round": rnd, "size": size, "reflector": kind,
                   "flows": flows, "rate": CPU_RATE}

            def body(r, row):
                c0 = cpu_stat()
                (p0, s0), (tp0, ts0), (v0, i0) = r.cpu()
                b = self.bench(r.port, size, flows, p["cpu_s"], p["warmup_s"], rate=CPU_RATE)
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

    # ---- trains: 64-byte datagrams in GSO trains, read back with GRO

    def trains_step(self, rnd, size=64):
        p = self.plan
        for rate in list(p["trains_ladder"]) + [0]:
            for kind in self.order(rnd, TRAINS_ORDER):
                row = {"experiment": "trains", "round": rnd, "size": size, "reflector": kind,
                       "flows": FLOWS, "rate": rate}

                def body(r, row):
                    win = Window(r, p["warmup_s"] + 0.05, p["rate_s"] - 0.1)
                    b = self.bench(r.port, size, FLOWS, p["rate_s"], p["warmup_s"], rate=rate,
                                   gso=True)
                    row.update(bench_row(b))
                    row["reflector_socket_drops"] = udp_drops(r.port)
                    row.update(win.result())

                if self.measured(row, kind, size, f"trains-{kind}", body,
                                 (RuntimeError, subprocess.TimeoutExpired, ValueError)) is None:
                    continue
                if "error" not in row:
                    log(f"  trains r{rnd} {kind:<12} offered {row['pps_sent']:>9.0f} reflected "
                        f"{row['pps_received']:>9.0f} loss {100 * row['loss_ratio']:.3f}%")
                else:
                    log(f"  trains r{rnd} {kind}: {row['error']}")

    # ---- ping-pong RTT with busy polling on both sides

    def busy_rtt_step(self, rnd, size=64):
        p = self.plan
        for kind in self.order(rnd, BUSY_RTT_ORDER):
            row = {"experiment": "busy_rtt", "round": rnd, "size": size, "reflector": kind,
                   "flows": 1, "window": 1}

            def body(r, row):
                b = self.bench(r.port, size, 1, p["rtt_s"], p["rtt_warmup_s"], window=1,
                               busy_poll=True)
                row.update(bench_row(b))

            if self.measured(row, kind, size, f"busy-rtt-{kind}", body,
                             (RuntimeError, subprocess.TimeoutExpired, ValueError),
                             counts=False) is None:
                continue
            if "error" not in row:
                log(f"  busy-rtt r{rnd} {kind:<13} p50 {row['rtt_p50_us']:.1f} us "
                    f"p99 {row['rtt_p99_us']:.1f} us")
            else:
                log(f"  busy-rtt r{rnd} {kind}: {row['error']}")

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
                b = self.bench(r.port, size, 1, p["rtt_s"], p["rtt_warmup_s"], window=1, hgrm=hgrm)
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
                if self.full_rtt:
                    argv.append("--full-rtt")
                out = subprocess.run(argv, capture_output=True, text=True,
                                     stdin=subprocess.DEVNULL, timeout=p["sockperf_s"] + 15)
                row.update(parse_sockperf(out.stdout + out.stderr, self.full_rtt))

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
                    self.bench(port, size, FLOWS, p["rss_burst_s"], 0.0, rate=0, gso=True,
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
                b = self.bench(r.port, size, FLOWS, secs, 0.0, rate=CPU_RATE)
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
