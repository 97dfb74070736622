#!/usr/bin/env bash
# Reproduces every published performance figure of udp-reflector.
#
#   bash perf/compare.sh            # full run, about 10 minutes
#   bash perf/compare.sh --quick    # shorter runs, about 3 minutes
#   bash perf/compare.sh --help     # every option
#
# This file only makes sure the tools are there (sockperf, socat, gcc,
# taskset, python3 with matplotlib); perf/compare.py builds the binaries,
# runs the measurements and writes perf/results/DATE-HOST/.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for tool in sockperf socat gcc taskset python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    pkgs=()
    for tool in "${missing[@]}"; do
        case "$tool" in
            taskset) pkgs+=(util-linux) ;;
            *) pkgs+=("$tool") ;;
        esac
    done
    echo "compare.sh: installing ${pkgs[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
if [[ " $* " == *" --profile "* ]] && ! command -v perf >/dev/null 2>&1; then
    echo "compare.sh: installing linux-perf (for --profile)" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null ||
        echo "compare.sh: no perf; --profile will be skipped" >&2
fi

# A python3 that has matplotlib: the one on PATH, else Debian's own
# (python3-matplotlib), else pip into the one on PATH.
has_mpl() { "$1" -c 'import matplotlib' >/dev/null 2>&1; }
PY=""
for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 && has_mpl "$cand"; then PY=$cand; break; fi
done
if [ -z "$PY" ]; then
    echo "compare.sh: installing matplotlib (for the plots)" >&2
    if command -v apt-get >/dev/null 2>&1 &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-matplotlib >/dev/null 2>&1 &&
        has_mpl /usr/bin/python3; then
        PY=/usr/bin/python3
    elif python3 -m pip install --quiet --user matplotlib 2>/dev/null ||
        python3 -m pip install --quiet matplotlib; then
        has_mpl python3 && PY=python3
    fi
fi
if [ -z "$PY" ]; then
    echo "compare.sh: cannot get matplotlib; running without plots" >&2
    PY=python3
fi

exec "$PY" perf/compare.py "$@"
