"""`make bench`: run every benchmark; fail if any of them fails its bound."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "bench.import_cost",
    "bench.create_tickets",
    "bench.sync",
    "bench.secure_score",
    "bench.rules",
    "bench.fanout",
    "bench.push_latency",
    "bench.redaction",
    "bench.cold_start",
]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        if importlib.import_module(name).main([]) != 0:
            failed.append(name)
    if failed:
        print(f"benchmarks over their bounds: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
