#!/usr/bin/env bash
# User-space instructions per reflected datagram, with and without the
# source policy, counted by callgrind (repeatable, unlike CPU time on a
# shared machine). Uses the two binaries perf/policy_cost.py builds
# (target/perf/udp-reflector-policy and -HEAD-without-policy): run that
# first. mmsg backend (valgrind does not follow io_uring), one worker, a
# ping-pong of 20000 64-byte datagrams on loopback; prints the inclusive
# instruction count of the worker's receive loop (mmsg::service) per
# datagram for each binary.
set -euo pipefail
cd "$(dirname "$0")/.."
n=20000
for tag in HEAD-without-policy policy; do
    bin="target/perf/udp-reflector-$tag"
    out="target/perf/callgrind.$tag"
    rm -f "$out" "$out.json"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve --backend mmsg \
        --workers 1 --listen 127.0.0.1:0 --json --registry off >"$out.json" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do [ -s "$out.json" ] && break; sleep 0.2; done
    port=$(head -1 "$out.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["addrs"][0].rsplit(":",1)[1])')
    python3 - "$port" "$n" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for _ in range(n):
    s.sendto(b"x" * 64, ("127.0.0.1", port))
    s.recv(128)
PY
    kill -TERM "$pid"  # our own child, by its pid
    wait "$pid" || true
    ir=$(callgrind_annotate --inclusive=yes "$out" | grep -E 'io::mmsg::service' | head -1 | awk '{print $1}' | tr -d ,)
    echo "$tag: $((ir / n)) instructions per datagram in the worker's receive loop ($ir for $n)"
done
