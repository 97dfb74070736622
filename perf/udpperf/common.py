"""Constants shared by the runner, the steps, the report and the plots."""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
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




def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
