"""Every function produces binding metadata the Python worker accepts when it indexes the app.

The worker (not installable here) rejects a function whose parameters and bindings disagree, a
duplicate name, or a trigger it cannot read; the host then reports "0 functions loaded" with no
clear error. These checks mirror those rules on our real app.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import pytest

import function_app
from localdev.functions_index import functions_of, resolve_setting
from localdev.local_settings import REPO_ROOT, read_values
from localdev.schedules import Schedule

FUNCTIONS = functions_of(function_app.app)
SAMPLE_SETTINGS = read_values(REPO_ROOT / "local.settings.sample.json")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")
QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
AUTH_LEVELS = {"ANONYMOUS", "FUNCTION", "ADMIN"}


def metadata(function: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(function.get_function_json())
    return document


def test_the_app_has_functions_with_unique_valid_names() -> None:
    names = [f.get_function_name() for f in FUNCTIONS]
    assert names
    assert len(names) == len({n.lower() for n in names})
    assert all(NAME.match(n) for n in names), names


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.get_function_name())
def test_bindings_match_the_python_signature(function: Any) -> None:
    bindings = metadata(function)["bindings"]
    triggers = [b for b in bindings if b["type"].endswith("Trigger")]
    assert len(triggers) == 1
    assert triggers[0]["direction"] == "IN"
    names = [b["name"] for b in bindings]
    assert len(names) == len(set(names))
    parameters = set(inspect.signature(function.get_user_function()).parameters)
    bound = {n for n in names if n != "$return"}
    assert bound <= parameters, f"bindings without a parameter: {bound - parameters}"
    assert parameters - {"context"} <= bound, f"parameters without a binding: {parameters - bound}"


@pytest.mark.parametrize(
    "function", [f for f in FUNCTIONS if f.is_http_function()], ids=lambda f: f.get_function_name()
)
def test_http_triggers_are_well_formed(function: Any) -> None:
    trigger = next(b for b in metadata(function)["bindings"] if b["type"] == "httpTrigger")
    assert trigger["authLevel"] in AUTH_LEVELS
    assert trigger["route"]
    assert not trigger["route"].startswith("/")
    assert set(trigger["methods"]) <= {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
    assert any(b["type"] == "http" and b["direction"] == "OUT" for b in metadata(function)["bindings"])


def test_no_two_http_functions_serve_the_same_route_and_method() -> None:
    seen: set[tuple[str, str]] = set()
    for function in (f for f in FUNCTIONS if f.is_http_function()):
        trigger = next(b for b in metadata(function)["bindings"] if b["type"] == "httpTrigger")
        for method in trigger["methods"]:
            key = (trigger["route"].lower(), method)
            assert key not in seen, key
            seen.add(key)


@pytest.mark.parametrize(
    "function",
    [f for f in FUNCTIONS if f.get_trigger().get_binding_name() == "timerTrigger"],
    ids=lambda f: f.get_function_name(),
)
def test_timer_schedules_resolve_and_parse(function: Any) -> None:
    trigger = function.get_trigger()
    Schedule.parse(resolve_setting(trigger.schedule, SAMPLE_SETTINGS))
    assert not trigger.run_on_startup, "runOnStartup fires on every scale-out; never in production"


@pytest.mark.parametrize(
    "function",
    [f for f in FUNCTIONS if f.get_trigger().get_binding_name() == "queueTrigger"],
    ids=lambda f: f.get_function_name(),
)
def test_queue_triggers_name_a_valid_queue_and_a_known_connection(function: Any) -> None:
    trigger = function.get_trigger()
    assert QUEUE_NAME.match(resolve_setting(trigger.queue_name, SAMPLE_SETTINGS))
    assert trigger.connection in SAMPLE_SETTINGS
