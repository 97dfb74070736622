"""summary.md: a pure function of a session's rows (raw.csv) and meta.json.
What each figure means is in perf/README.md."""

import csv
import datetime
import json
import re
import socket
import statistics
from pathlib import Path

from .common import (BUSY_RTT_ORDER, CLK_TCK, CPU_ORDER, CPU_RATE, FLOWS, LOAD_CPU,
                     LOSS_LIMIT, ORDER, REFLECTOR_CPU, REFLECTORS, RSS_LIMIT_MIB, SIZES,
                     TRAINS_ORDER)

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


def ladder(plan):
    """The offered rates of the rate step: the ladder, then --rate 0."""
    return sorted(set(plan["ladder"])) + [0]


def read_rows(path):
    """raw.csv's rows, typed as the session wrote them."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
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
            rows.append(row)
    return rows


def machine_facts():
    """What summary.md says about the machine, kept in meta.json."""
    return {"host": socket.gethostname().split(".")[0], "clk_tck": CLK_TCK,
            "rmem_default": read_sysctl("net/core/rmem_default")}


def read_meta(folder):
    """meta.json of a results folder. Folders written before meta.json held
    the machine facts take them from machine.txt and the folder's name."""
    meta = json.loads((folder / "meta.json").read_text())
    meta["plan"]["ladder"] = tuple(meta["plan"]["ladder"])
    meta["plan"].setdefault("cpu_no_pktinfo", True)
    machine = {}
    if (folder / "machine.txt").exists():
        for line in (folder / "machine.txt").read_text().splitlines():
            k, _, v = line.partition(": ")
            machine[k] = v
    m = re.match(r"\d{4}-\d{2}-\d{2}-(.+?)(?:-\d+)?$", folder.resolve().name)
    meta.setdefault("host", machine.get("host", m.group(1) if m else "?").split(".")[0])
    meta.setdefault("clk_tck", int(machine.get("clock ticks per second (SC_CLK_TCK)", 100)))
    meta.setdefault("rmem_default", machine.get("net.core.rmem_default", "n/a"))
    return meta


def summarize(rows, meta):
    """summary.md of one session, from its rows (raw.csv) and meta.json alone."""
    p = meta["plan"]
    started = datetime.datetime.fromisoformat(meta["started"])
    finished = datetime.datetime.fromisoformat(meta["finished"])
    host, quick, waited = meta["host"], meta["quick"], meta["waited"]
    use_gso = {int(k): v for k, v in meta["use_gso"].items()}
    full_rtt, clk_tck = meta["sockperf_full_rtt"], meta["clk_tck"]
    out = []
    w = out.append
    w(f"# udp-reflector performance comparison, {started:%Y-%m-%d} on {host}\n")
    w(f"Produced by `bash perf/compare.sh{' --quick' if quick else ''}` in "
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
      f"highest load bench offered, so the reflector's own limit is higher. udp-reflector "
      f"runs with `--no-gro` here: one datagram per read, like the C baseline (bench's GSO "
      f"trains are cut into datagrams at the socket); trains have their own section.\n")
    probe = {(r["size"], r["gso"]): r["pps_sent"] for r in rows
             if r["experiment"] == "probe" and "error" not in r}
    for size in SIZES:
        w(f"### {size}-byte datagrams\n")
        if (size, False) in probe:
            w(f"Probe against the baseline: bench offers {si(probe[(size, False)])} pps "
              f"without GSO and {si(probe.get((size, True)))} pps with it"
              f"{'; the --rate 0 runs use --gso' if use_gso.get(size) else ''}.\n")
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
        rates = [q["rate"] for q in rate_points(rows, size, "baseline")] or list(ladder(p))
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
      f"queue (default SO_RCVBUF, net.core.rmem_default = {meta['rmem_default']}"
      f" bytes), not in bench or in the network stack. Every point is plotted in rate.png.\n")

    # Trains.
    tr = [r for r in rows if r["experiment"] == "trains" and "error" not in r]
    if tr:
        w("## Trains: 64-byte datagrams in GSO trains, read with GRO\n")
        w(f"`bench --gso --rate R --flows {FLOWS} --size 64 --cpus {LOAD_CPU}` (bench sends "
          f"trains of up to 64 datagrams and reads with UDP_GRO, counting datagrams) against "
          f"each reflector at its defaults (udp-reflector: UDP_GRO on, each train reflected as "
          f"one UDP_SEGMENT train). Offered rates: "
          f"{', '.join(si(x) for x in p.get('trains_ladder', ()))} pps and `--rate 0`. Best: "
          f"the highest reflected rate with at most 0.1% loss in a round, median over rounds. "
          f"Caveat: with GRO, the kernel counts a dropped train once in a socket's drop "
          f"counter.\n")
        rates = sorted({r["rate"] for r in tr if r["rate"]}) + [0]
        w("| reflector | best pps, loss \u2264 0.1% | vs plain C | " + " | ".join(
            (si(x) if x else "--rate 0") + ": reflected (loss)" for x in rates)
          + " | --rate 0 vs plain C |")
        w("| --- | ---: | ---: |" + " ---: |" * len(rates) + " ---: |")

        def best(kind):
            per_round = []
            for rnd in sorted({r["round"] for r in tr}):
                ok = [r["pps_received"] for r in tr if r["reflector"] == kind
                      and r["round"] == rnd and r["loss_ratio"] <= LOSS_LIMIT]
                per_round.append(max(ok) if ok else 0.0)
            return statistics.median(per_round) if per_round else None

        base = best("baseline")
        for kind in TRAINS_ORDER:
            rs = [r for r in tr if r["reflector"] == kind]
            if not rs:
                continue
            cells = []
            for x in rates:
                at = [r for r in rs if r["rate"] == x]
                cells.append(f"{si(med(at, 'pps_received'))} "
                             f"({fmt(100 * med(at, 'loss_ratio'), '.2f')}%)" if at else "n/a")
            b = best(kind)
            sat0 = med([r for r in rs if r["rate"] == 0], "pps_received")
            base0 = med([r for r in tr if r["reflector"] == "baseline" and r["rate"] == 0],
                        "pps_received")
            w(f"| {REFLECTORS[kind][0]} | {si(b)} | {ratio(b, base) if b else 'n/a'} | "
              + " | ".join(cells) + f" | {ratio(sat0, base0)} |")
        w("")

    # CPU.
    w(f"## CPU time per reflected packet at {si(CPU_RATE)} packets/s\n")
    w(f"{FLOWS} flows (socat 1), `bench --rate {CPU_RATE}`, {p['cpu_s']} s after a "
      f"{p['warmup_s']} s warmup. Packets: every echo bench read (warmup included) plus any its "
      f"sockets dropped, i.e. every reply the reflector sent in the window. **process**: utime+"
      f"stime of the reflector process from /proc/PID/stat (clock ticks of "
      f"{1000 // clk_tck} ms, read right before and right after the bench run). **worker**: "
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
    brt = [r for r in rows if r["experiment"] == "busy_rtt" and "error" not in r]
    if brt:
        w("### Busy polling: the wakeup out of the round trip\n")
        w("`bench --flows 1 --window 1 --busy-poll` (bench spins on its socket too), 64-byte "
          "datagrams, against: the blocking C baseline, the same C reflector spinning on "
          "non-blocking recvmmsg (the bound), udp-reflector with `--busy-poll` (each worker "
          "keeps its core at 100%), and udp-reflector at its default (blocking waits).\n")
        w("| reflector | round trips | p50 µs | p90 µs | p99 µs | p50 vs blocking C |")
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        b50 = med([r for r in brt if r["reflector"] == "baseline"], "rtt_p50_us")
        for kind in BUSY_RTT_ORDER:
            rs = [r for r in brt if r["reflector"] == kind]
            if rs:
                w(f"| {REFLECTORS[kind][0]} | {si(med(rs, 'received'))} | "
                  f"{fmt(med(rs, 'rtt_p50_us'), '.1f')} | {fmt(med(rs, 'rtt_p90_us'), '.1f')} | "
                  f"{fmt(med(rs, 'rtt_p99_us'), '.1f')} | {ratio(med(rs, 'rtt_p50_us'), b50)} |")
        w("")
    sp = [r for r in rows if r["experiment"] == "sockperf"]
    if sp:
        metric = next((r["sockperf_metric"] for r in sp if r.get("sockperf_metric")), "?")
        w("### sockperf ping-pong\n")
        w(f"`taskset -c {LOAD_CPU} sockperf ping-pong -i 127.0.0.1 -p PORT -t "
          f"{p['sockperf_s']} -m SIZE{' --full-rtt' if full_rtt else ''}` against "
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
          "with every other flag at its default (GRO on; uring: 256 ring buffers of 64 KiB + 240 "
          "bytes per worker; mmsg: 64 slots of 64 KiB per socket), after bursts of `bench --rate 0 --gso` with 64- and 1472-byte "
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
      f"{waited:.0f} s). raw.csv's `cpu1_other_pct` is the share of CPU {REFLECTOR_CPU} "
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
    w(f"- sockperf rows are {('full round trips' if full_rtt else 'half round trips')}"
      "; bench's rows are always full round trips.")
    if errs:
        w(f"- {len(errs)} run(s) failed and are left out of the medians; see the `error` "
          f"column of raw.csv.")
    w("")
    return "\n".join(out)
