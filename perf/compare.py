#!/usr/bin/env python3
"""Compare udp-reflector with a plain C reflector, socat and sockperf's server.

Run through perf/compare.sh, which installs what this needs; perf/README.md
says what each step measures and how. This file is the command line: the
session's steps are in udpperf/steps.py, the processes and /proc readings in
udpperf/runner.py, summary.md in udpperf/report.py (a pure function of
raw.csv and meta.json) and the plots in udpperf/plots.py.

Writes perf/results/DATE-HOST/: raw.csv, meta.json, summary.md, rate.png,
rtt_cdf.png, machine.txt, hgrm/ and, with --profile, perf_*.txt.
"""

import argparse
import datetime
import json
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from udpperf.common import ROOT, log  # noqa: E402
from udpperf.plots import plots  # noqa: E402
from udpperf.report import machine_facts, read_meta, read_rows, summarize, write_csv  # noqa: E402
from udpperf.runner import (build, check_sockperf_full_rtt, machine_txt, preflight,  # noqa: E402
                            stop_all)
from udpperf.steps import Session  # noqa: E402
from udpperf.common import SIZES  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs (about 3 minutes)")
    ap.add_argument("--rounds", type=int, help="rounds of every step (default 2, at least 2)")
    ap.add_argument("--out", type=Path, help="results folder (default perf/results/DATE-HOST)")
    ap.add_argument("--ladder", help="offered rates of the ladder, pps, comma-separated "
                    "(default 20000,40000,...,120000; --quick 40000,80000,120000)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--replot", type=Path, metavar="DIR",
                    help="only re-render summary.md and the plots of an earlier results "
                    "folder from its raw.csv and meta.json, into --out (default: a new "
                    "temporary folder)")
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
    load_before = Path("/proc/loadavg").read_text().strip()

    s = Session(args, outdir)
    s.full_rtt = check_sockperf_full_rtt()
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
            s.step(s.trains_step, rnd)
            s.step(s.busy_rtt_step, rnd)
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
    meta = {
        "started": started.isoformat(), "finished": finished.isoformat(),
        "quick": args.quick, "plan": s.plan, "use_gso": {str(k): v for k, v in s.use_gso.items()},
        "max_plain": {str(k): v for k, v in s.max_plain.items()}, "waited": s.waited,
        "sockperf_full_rtt": s.full_rtt, **machine_facts()}
    (outdir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    (outdir / "machine.txt").write_text(
        machine_txt(started, finished, load_before, Path("/proc/loadavg").read_text().strip()))
    summary = summarize(s.rows, read_meta(outdir))
    (outdir / "summary.md").write_text(summary)
    plots(s.rows, outdir, outdir)
    log(f"done in {time.monotonic() - t0:.0f} s: {outdir}")
    print(summary)


def replot(args):
    """Re-renders summary.md and the plots of results folder DIR from its
    raw.csv and meta.json into --out (default: a new temporary folder), so
    that the report code is checked against committed results."""
    src = args.replot
    out = args.out or Path(tempfile.mkdtemp(prefix="udp-reflector-replot."))
    out.mkdir(parents=True, exist_ok=True)
    rows = read_rows(src / "raw.csv")
    summary = summarize(rows, read_meta(src))
    (out / "summary.md").write_text(summary)
    plots(rows, src, out)
    log(f"re-rendered {src} into {out}")


if __name__ == "__main__":
    main()
