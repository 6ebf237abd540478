"""The preprovision check (infra/hooks/preflight.py) refuses what the templates cannot deploy."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

import pytest

from .checkov_runner import INFRA_DIR, REPO_ROOT

PREFLIGHT = INFRA_DIR / "hooks" / "preflight.py"
GOOD = {
    "AUTH_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
    "PORTAL_URL": "https://portal.example.com/",
    "GRAPH_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
}


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("preflight", PREFLIGHT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


preflight = _module()


def test_a_complete_environment_passes() -> None:
    assert preflight.problems(GOOD) == []
    assert preflight.problems({**GOOD, "GRAPH_CLIENT_ID": "none", "OPERATOR_TENANT_ID": ""}) == []


@pytest.mark.parametrize(
    "url",
    [
        "portal.example.com",
        "portal.example.com/app",
        "http://portal.example.com",
        "https://",
        "https://u:p@x.example",
    ],
)
def test_a_portal_url_without_https_scheme_and_host_is_refused(url: str) -> None:
    [problem] = preflight.problems({**GOOD, "PORTAL_URL": url})
    assert problem.startswith("PORTAL_URL must")
    assert "fabrikam" not in problem  # names the rule, not the value


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GRAPH_CLIENT_ID", "", "GRAPH_CLIENT_ID is not set"),
        ("GRAPH_CLIENT_ID", "graph-app", "GRAPH_CLIENT_ID must be a GUID, or `none`"),
        ("AUTH_CLIENT_ID", "", "AUTH_CLIENT_ID is not set"),
        ("OPERATOR_TENANT_ID", "contoso.onmicrosoft.com", "OPERATOR_TENANT_ID must be a GUID"),
        ("AZURE_PRINCIPAL_TYPE", "Robot", "AZURE_PRINCIPAL_TYPE must be one of"),
        ("AUTH_UNAUTHENTICATED_ACTION", "AllowAnonymous", "AUTH_UNAUTHENTICATED_ACTION must be one of"),
        ("AUTH_OPENID_ISSUER", "login.microsoftonline.com/x/v2.0", "AUTH_OPENID_ISSUER must be an https://"),
    ],
)
def test_each_bad_setting_is_named(name: str, value: str, expected: str) -> None:
    [problem] = preflight.problems({**GOOD, name: value})
    assert problem.startswith(expected)


def test_the_script_exits_1_and_never_prints_values() -> None:
    env = {**GOOD, "PORTAL_URL": "portal.fabrikam.test", "GRAPH_CLIENT_SECRET": "s3cret-value-xyz"}
    done = subprocess.run(
        [sys.executable, str(PREFLIGHT)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "PORTAL_URL must be an https:// URL" in done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    assert "fabrikam" not in done.stdout + done.stderr


def test_azd_runs_it_before_every_provision() -> None:
    # azure.yaml read as text (no YAML parser in the dev dependencies): the preprovision hook's
    # block, up to the next hook, runs the script on both shells.
    text = (REPO_ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert "\nhooks:\n" in text
    block = text.split("\n  preprovision:\n", 1)[1].split("\n  post", 1)[0].split("\n  pre", 1)[0]
    assert "run: python3 infra/hooks/preflight.py" in block
    assert "run: python infra/hooks/preflight.py" in block
    assert PREFLIGHT.is_file()
