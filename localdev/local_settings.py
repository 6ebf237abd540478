"""Reads local.settings.json (else local.settings.sample.json) the way `func start` does.

The `Values` become environment variables, but a variable already set in the environment wins, so
`PORT=7072 make run` or `SYNC_SCHEDULE=... make run` work without editing any file.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def settings_file(root: Path = REPO_ROOT) -> Path:
    own = root / "local.settings.json"
    return own if own.exists() else root / "local.settings.sample.json"


def read_values(path: Path) -> dict[str, str]:
    document = json.loads(path.read_text(encoding="utf-8"))
    values = document.get("Values", {})
    if not isinstance(values, dict):
        raise ValueError(f"{path}: 'Values' must be an object")
    return {str(key): str(value) for key, value in values.items()}


def apply(values: dict[str, str], environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set every value that the environment does not set already; return what was applied."""
    target = os.environ if environ is None else environ
    applied = {key: value for key, value in values.items() if key not in target}
    target.update(applied)
    return applied


def load(root: Path = REPO_ROOT, environ: MutableMapping[str, str] | None = None) -> Path:
    path = settings_file(root)
    apply(read_values(path), environ)
    return path
