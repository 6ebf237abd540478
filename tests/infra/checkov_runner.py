"""Run checkov over an infra/ directory, offline and deterministically, and read its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
# Custom policies shipped in infra/checkov/; their results must show up, proving they were loaded.
CUSTOM_CHECK_IDS = frozenset(
    {"CKV2_CONNECTOR_1", "CKV2_CONNECTOR_2", "CKV2_CONNECTOR_3", "CKV2_CONNECTOR_4", "CKV2_CONNECTOR_5"}
)
# An unroutable proxy: if checkov ever tries the network despite the flags, it fails fast
# instead of hanging or depending on what the network answers.
_DEAD_PROXY = "http://127.0.0.1:9"


def checkov_binary() -> Path:
    """$CHECKOV (set by `make test`), else .venv-iac/bin/checkov; never a silent skip."""
    configured = os.environ.get("CHECKOV")
    candidate = Path(configured) if configured else REPO_ROOT / ".venv-iac" / "bin" / "checkov"
    if not candidate.is_file():
        source = "$CHECKOV" if configured else "the default path"
        pytest.fail(
            f"checkov not found at {candidate} ({source}). Run `make test` (it installs checkov "
            "into .venv-iac and sets CHECKOV), or `make .venv-iac/.installed` first.",
            pytrace=False,
        )
    return candidate


@dataclass(frozen=True)
class CheckovReport:
    passed: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    parsing_errors: list[str]
    returncode: int

    def failed_ids(self) -> set[str]:
        return {c["check_id"] for c in self.failed}

    def describe_failures(self) -> str:
        return "\n".join(
            f"{c['check_id']} {c['check_name']!r} on {c['resource']} ({c['file_path']})" for c in self.failed
        )


def _environment(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BC_", "CKV_", "PRISMA_", "CHECKOV_"))
        and k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"}
    }
    env.update(
        {
            "HOME": str(home),  # no ~/.checkov.yaml from the developer's machine
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",  # the banner otherwise asks pypi.org
            "BC_SKIP_MAPPING": "TRUE",  # no guideline/ID mapping download
            "HTTP_PROXY": _DEAD_PROXY,
            "HTTPS_PROXY": _DEAD_PROXY,
            "LOG_LEVEL": "WARNING",
            "PYTHONHASHSEED": "0",
        }
    )
    return env


def run_checkov(infra_dir: Path, home: Path) -> CheckovReport:
    """checkov with infra_dir/.checkov.yaml (bicep only, --skip-download, custom policies)."""
    completed = subprocess.run(
        [str(checkov_binary()), "--config-file", ".checkov.yaml", "--output", "json"],
        cwd=infra_dir,
        env=_environment(home),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if completed.returncode not in (0, 1):
        pytest.fail(f"checkov crashed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    try:
        data = json.loads(completed.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov printed no JSON report:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
        )
    if isinstance(data, list):  # one report per framework; we ask for bicep only
        data = next((d for d in data if d.get("check_type") == "bicep"), {})
    results = data.get("results")
    if not results:
        pytest.fail(f"checkov found nothing to scan in {infra_dir}: {data!r}"[:2000])
    return CheckovReport(
        passed=results.get("passed_checks", []),
        failed=results.get("failed_checks", []),
        skipped=results.get("skipped_checks", []),
        parsing_errors=results.get("parsing_errors", []),
        returncode=completed.returncode,
    )
