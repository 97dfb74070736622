#!/usr/bin/env python3
"""CPU per reflected packet at 100k pps, with and without the source policy.

Paired A/B: the reflector of this checkout ("policy") against the same
commit with `Policy::check` answering "no objection" at once ("none", built
from a git worktree of HEAD with that one function patched; the compiler
then drops the checks), each freshly started for every run, in alternating order
(A B, B A, ...), one worker pinned to CPU 1, `udp-reflector bench` pinned
to CPU 0 offering 100k datagrams/s of 64 bytes over 8 flows on loopback.
The figure is the worker thread's on-CPU time (schedstat) per reflected
datagram; the summary gives medians and the ratio policy/none.

    python3 perf/policy_cost.py [--rounds 6] [--secs 5] [--backend uring]

Needs 2 CPUs and an otherwise quiet machine; prints a table and writes
nothing else.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "perf"
REFLECTOR_CPU, LOAD_CPU = 1, 0
RATE = 100_000


def sh(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


NO_POLICY = "HEAD-without-policy"


def build(rev):
    """Release binary of `rev` (None: this checkout; NO_POLICY: HEAD with
    Policy::check short-circuited), copied into target/perf/."""
    OUT.mkdir(parents=True, exist_ok=True)
    dest = OUT / f"udp-reflector-{rev or 'policy'}"
    src_dir = ROOT
    tree = None
    if rev:
        tree = OUT / f"tree-{rev}"
        if tree.exists():
            sh(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
        sh(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree),
            "HEAD" if rev == NO_POLICY else rev], stdout=subprocess.DEVNULL)
        if rev == NO_POLICY:
            policy = tree / "src" / "policy.rs"
            text = policy.read_text()
            sig = "        now_ns: u64,\n    ) -> Option<NoReply> {\n"
            if sig not in text:
                sys.exit("policy_cost.py: Policy::check's signature moved; update the patch")
            policy.write_text(text.replace(
                sig, sig + "        let _ = (&source, dst, now_ns);\n        #[allow(unreachable_code)]\n"
                "        if true {\n            return None;\n        }\n", 1))
        src_dir = tree
    # One target directory for both: the dependencies are built once.
    env = dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target"))
    sh(["cargo", "build", "--release", "--quiet", "--bin", "udp-reflector"], cwd=src_dir, env=env)
    shutil.copy2(ROOT / "target" / "release" / "udp-reflector", dest)
    if tree is not None:
        sh(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
    return dest


def thread_ns(pid, name):
    for t in os.listdir(f"/proc/{pid}/task"):
        if Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() == name:
            return int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
    raise RuntimeError(f"no thread {name} in {pid}")


def run_once(binary, backend, secs):
    argv = [str(binary), "serve", "--cpus", str(REFLECTOR_CPU), "--listen", "0.0.0.0:0",
            "--backend", backend, "--stats-interval", "0", "--json"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    try:
        listening = json.loads(p.stdout.readline())
        port = int(listening["addrs"][0].rsplit(":", 1)[1])
        time.sleep(0.2)
        t0 = thread_ns(p.pid, "reflector-0")
        b = subprocess.run(
            [str(binary), "bench", "--target", f"127.0.0.1:{port}", "--flows", "8", "--size",
             "64", "--rate", str(RATE), "--duration", str(secs), "--warmup", "0.5",
             "--cpus", str(LOAD_CPU), "--json"],
            capture_output=True, text=True, timeout=secs + 30, stdin=subprocess.DEVNULL)
        t1 = thread_ns(p.pid, "reflector-0")
        if b.returncode != 0:
            raise RuntimeError(f"bench: {b.stderr.strip()[-300:]}")
        r = json.loads(b.stdout)
        pkts = r["echoes"] + r["local_drops"]
    finally:
        p.terminate()  # our own child, by its pid
        p.wait(timeout=10)
    return (t1 - t0) / pkts if pkts else None, r["loss_ratio"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--secs", type=float, default=5.0)
    ap.add_argument("--backend", default="uring", choices=["uring", "mmsg"])
    ap.add_argument("--baseline-rev", help="another git revision as the baseline "
                    "(default: HEAD with Policy::check short-circuited)")
    a = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs")
    rev = NO_POLICY
    if a.baseline_rev:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", a.baseline_rev],
                             capture_output=True, text=True, check=True).stdout.strip()
    print(f"building: none = {rev}, policy = this checkout", flush=True)
    bins = {"none": build(rev), "policy": build(None)}
    res = {"none": [], "policy": []}
    for rnd in range(a.rounds):
        order = ["none", "policy"] if rnd % 2 == 0 else ["policy", "none"]
        for k in order:
            ns, loss = run_once(bins[k], a.backend, a.secs)
            res[k].append(ns)
            print(f"round {rnd} {k:<6} {ns:7.0f} ns/pkt  loss {100 * loss:.3f}%", flush=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    pairs = [p / n for p, n in zip(res["policy"], res["none"])]
    print(f"\n{a.backend}, 64 B, {RATE} pps, {a.rounds} rounds of {a.secs} s, medians:")
    print(f"  none   {med['none']:.0f} ns/pkt")
    print(f"  policy {med['policy']:.0f} ns/pkt")
    print(f"  ratio of medians {med['policy'] / med['none']:.3f}; "
          f"median of paired ratios {statistics.median(pairs):.3f} "
          f"(min {min(pairs):.3f}, max {max(pairs):.3f})")


if __name__ == "__main__":
    main()
