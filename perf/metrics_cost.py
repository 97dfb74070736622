#!/usr/bin/env python3
"""What --metrics costs the workers: CPU time per reflected packet at a fixed
offered rate, with and without --metrics while a Prometheus server scrapes
it once a second. Paired runs in alternating order; prints each run, the
per-round ratios and their median.

    cargo build --release --locked
    python3 perf/metrics_cost.py [--rounds 6] [--rate 100000] [--duration 10]

The reflector runs one worker pinned to CPU 1, bench is pinned to CPU 0.
The worker's CPU is read from /proc/PID/task/TID/stat (utime + stime) over
the measured bench run; the metrics thread's CPU is reported apart.
Needs `prometheus` on PATH for the scraped runs.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ROOT / "target" / "release" / "udp-reflector"
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def thread_cpu_s(pid, name):
    """utime + stime, in seconds, of the thread of `pid` called `name`."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            if comm != name:
                continue
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / TICK
        except FileNotFoundError:
            continue
    return 0.0


def start_prometheus(target, workdir):
    port = free_port()
    cfg = workdir / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: r\n    static_configs:\n      - targets: ['{target}']\n")
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)
    p = subprocess.Popen(
        ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1)
            return p, port
        except OSError:
            time.sleep(0.2)
    p.kill()
    raise RuntimeError("prometheus did not get ready")


def scrapes(prom_port):
    """Prometheus' `up` of the reflector: 1 if its last scrape succeeded."""
    url = f"http://127.0.0.1:{prom_port}/api/v1/query?query=up"
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.load(r)["data"]["result"][0]["value"][1]


def run(metrics, args, workdir):
    port = free_port()
    argv = [str(OURS), "serve", "--listen", f"127.0.0.1:{port}", "--cpus", "1", "--json"]
    if metrics:
        argv += ["--metrics", "127.0.0.1:0"]
    refl = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    prom = None
    try:
        json.loads(refl.stdout.readline())  # listening
        if metrics:
            m = json.loads(refl.stdout.readline())
            prom, prom_port = start_prometheus(m["addr"], workdir)
            time.sleep(2.5)  # a few scrapes before measuring
        w0 = thread_cpu_s(refl.pid, "reflector-0")
        m0 = thread_cpu_s(refl.pid, "metrics")
        b = subprocess.run(
            [str(OURS), "bench", "--target", f"127.0.0.1:{port}", "--rate", str(args.rate),
             "--duration", str(args.duration), "--flows", "8", "--size", "64",
             "--cpus", "0", "--json"],
            capture_output=True, text=True, check=True, timeout=args.duration + 30)
        w1 = thread_cpu_s(refl.pid, "reflector-0")
        m1 = thread_cpu_s(refl.pid, "metrics")
        up = scrapes(prom_port) if metrics else None
        bench = json.loads(b.stdout)
    finally:
        refl.terminate()
        out, _ = refl.communicate(timeout=10)
        if prom:
            prom.kill()
            prom.wait()
    summary = [json.loads(line) for line in out.splitlines() if '"summary"' in line][-1]
    tx = summary["total"]["tx_packets"]
    replies = bench["received"] + bench["warmup_received"]
    return {
        "metrics": metrics,
        "worker_ns_per_packet": (w1 - w0) * 1e9 / max(replies, 1),
        "metrics_thread_cpu_s": m1 - m0,
        "received": bench["received"],
        "loss_ratio": bench["loss_ratio"],
        "reflector_tx": tx,
        "prometheus_up": up,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--duration", type=float, default=10.0)
    args = ap.parse_args()
    if not OURS.exists():
        sys.exit(f"{OURS} missing: cargo build --release --locked")
    if not shutil.which("prometheus"):
        sys.exit("prometheus is not on PATH (Debian package prometheus)")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="metrics-cost-") as tmp:
        for rnd in range(args.rounds):
            order = [False, True] if rnd % 2 == 0 else [True, False]
            res = {}
            for metrics in order:
                r = run(metrics, args, Path(tmp))
                res[metrics] = r
                print(json.dumps({"round": rnd, **r}), flush=True)
            ratios.append(res[True]["worker_ns_per_packet"] / res[False]["worker_ns_per_packet"])
    print(f"with/without --metrics, worker CPU per packet: ratios "
          f"{', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
