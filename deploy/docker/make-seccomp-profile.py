#!/usr/bin/env python3
"""Derives seccomp-io-uring.json from Docker's default seccomp profile.

Input:  seccomp-default.upstream.json, Docker's default profile unchanged
        (origin and version in deploy/docker/README.md).
Output: the same profile plus one rule that allows exactly io_uring_setup,
        io_uring_enter and io_uring_register, which the default refuses
        with EPERM. Nothing else differs.

Regenerate after replacing the upstream file with a newer one:
    python3 deploy/docker/make-seccomp-profile.py
CI (tests/deploy.rs) checks that the shipped profile is this script's output.
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]


def derive(upstream: dict) -> dict:
    named = {n for rule in upstream["syscalls"] for n in rule["names"]}
    if named & set(IO_URING):
        sys.exit(f"the upstream profile already names {sorted(named & set(IO_URING))}: "
                 "check by hand what it does with them")
    profile = json.loads(json.dumps(upstream))  # a deep copy
    rule = {
        "names": IO_URING,
        "action": "SCMP_ACT_ALLOW",
        "comment": "udp-reflector: its receive path (io_uring multishot recvmsg); "
                   "without it the reflector falls back to recvmmsg/sendmmsg",
    }
    # Right after the first unconditional allow list, so it reads as part of it.
    profile["syscalls"].insert(1, rule)
    return profile


def main() -> None:
    src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "seccomp-default.upstream.json"
    dst = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "seccomp-io-uring.json"
    profile = derive(json.loads(src.read_text()))
    dst.write_text(json.dumps(profile, indent="\t") + "\n")


if __name__ == "__main__":
    main()
