"""What the local host needs to know about each function in `app.get_functions()`.

This reads the same objects the Python worker indexes. Bindings the local host cannot honour are
refused at start-up with a clear message, rather than silently ignored.
"""

from __future__ import annotations

import inspect
import os
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from localdev.routes import RouteTemplate
from localdev.schedules import Schedule


class UnsupportedFunction(RuntimeError):
    pass


@dataclass(frozen=True)
class IndexedFunction:
    name: str
    trigger_type: str
    trigger_arg: str
    user_function: Callable[..., Any]
    takes_context: bool


@dataclass(frozen=True)
class HttpFunction(IndexedFunction):
    route: RouteTemplate
    methods: frozenset[str]


@dataclass(frozen=True)
class TimerFunction(IndexedFunction):
    schedule: Schedule
    run_on_startup: bool


@dataclass(frozen=True)
class QueueFunction(IndexedFunction):
    queue_name: str
    connection: str


ALL_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


_indexed_apps: weakref.WeakKeyDictionary[func.FunctionApp, list[Any]] = weakref.WeakKeyDictionary()


def functions_of(app: func.FunctionApp) -> list[Any]:
    """`app.get_functions()`, once per app: the library refuses a second call on the same app."""
    if app not in _indexed_apps:
        _indexed_apps[app] = app.get_functions()
    return _indexed_apps[app]


def resolve_setting(value: str, environ: Mapping[str, str]) -> str:
    """`%NAME%` means "the value of app setting NAME", as in binding attributes."""
    if len(value) > 2 and value.startswith("%") and value.endswith("%"):
        name = value[1:-1]
        if name not in environ:
            raise UnsupportedFunction(f"app setting {name} is not set (referenced as {value})")
        return environ[name]
    return value


def index(
    app: func.FunctionApp, route_prefix: str, environ: Mapping[str, str] | None = None
) -> list[IndexedFunction]:
    env = os.environ if environ is None else environ
    indexed: list[IndexedFunction] = []
    for function in functions_of(app):
        trigger: Any = function.get_trigger()  # the concrete trigger classes carry the attributes
        name = function.get_function_name()
        user_function = function.get_user_function()
        others = [b for b in function.get_bindings() if b is not trigger and b.name != "$return"]
        if others:
            kinds = ", ".join(sorted(b.get_binding_name() for b in others))
            raise UnsupportedFunction(f"{name}: the local host does not support bindings of type {kinds}")
        common: dict[str, Any] = {
            "name": name,
            "trigger_type": trigger.get_binding_name(),
            "trigger_arg": trigger.name,
            "user_function": user_function,
            "takes_context": "context" in inspect.signature(user_function).parameters,
        }
        if function.is_http_function():
            methods = (
                frozenset(str(getattr(m, "value", m)).upper() for m in (trigger.methods or [])) or ALL_METHODS
            )
            route = str(trigger.route or name)
            indexed.append(
                HttpFunction(**common, route=RouteTemplate.parse(route_prefix, route), methods=methods)
            )
        elif common["trigger_type"] == "timerTrigger":
            schedule = Schedule.parse(resolve_setting(trigger.schedule, env))
            indexed.append(
                TimerFunction(**common, schedule=schedule, run_on_startup=bool(trigger.run_on_startup))
            )
        elif common["trigger_type"] == "queueTrigger":
            indexed.append(
                QueueFunction(
                    **common,
                    queue_name=resolve_setting(trigger.queue_name, env),
                    connection=trigger.connection,
                )
            )
        else:
            raise UnsupportedFunction(
                f"{name}: the local host does not run {common['trigger_type']} triggers"
            )
    http = [f for f in indexed if isinstance(f, HttpFunction)]
    http.sort(key=lambda f: f.route.precedence)
    return http + [f for f in indexed if not isinstance(f, HttpFunction)]
