#!/usr/bin/env python3
"""Paired A/B of two udp-reflector builds, with the C baseline as yardstick.

Each round runs, back to back and on the same cores as perf/compare.py
(reflector on CPU 1, load on CPU 0): build A and build B on each backend,
and the C baseline; the order is reversed every other round. Two figures
per run: CPU nanoseconds per packet at 100k pps (the reflector process,
from /proc), and the overload rate (replies per second when bench offers
as fast as it can, with --gso). Each is printed as a ratio to the
baseline of the same round, then as medians over the rounds, so that the
noise of a shared machine mostly cancels.

    python3 perf/ab.py --a OLD/udp-reflector [--b target/release/udp-reflector] [--rounds 6]

The load generator is always build B's `bench`. Build the baseline and B
first (`bash perf/compare.sh` does, or `cargo build --release` and
`gcc -O2 -o target/perf/mmsg_reflector perf/baseline/mmsg_reflector.c`).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from udpperf import common, runner  # noqa: E402  (processes, bench, /proc readings)

TIMEOUT_S = 0.5  # bench's echo timeout, as perf/compare.py's full plan


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", type=Path, required=True, help="build A (the older binary)")
    ap.add_argument("--b", type=Path, default=common.OURS, help="build B (default: this tree's)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--cpu-s", type=float, default=3.0, help="seconds at 100k pps per run")
    ap.add_argument("--rate-s", type=float, default=1.5, help="seconds of overload per run")
    args = ap.parse_args()
    if not common.BASELINE.exists():
        common.BASELINE.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-o", str(common.BASELINE), str(common.BASELINE_SRC)],
                       check=True)
    builds = {"a": args.a.resolve(), "b": args.b.resolve()}
    runner.OURS = builds["b"]  # bench, and the B reflector
    logdir = Path(tempfile.mkdtemp(prefix="udp-reflector-ab."))
    runs = ["uring@a", "uring@b", "mmsg@a", "mmsg@b", "baseline"]
    cpu = {k: [] for k in runs}
    rate = {k: [] for k in runs}
    n = 0

    def start(run):
        nonlocal n
        n += 1
        kind, _, build = run.partition("@")
        runner.OURS = builds[build or "b"]
        try:
            return runner.Reflector(kind, args.size, logdir, f"{n:04d}-{run}")
        finally:
            runner.OURS = builds["b"]

    for rnd in range(args.rounds):
        order = runs if rnd % 2 == 0 else list(reversed(runs))
        for run in order:
            r = start(run)
            try:
                (p0, _), _, _ = r.cpu()
                b = runner.bench(r.port, args.size, common.FLOWS, args.cpu_s, 0.5, TIMEOUT_S,
                                 rate=common.CPU_RATE)
                (p1, _), _, _ = r.cpu()
                pkts = b["echoes"] + b["local_drops"]
                cpu[run].append((p1 - p0) / pkts)
                o = runner.bench(r.port, args.size, common.FLOWS, args.rate_s, 0.3, TIMEOUT_S,
                                 rate=0, gso=True)
                rate[run].append(o["pps_received"])
            finally:
                r.stop()
        base_cpu, base_rate = cpu["baseline"][-1], rate["baseline"][-1]
        print(f"round {rnd}: " + "  ".join(
            f"{k} {cpu[k][-1]:.0f} ns ({cpu[k][-1] / base_cpu:.2f}x) "
            f"{rate[k][-1] / 1e3:.0f}k pps ({rate[k][-1] / base_rate:.2f}x)"
            for k in runs if k != "baseline")
            + f"  baseline {base_cpu:.0f} ns {base_rate / 1e3:.0f}k pps", flush=True)

    print(f"\nmedians over {args.rounds} rounds, {args.size}-byte datagrams, "
          f"ratios to the C baseline of the same round:")
    print(f"{'run':<9} {'ns/pkt @100k':>13} {'ratio':>6} {'overload pps':>13} {'ratio':>6}")
    for k in runs:
        cr = [x / y for x, y in zip(cpu[k], cpu["baseline"])]
        rr = [x / y for x, y in zip(rate[k], rate["baseline"])]
        print(f"{k:<9} {statistics.median(cpu[k]):>13.0f} {statistics.median(cr):>6.2f} "
              f"{statistics.median(rate[k]):>13.0f} {statistics.median(rr):>6.2f}")
    for backend in ("uring", "mmsg"):
        cr = [x / y for x, y in zip(cpu[f"{backend}@b"], cpu[f"{backend}@a"])]
        rr = [x / y for x, y in zip(rate[f"{backend}@b"], rate[f"{backend}@a"])]
        print(f"{backend}: B/A CPU per packet {statistics.median(cr):.3f} "
              f"(rounds {min(cr):.2f}..{max(cr):.2f}), overload rate "
              f"{statistics.median(rr):.3f} (rounds {min(rr):.2f}..{max(rr):.2f})")


if __name__ == "__main__":
    main()
