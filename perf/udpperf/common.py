"""Constants shared by the runner, the steps, the report and the plots."""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
OURS = ROOT / "target/release/udp-reflector"
BASELINE_SRC = ROOT / "perf/baseline/mmsg_reflector.c"
BASELINE = ROOT / "target/perf/mmsg_reflector"
# The other C comparison points: with our duties, with GRO trains, spinning.
DUTY_SRC = ROOT / "perf/baseline/duty_reflector.c"
DUTY = ROOT / "target/perf/duty_reflector"
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
    # C with the per-datagram duties ours has: SO_TIMESTAMPNS, IP_PKTINFO in
    # and out, SO_RXQ_OVFL; the cost of the duties apart from our code's.
    "duty": ("C recvmmsg/sendmmsg with our duties (timestamp, pktinfo in+out, ovfl)", FLOWS),
    # Trains step: C with UDP_GRO, each train one UDP_SEGMENT reply (the bound).
    "baseline-gro": ("C with UDP_GRO, each train one UDP_SEGMENT reply", FLOWS),
    # Busy-poll RTT step: C spinning on non-blocking recvmmsg (the bound).
    "baseline-spin": ("C spinning on non-blocking recvmmsg", FLOWS),
    "uring-busy": ("udp-reflector, uring, --busy-poll", FLOWS),
    "mmsg-busy": ("udp-reflector, mmsg, --busy-poll", FLOWS),
    # CPU step: io_uring min-wait batching.
    "uring-coalesce": ("udp-reflector, uring, --coalesce-us 50", FLOWS),
}
# Trains of 64-byte datagrams from a GSO client that reads with GRO.
TRAINS_ORDER = ["uring", "mmsg", "baseline", "baseline-gro"]
# Ping-pong with bench --busy-poll: the wakeup out of the round trip.
BUSY_RTT_ORDER = ["baseline", "baseline-spin", "uring-busy", "mmsg-busy", "uring"]
ORDER = ["uring", "mmsg", "baseline", "socat"]
CPU_ORDER = ["uring", "uring-lo", "uring-nogso", "uring-coalesce", "mmsg", "baseline", "duty",
             "socat"]
# Kinds that are our own binary (started and summarised the same way).
OURS_KINDS = ("uring", "uring-lo", "uring-nogso", "mmsg", "ours-sockperf", "uring-busy",
              "mmsg-busy", "uring-coalesce")
COLORS = {
    "uring": "tab:blue",
    "mmsg": "tab:orange",
    "baseline": "tab:green",
    "socat": "tab:red",
    "sockperf-server": "tab:purple",
    "ours-sockperf": "tab:cyan",
    "duty": "tab:olive",
    "baseline-gro": "tab:brown",
    "baseline-spin": "tab:gray",
    "uring-busy": "tab:pink",
    "mmsg-busy": "gold",
    "uring-coalesce": "navy",
}




def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
