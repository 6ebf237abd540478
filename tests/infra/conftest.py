"""Fixtures for the infra checks: checkov runs once per session over the real infra/."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .checkov_runner import INFRA_DIR, CheckovReport, run_checkov
from .policies import Infra


@pytest.fixture(scope="session")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> CheckovReport:
    return run_checkov(INFRA_DIR, home=tmp_path_factory.mktemp("checkov-home"))


@pytest.fixture(scope="session")
def infra() -> Infra:
    return Infra.load(INFRA_DIR)


@pytest.fixture
def mutate(tmp_path: Path) -> Callable[[str, str, str], Path]:
    """Copy infra/ to tmp_path and replace `old` by `new` (exactly once) in one file."""
    copy = tmp_path / "infra"
    shutil.copytree(INFRA_DIR, copy)

    def _mutate(relative: str, old: str, new: str) -> Path:
        target = copy / relative
        text = target.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"mutation anchor {old!r} found {text.count(old)} times in {relative}"
        target.write_text(text.replace(old, new), encoding="utf-8")
        return copy

    return _mutate
