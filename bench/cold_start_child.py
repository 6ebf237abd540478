"""One fresh worker process for `bench.cold_start`: its phases timed in order, one cold request, then warm ones.

Run by the benchmark as `python -m bench.cold_start_child post|get --warm N --services JSON
--spawned-at T`; it prints one line, `cold_start-result: {json}`. It imports nothing at the top but
a few standard modules, so that what `import function_app` and composition load is really loaded
by them; each phase is marked on stderr (`cold_start-phase: name`) for an `-X importtime` run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

_LOADED_AT = time.time()  # the child's first line: python start ends here

RESULT_MARK = "cold_start-result: "
PHASE_MARK = "cold_start-phase: "
IMPORTS = {"import azure.functions": "azure.functions", "import function_app": "function_app"}
COMPOSITION = (
    ("settings", "settings"),
    ("Table client", "tables"),
    ("Key Vault client", "secrets"),
    ("ServiceNow HTTP client", "servicenow_http"),
    ("Graph client", "graph"),
    ("queue client", "ticket_queue"),
    ("services", "ticketing"),
)
CALLS = ("first access token (Key Vault read)", "first connection row read (Table)", "first ServiceNow call")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _phase(name: str) -> None:
    """Where a phase begins, on stderr, among the lines `-X importtime` writes there."""
    sys.stderr.write(f"{PHASE_MARK}{name}\n")
    sys.stderr.flush()


def _timed(report: dict[str, Any], label: str, step: Any) -> Any:
    before, started = len(sys.modules), time.perf_counter()
    result = step()
    report["phases"][label] = _ms(started)
    report["modules"][label] = len(sys.modules) - before
    return result


def _compose(report: dict[str, Any]) -> Any:
    from shared.bootstrap import get_container

    _phase("composition")
    container = get_container()
    for label, attribute in COMPOSITION:
        _timed(report, f"composition: {label}", lambda name=attribute: getattr(container, name))
    return container


class CallTimes:
    """Every call of the wrapped coroutine methods, timed, by label (ms)."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {}

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        durations = self.ms.setdefault(label, [])

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                durations.append(_ms(started))

        setattr(owner, name, timed)


class _HttpOnly:
    """The app as the local host sees it, HTTP triggers only: on Azure the host polls the queues out
    of the worker's process, and here the polls would land among the requests counted."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def get_functions(self) -> list[Any]:
        from localdev.functions_index import functions_of

        return [function for function in functions_of(self._app) if function.is_http_function()]


async def _start_host(services: dict[str, str]) -> tuple[Any, Any, Any, dict[str, str]]:
    import httpx

    import function_app
    from bench.create_tickets import ADMIN, REPO_ROOT, TENANT
    from bench.wire import WireCount
    from localdev.host import HostConfig, LocalHost
    from shared.identity import PRINCIPAL_HEADER, encode_principal

    host = LocalHost(_HttpOnly(function_app.app), HostConfig.load(REPO_ROOT / "host.json"))  # type: ignore[arg-type]
    api = httpx.AsyncClient(base_url=await host.start(port=0), timeout=30)
    await api.get("/admin/invocations/none")  # the benchmark's client and the server warm; no app code
    principal = encode_principal(TENANT, ADMIN, ["Connector.Admin"], name="Bench Admin")
    return host, api, WireCount(services), {PRINCIPAL_HEADER: principal}


def _sender(kind: str, api: Any, headers: dict[str, str]) -> Any:
    from datetime import UTC, datetime, timedelta

    due = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    run = f"{os.getpid()}-{time.time_ns()}"

    async def post(index: int) -> int:
        body = {
            "type": "incident", "name": f"Cold start {index}", "description": "Created by the benchmark.",
            "priority": 3, "dueDate": due, "recommendationSource": "user", "recommendationCategory": "Data",
        }  # fmt: skip
        keyed = {**headers, "Idempotency-Key": f"cold-{run}-{index}"}
        return int((await api.post("/api/tickets", json=body, headers=keyed)).status_code)

    async def get(index: int) -> int:
        return int((await api.get("/api/tickets", headers=headers)).status_code)

    return post if kind == "post" else get


async def _requests(kind: str, warm: int, served: Any, calls: CallTimes, report: dict[str, Any]) -> None:
    """The cold request, then the warm ones; their times, the wrapped calls' and the wire's counts."""
    _, api, wire, headers = served
    send = _sender(kind, api, headers)
    with wire.counting():
        _phase("first request")
        before, started = wire.snapshot(), time.perf_counter()
        statuses = [await send(0)]
        report["first_ms"] = _ms(started)
        report["cold_wire"] = dict(wire.since(before))
        firsts = {label: len(durations) for label, durations in calls.ms.items()}
        _phase("warm requests")
        before, report["warm_ms"] = wire.snapshot(), []
        for index in range(1, warm + 1):
            started = time.perf_counter()
            statuses.append(await send(index))
            report["warm_ms"].append(_ms(started))
        report["warm_wire"] = dict(wire.since(before))
    report["calls"] = {
        label: {"first": durations[0] if firsts[label] else None, "warm": durations[firsts[label] :]}
        for label, durations in calls.ms.items()
    }
    report["bad_statuses"] = [status for status in statuses if not 200 <= status < 300]


async def _child_run(kind: str, warm: int, services: dict[str, str], report: dict[str, Any]) -> None:
    """Composition, then the local host (after it: it imports SDK modules the app loads lazily), then
    the requests, with the first token, connection-row read and ServiceNow call timed inside them."""
    from shared.services.access_tokens import AccessTokens
    from shared.stores.connections import ConnectionRepository

    container = _compose(report)
    _phase("local host")
    started = time.perf_counter()
    served = await _start_host(services)
    report["local_host_ms"] = _ms(started)
    calls = CallTimes()
    calls.wrap(AccessTokens, "access_token", CALLS[0])
    calls.wrap(ConnectionRepository, "get", CALLS[1])
    calls.wrap(container.servicenow_http, "send", CALLS[2])
    try:
        await _requests(kind, warm, served, calls, report)
    finally:
        await served[1].aclose()
        await served[0].stop()
        await container.aclose()


def child(kind: str, warm: int, services: dict[str, str], spawned_at: float) -> int:
    import importlib

    report: dict[str, Any] = {"kind": kind, "phases": {"python start": (_LOADED_AT - spawned_at) * 1000}}
    report["modules"] = {}
    for label, module in IMPORTS.items():
        _phase(label)
        _timed(report, label, lambda name=module: importlib.import_module(name))
    import asyncio

    asyncio.run(_child_run(kind, warm, services, report))
    print(RESULT_MARK + json.dumps(report), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("post", "get"))
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--services", default="{}", help="service name: base URL, for the wire count")
    parser.add_argument("--spawned-at", type=float, default=_LOADED_AT, help="time.time() at the spawn")
    args = parser.parse_args(argv)
    return child(args.kind, max(1, args.warm), json.loads(args.services), args.spawned_at)


if __name__ == "__main__":
    sys.exit(main())
