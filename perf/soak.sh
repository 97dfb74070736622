#!/usr/bin/env bash
# The overload soak in full: one worker offered about three times what it
# answers, 60 s per backend (tests/soak.rs; CI runs it for 10 s). Checks
# that every datagram ends in one outcome, that every datagram offered was
# read or counted as dropped, and that resident memory stays flat; prints
# the rates reached and the RSS.
#
#   bash perf/soak.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
UDP_REFLECTOR_SOAK_SECS="$secs" cargo nextest run --release --locked \
    --run-ignored only --test-threads 1 --no-capture -E 'binary(soak)' 2>&1 |
    grep -E '^\[(uring|mmsg)\]|PASS|FAIL|panicked|Summary'
