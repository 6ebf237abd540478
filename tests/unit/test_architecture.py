"""The layering and size rules the README's Architecture section states, checked on the source.

Read with `ast`, not by importing, so a rule broken inside a function body or a TYPE_CHECKING
block is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50

# package (a folder under shared/) -> module prefixes it must never import
FORBIDDEN_IMPORTS = {
    "shared/services": (
        "shared.stores",
        "shared.servicenow",
        "shared.graph",
        "shared.graph_tokens",
        "shared.bootstrap",
        "shared.monitoring",
        "azure",
        "httpx",
        "msal",
    ),
    "shared/servicenow": ("shared.stores", "shared.services", "shared.graph", "shared.bootstrap"),
    "shared/stores": ("shared.services", "shared.servicenow", "shared.graph", "shared.bootstrap"),
    "shared/monitoring": (
        "shared.stores",
        "shared.services",
        "shared.servicenow",
        "shared.graph",
        "shared.bootstrap",
    ),
}
# the core: modules directly in shared/ other than the adapters and the composition root
CORE_FORBIDDEN = (
    "shared.stores",
    "shared.monitoring",
    "shared.servicenow",
    "shared.services",
    "shared.graph",
    "shared.graph_tokens",
    "azure",
    "httpx",
    "msal",
)
NOT_CORE = {"bootstrap.py", "graph.py", "graph_tokens.py"}


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _violations(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for name in _imports(path)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_layers_import_only_what_they_may(package: str) -> None:
    found = [v for path in _modules(package) for v in _violations(path, FORBIDDEN_IMPORTS[package])]
    assert found == []


def test_the_core_imports_no_adapter() -> None:
    core = [path for path in (ROOT / "shared").glob("*.py") if path.name not in NOT_CORE]
    found = [v for path in core for v in _violations(path, CORE_FORBIDDEN)]
    assert found == []


def test_no_module_under_shared_is_too_long() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in _modules("shared")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_in_the_app_is_too_long() -> None:
    long: dict[str, int] = {}
    for path in [*_modules("shared"), *_modules("functions")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    assert long == {}


def test_one_retry_after_parser() -> None:
    parsers = [
        f"{path.relative_to(ROOT)}"
        for path in _modules("shared")
        if '"Retry-After"' in path.read_text() and ".headers.get(" in path.read_text()
    ]
    assert len(parsers) <= 1, parsers
