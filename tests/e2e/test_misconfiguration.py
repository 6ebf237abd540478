"""A setting that fails validation: health says which, every endpoint answers 503, `make run` refuses.

Only setting names and rules are shown, never values: a wrong value may be a pasted secret.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from localdev.local_settings import REPO_ROOT
from shared.bootstrap import Container, set_container
from shared.settings import get_settings
from tests.e2e.conftest import Stack

BAD_TEMPLATE = "https://no-placeholder-0123456789.example.com"


def break_settings(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICENOW_URL_TEMPLATE", BAD_TEMPLATE)
    monkeypatch.delenv("KEY_VAULT_URL")
    get_settings.cache_clear()
    set_container(Container())


async def test_health_names_the_broken_settings_and_nothing_else(
    stack: Stack, app_env: pytest.MonkeyPatch
) -> None:
    assert (await stack.client.get("/api/health")).json()["status"] == "ok"
    break_settings(stack, app_env)
    response = await stack.client.get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "misconfigured"
    assert sorted(body["problems"]) == [
        "KEY_VAULT_URL: Field required",
        "SERVICENOW_URL_TEMPLATE: must contain {instance}",
    ]
    assert "no-placeholder" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "admin"),
    [
        ("GET", "/api/provisioning", True),
        ("GET", "/api/tickets", True),
        ("GET", "/api/oauth/callback?state=x&code=y", False),
    ],
)
async def test_every_endpoint_answers_503_misconfigured(
    stack: Stack, app_env: pytest.MonkeyPatch, method: str, path: str, admin: bool
) -> None:
    break_settings(stack, app_env)
    headers = stack.as_admin(stack.new_tenant()) if admin else {}
    response = await stack.client.request(method, path, headers=headers)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "misconfigured"
    assert "SERVICENOW_URL_TEMPLATE" in response.json()["error"]["message"]
    assert "no-placeholder" not in response.text


def test_make_run_refuses_to_start_with_one_line_per_broken_setting() -> None:
    env = {**os.environ, "SERVICENOW_URL_TEMPLATE": BAD_TEMPLATE, "PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "localdev.run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("Misconfigured setting")]
    assert problems == ["Misconfigured setting SERVICENOW_URL_TEMPLATE: must contain {instance}"]
    assert "no-placeholder" not in result.stderr + result.stdout
    assert "Functions host ready" not in result.stdout
