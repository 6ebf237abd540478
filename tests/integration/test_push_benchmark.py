"""The push latency benchmark still runs: a tiny workload in its own process, as `make bench` runs
it. This checks that it works and prints its figures, not how fast anything is."""

from __future__ import annotations

import subprocess
import sys

from localdev.local_settings import REPO_ROOT


def test_the_push_benchmark_runs_on_a_small_workload() -> None:
    args = ["--changes", "3", "--tickets", "2", "--concurrency", "2", "--no-bounds"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.push_latency", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changes seen, median" in result.stdout
    assert "worst" in result.stdout
