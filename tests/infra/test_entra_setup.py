"""infra/entra/setup.sh, run with bash against a stand-in `az` that records every call: a dry run
calls nothing and prints every command; a real run creates once, then only updates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .checkov_runner import INFRA_DIR

SETUP = INFRA_DIR / "entra" / "setup.sh"
APP_ID = "11111111-2222-3333-4444-555555555555"
OBJECT_ID = "99999999-8888-7777-6666-555555555555"
# Answers like the Azure CLI's, from a state file: whether the registration and its service
# principal exist, and the registration as `az ad app show` prints it.
FAKE_AZ = f'''#!{sys.executable}
import json, os, sys
state_path = os.path.join(os.environ["FAKE_AZ_DIR"], "state.json")
state = json.load(open(state_path)) if os.path.exists(state_path) else {{}}
args = sys.argv[1:]
with open(os.path.join(os.environ["FAKE_AZ_DIR"], "calls.jsonl"), "a") as calls:
    calls.write(json.dumps(args) + "\\n")
def save():
    json.dump(state, open(state_path, "w"))
if os.environ.get("FAKE_AZ_REFUSE"):
    sys.exit("az must not be called")
if args[:3] == ["ad", "app", "list"]:
    print("{APP_ID}" if state.get("app") else "")
elif args[:3] == ["ad", "app", "create"]:
    state["app"] = {{"appId": "{APP_ID}", "id": "{OBJECT_ID}"}}
    save()
    print("{APP_ID}")
elif args[:3] == ["ad", "app", "show"]:
    print("{OBJECT_ID}" if "--query" in args else json.dumps(state["app"]))
elif args[:2] == ["rest", "--method"]:
    body = json.load(open(args[args.index("--body") + 1][1:]))
    state["app"].update(body)
    save()
elif args[:3] == ["ad", "sp", "show"]:
    sys.exit(0 if state.get("sp") else 3)
elif args[:3] == ["ad", "sp", "create"]:
    state["sp"] = True
    save()
else:
    sys.exit("unexpected az call: " + " ".join(args))
'''


@pytest.fixture
def fake_az(tmp_path: Path) -> Path:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    (tmp_path / "bin").mkdir()
    az = tmp_path / "bin" / "az"
    az.write_text(FAKE_AZ, encoding="utf-8")
    az.chmod(0o755)
    return tmp_path


def _setup(fake_az: Path, *args: str, refuse: bool = False) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{fake_az / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AZ_DIR": str(fake_az),
        "HOME": str(fake_az),
        **({"FAKE_AZ_REFUSE": "1"} if refuse else {}),
    }
    return subprocess.run(
        ["bash", str(SETUP), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _calls(fake_az: Path) -> list[list[str]]:
    path = fake_az / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_dry_run_calls_nothing_and_prints_every_command(fake_az: Path) -> None:
    done = _setup(
        fake_az, "--dry-run", "--write-back", "--customer-tenant", "contoso.onmicrosoft.com", refuse=True
    )
    assert done.returncode == 0, done.stderr
    assert _calls(fake_az) == []
    printed = done.stdout + done.stderr
    for command in (
        "+ az ad app list --display-name ServiceNow\\ ticketing\\ connector",
        "+ az ad app create --display-name ServiceNow\\ ticketing\\ connector --sign-in-audience AzureADMultipleOrgs",
        "+ az rest --method PATCH --uri https://graph.microsoft.com/v1.0/applications/",
        "+ az ad sp create --id",
    ):
        assert command in printed, command
    assert "d903a879-88e0-4c09-b0c9-82f6a1333f84" in done.stdout  # ReadWrite, asked for
    assert "https://login.microsoftonline.com/contoso.onmicrosoft.com/adminconsent?client_id=" in done.stdout
    assert "Connector.Operator" in done.stdout


def test_dry_run_without_write_back_asks_for_read_only(fake_az: Path) -> None:
    done = _setup(fake_az, "--dry-run", "--app-id", APP_ID, refuse=True)
    assert done.returncode == 0, done.stderr
    assert "bf394140-e372-4bf9-a898-299cfc7564e5" in done.stdout
    assert "d903a879-88e0-4c09-b0c9-82f6a1333f84" not in done.stdout
    assert "az ad app create" not in done.stdout + done.stderr


def test_first_run_creates_and_second_run_only_updates(fake_az: Path) -> None:
    first = _setup(fake_az)
    assert first.returncode == 0, first.stderr
    created = [c[:3] for c in _calls(fake_az)]
    assert ["ad", "app", "create"] in created
    assert ["ad", "sp", "create"] in created
    state = json.loads((fake_az / "state.json").read_text())
    ids = {role["value"]: role["id"] for role in state["app"]["appRoles"]}
    (fake_az / "calls.jsonl").unlink()

    second = _setup(fake_az)
    assert second.returncode == 0, second.stderr
    again = [c[:3] for c in _calls(fake_az)]
    assert ["ad", "app", "create"] not in again
    assert ["ad", "sp", "create"] not in again
    assert ["rest", "--method", "PATCH"] in again
    state = json.loads((fake_az / "state.json").read_text())
    assert {role["value"]: role["id"] for role in state["app"]["appRoles"]} == ids
    assert state["app"]["identifierUris"] == [f"api://{APP_ID}"]


def test_an_unknown_option_is_refused(fake_az: Path) -> None:
    done = _setup(fake_az, "--dryrun", refuse=True)
    assert done.returncode == 2
    assert "unknown option --dryrun" in done.stderr
