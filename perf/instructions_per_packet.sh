#!/usr/bin/env bash
# Instructions per reflected datagram in the mmsg backend's receive loop
# (io::mmsg::service, inclusive: receive, reflect, count, send), counted by
# valgrind's callgrind: repeatable on a noisy machine, where CPU time is not.
# io_uring is not used: valgrind does not follow its completions.
#
#   bash perf/instructions_per_packet.sh A_BINARY B_BINARY [ROUNDS]
#
# Runs A and B alternately, ROUNDS times each (default 2), each as
# `serve --backend mmsg --workers 1` under callgrind while the A binary's
# `bench --flows 4 --window 8 --duration 3` drives it over loopback, and
# prints each run's datagrams and instructions per datagram. Needs valgrind
# (Debian: valgrind) and callgrind_annotate.
set -euo pipefail
a=${1:?A binary}; b=${2:?B binary}; rounds=${3:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # BINARY TAG
    local bin=$1 tag=$2 out=$work/$2
    valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$bin" serve --backend mmsg \
        --workers 1 --listen 127.0.0.1:0 --json --duration 30 >"$out.out" 2>"$out.err" &
    local pid=$!
    for _ in $(seq 1 150); do grep -q listening "$out.out" 2>/dev/null && break; sleep 0.2; done
    local target
    target=$(grep -o '127\.0\.0\.1:[0-9]*' "$out.out" | head -1)
    "$a" bench --target "$target" --flows 4 --window 8 --duration 3 --timeout 2 --json >/dev/null
    kill -TERM "$pid"
    wait "$pid" || true
    local rx ir
    rx=$(grep '"summary"' "$out.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["rx_packets"])')
    ir=$(callgrind_annotate --inclusive=yes "$out.cg" |
        awk '/io::mmsg::service/ && !seen { gsub(",", "", $1); print $1; seen = 1 }')
    printf '%s\t%s datagrams\t%s instructions per datagram\n' "$tag" "$rx" \
        "$(python3 -c "print(round($ir / $rx, 1))")"
}

for r in $(seq 1 "$rounds"); do
    run "$a" "A$r"
    run "$b" "B$r"
done
