"""The OpenAPI document tested against the running app: `/api/openapi.json` and `/api/docs` as served,
and Schemathesis sending every operation generated requests (valid and invalid ones, plus the
document's own examples) with the role the operation needs, on a connected tenant.

Every answer must be no server error (5xx) and conform to the document: a documented status, its
content type, its required headers and its schema (error bodies included, whose `code` must be one
the document lists for that status). `SCHEMATHESIS_EXAMPLES` (default 20) is the number of
generated requests per operation and generation mode; the totals are printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import function_app
from functions._openapi import build, render, route_prefix
from functions.docs import CONTENT_SECURITY_POLICY
from localdev.functions_index import functions_of
from tests.e2e import tickets_api
from tests.e2e.conftest import REPO_ROOT, Stack

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


async def test_the_served_document_is_the_committed_and_generated_one(stack: Stack) -> None:
    response = await stack.client.get("/api/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["X-Request-Id"]
    assert response.text == (REPO_ROOT / "openapi.json").read_text(encoding="utf-8")
    assert response.text == render(build(functions_of(function_app.app), route_prefix()))


async def test_the_docs_page_is_served_with_a_strict_policy(stack: Stack) -> None:
    page = await stack.client.get("/api/docs")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for name, media_type in (("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css")):
        asset = await stack.client.get(f"/api/docs/{name}")
        assert asset.status_code == 200, (name, asset.text[:200])
        assert asset.headers["content-type"].startswith(media_type), asset.headers
        assert f"/api/docs/{name}" in page.text
    for name in ("index.html", "LICENSE", "swagger-ui.js", "swagger-ui-bundle.js.map", "%2e%2e", "VERSION"):
        refused = await stack.client.get(f"/api/docs/{name}")
        assert refused.status_code == 404, (name, refused.status_code)
        assert refused.json()["error"]["code"] == "not_found"


# --- Schemathesis ---------------------------------------------------------------------------------


@dataclass
class Tally:
    operations: int = 0
    examples: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, failure: str | None) -> None:
        with self.lock:
            self.examples += 1
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if failure is not None:
                self.failures.append(failure)


# aiohttp's limit on the request line; the platform's front end has limits of its own.
MAX_REQUEST_LINE = 8190


def reaches_the_app(case: Any) -> bool:
    """False for a request the local host's HTTP server answers itself, before any function runs:
    a request line over its limit, or a path with a line break (its catch-all route matches none,
    as the fuzz test notes). Such answers test the host, not the document."""
    kwargs = case.as_transport_kwargs(base_url="http://127.0.0.1:7071")
    url = requests.Request(kwargs["method"], kwargs["url"], params=kwargs.get("params")).prepare().url or ""
    path = urlsplit(url).path.lower()
    return len(url) + 20 < MAX_REQUEST_LINE and "%0a" not in path and "%0d" not in path


@dataclass(frozen=True)
class Run:
    """One operation's requests: as whom, how many per strategy, path values to use as well."""

    headers: dict[str, str]
    examples: int
    fixed: dict[str, Any] = field(default_factory=dict)


def run_operation(operation: Any, base_url: str, run: Run, tally: Tally) -> None:
    """Send the operation's examples and `run.examples` generated requests per mode (blocking)."""
    headers, fixed = run.headers, run.fixed
    strategies = [
        *operation.get_strategies_from_examples(),
        *(operation.as_strategy(mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)),
    ]
    if fixed:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, **fixed))
    session = requests.Session()

    @settings(
        max_examples=run.examples * len(strategies),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def send(case: Any) -> None:
        assume(reaches_the_app(case))
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        failure = None
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (AssertionError, FailureGroup) as error:
            failure = f"{operation.label}: {case.as_curl_command(headers=headers)}\n{error}"
        tally.record(response.status_code, failure)

    send()
    session.close()


async def test_every_operation_conforms_to_the_document(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    served = await stack.client.get("/api/openapi.json")
    schema = schemathesis.openapi.from_dict(served.json())
    ticket_tenant = await tickets_api.connected_tenant(stack)
    ticket = (await tickets_api.create(stack, ticket_tenant, tickets_api.ticket_body())).json()
    tally = Tally()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid document fails here
        roles = operation.definition.raw.get("x-required-roles", [])
        fixed = {"path_parameters": {"id": ticket["id"]}} if "{id}" in operation.path else {}
        tally.operations += 1
        if not roles:
            await asyncio.to_thread(run_operation, operation, stack.url, Run({}, EXAMPLES), tally)
            continue
        # Each operation on a tenant of its own (a removal or a new configuration stays its own),
        # then, fewer, on a tenant that never connected ServiceNow (the 409s).
        tenant = ticket_tenant if fixed else await tickets_api.connected_tenant(stack)
        runs = [
            Run(stack.as_user(tenant, *roles), EXAMPLES, fixed),
            Run(stack.as_user(stack.new_tenant(), *roles), max(1, EXAMPLES // 4)),
        ]
        for run in runs:
            await asyncio.to_thread(run_operation, operation, stack.url, run, tally)
    with capsys.disabled():
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(tally.by_status.items()))
        print(
            f"\nschemathesis: {tally.operations} operations, {tally.examples} requests "
            f"({statuses}), {len(tally.failures)} failures"
        )
    assert tally.failures == [], "\n\n".join(tally.failures[:10])
    assert tally.operations == len([op for ops in served.json()["paths"].values() for op in ops])
    assert json.dumps(tally.by_status)  # something was sent
