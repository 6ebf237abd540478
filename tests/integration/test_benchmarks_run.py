"""The benchmarks still run: each on a tiny workload, in its own process, as `make bench` runs them.

This checks that they work and print their figures, not how fast anything is.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from localdev.local_settings import REPO_ROOT


@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        (
            "bench.create_tickets",
            ["--requests", "5", "--concurrency", "2", "--no-bounds"],
            "requests per create on the wire",
        ),
        ("bench.sync", ["--tenants", "2", "--tickets", "20"], "ServiceNow requests per tenant"),
        ("bench.secure_score", ["--tenants", "2", "--tickets", "40"], "Graph requests per tenant per day"),
        ("bench.rules", ["--tenants", "1", "--no-bounds"], "requests per tenant per evaluation"),
        ("bench.fanout", ["--tenants", "50", "--fail", "0.1", "--lost", "0.05"], "duplicates (expected"),
        ("bench.redaction", ["--many", "1000", "--records", "300"], "ratio:"),
        ("bench.cold_start", ["--samples", "1", "--warm", "3"], "cold/warm:"),
    ],
)
def test_benchmark_runs_on_a_small_workload(module: str, args: list[str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected in result.stdout
