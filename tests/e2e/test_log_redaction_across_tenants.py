"""A tenant that picks its secrets to collide with another tenant's log text changes nothing for it.

Tenant B goes through an ordinary journey (connect, sync, tickets, and every failure its logs can
show) on a fresh instance before tenant A exists, and again on another fresh instance after A has
done its worst; a first journey before both only warms the app up (tables, queues, app key). A
chooses its client secrets, and its ServiceNow instance chooses the authorization code and tokens
it hands out, to be the text of B's log lines (error codes, function names, ServiceNow's texts, B's
next tenant id, instance and client id), and A sends inputs that collide with B's. Everything A's
values could reach is registered with the log redactor. B's logs, responses and stored rows must
be the same in both runs, once what differs between any two runs (timestamps, invocation and
request ids, B's tenant id, instance URL, random ids) is normalised.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from localdev.servicenow import oauth as simulated_oauth
from shared import observability
from tests.e2e import api, sync_api, tickets_api
from tests.e2e.conftest import Simulator, Stack

pytestmark = pytest.mark.e2e

IDEMPOTENCY_KEY = "b-idempotency-key-0001"
MAX_VALUES = 56  # and A's tokens: fewer than the values a tenant's redaction scope keeps
FORGED = "top\nERROR functions._http forged: an admin removed the connection"
_VARYING = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?"), "<time>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])"), "<hash>"),  # of a generated idempotency key
    (re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])"), "<sys_id>"),
    (re.compile(r"(state|code_challenge|code)=[A-Za-z0-9_-]+"), r"\1=<random>"),
    (re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT"), "<http-date>"),
    (re.compile(r"Duration=\d+ms"), "Duration=<ms>"),
    (re.compile(r"datetime'[^']*'"), "datetime'<time>'"),
    (re.compile(r"~[0-9]{13}~"), "~<inverted-ms>~"),  # the time in a timeline event's RowKey
]


@dataclass
class Run:
    """What one run of B's journey showed: log lines, responses and rows, normalised."""

    tenant: str
    simulator: Simulator
    logs: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # this run's random ids -> placeholders

    def __post_init__(self) -> None:
        self.ids.update({self.tenant: "<tenant>", self.simulator.client_id: "<client>"})
        url = self.simulator.url
        self.ids.update({url: "<instance>", url.split("//", 1)[-1]: "<instance>"})

    def normal(self, text: str) -> str:
        for value, placeholder in self.ids.items():
            text = text.replace(value, placeholder)
        for pattern, placeholder in _VARYING:
            text = pattern.sub(placeholder, text)
        return text


async def _b_journey(stack: Stack, run: Run, caplog: pytest.LogCaptureFixture) -> None:
    """Connect, sync, create and read tickets, and fail in every way B's logs can show."""
    first_record = len(caplog.records)
    tenant, keep = run.tenant, run.responses

    async def call(method: str, path: str, headers: dict[str, str], **options: Any) -> httpx.Response:
        response = await stack.client.request(method, path, headers=headers, **options)
        keep.append(f"{method} {path} -> {response.status_code} {response.text}")
        return response

    round_trip = await api.connect(stack, tenant, run.simulator)
    assert round_trip.outcome == {"servicenow": "connected"}
    run.ids[round_trip.state] = "<state>"
    unknown = await api.callback(stack, f"{stack.redirect_uri}?state=no-such-state&code=abc")
    keep.append(unknown)
    assert await sync_api.run_worker(stack, tenant) == "succeeded"
    reader, writer = tickets_api.reader(stack, tenant), tickets_api.writer(stack, tenant)
    await call("GET", "/api/tickets", reader, params={"top": "many"})
    await call("GET", "/api/tickets", reader, params={FORGED: "1"})
    created = await call(
        "POST", "/api/tickets", {**writer, "Idempotency-Key": IDEMPOTENCY_KEY}, json=tickets_api.ticket_body()
    )
    assert created.status_code == 201, created.text
    run.ids[created.json()["id"]] = "<ticket>"
    await call("GET", f"/api/tickets/{created.json()['id']}", reader)
    await call("GET", "/api/tickets/00000000-0000-4000-8000-000000000000", reader)
    await tickets_api.fault(run.simulator, "403", method="POST", path_prefix="/api/now/table/incident")
    await call("POST", "/api/tickets", writer, json=tickets_api.ticket_body(name="Rejected one"))
    await call(
        "PUT", "/api/provisioning", stack.as_admin(tenant), json={"instance": "x", "clientId": "bad id"}
    )
    await call("GET", "/api/tickets/summary", reader)
    await call("GET", "/api/provisioning", reader)

    run.responses[:] = [run.normal(response) for response in run.responses]
    for record in caplog.records[first_record:]:
        # Records of B's invocations: B's tenant, or none yet (the callback, the host's own lines).
        context = (getattr(record, "invocation_id", "-"), getattr(record, "tenant_id", "-"))
        if context[0] != "-" and context[1] in (tenant, "-"):
            text = f"{record.levelname} {record.name} tenant={context[1]} {record.getMessage()}"
            run.logs.append(run.normal(text + (f"\n{record.exc_text}" if record.exc_text else "")))
    rows = await stack.all_rows()
    for table in sorted(rows):
        for row in rows[table]:
            if tenant in (row.get("PartitionKey"), row.get("TenantId")):
                run.rows.append(run.normal(f"{table} {json.dumps(row, default=str, sort_keys=True)}"))


def _colliding_values(baseline: Run, next_b: Run) -> list[str]:
    """What A registers: B's next tenant id, instance and client id; the app's own log lines of B
    (error codes, function names, ServiceNow's texts) whole and word by word; then words of the
    SDKs' wire traces. As many as a tenant's scope keeps, so that none is forgotten."""
    app_lines: list[str] = []
    wire_lines: list[str] = []
    for record in baseline.logs:
        level_and_logger, message = record.split(" tenant=", 1)
        (wire_lines if " azure." in level_and_logger else app_lines).extend(
            line.split(" ", 1)[-1].strip() for line in message.split("\n")
        )
    chosen = {next_b.tenant: None, next_b.simulator.url: None, next_b.simulator.client_id: None}
    chosen.update(dict.fromkeys(app_lines))
    for line in [*app_lines, *wire_lines]:
        chosen.update(dict.fromkeys(re.split(r"[\s:;,()'\"=]+", line)))
    usable = [v for v in chosen if 8 <= len(v) <= 512 and "<" not in v]
    return usable[:MAX_VALUES]


def _tokens_from(values: list[str]) -> Iterator[str]:
    """What A's ServiceNow instance hands out as codes and tokens: B's words, then random ones."""
    yield from values
    while True:
        yield secrets.token_urlsafe(64)


async def _tenant_a_attacks(
    stack: Stack, values: list[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = stack.new_tenant()
    instance = await stack.start_simulator()
    for value in values:  # each PUT stores (and registers) a client secret of A's choosing
        await api.configure(stack, tenant, instance, client_secret=value)
    tokens = _tokens_from(values[:3])
    with monkeypatch.context() as patch:
        patch.setattr(simulated_oauth, "new_token", lambda: next(tokens))
        instance.client_secret = instance.state.oauth.clients[instance.client_id] = values[0]
        round_trip = await api.connect(stack, tenant, instance)
    assert round_trip.outcome == {"servicenow": "connected"}, round_trip.outcome
    # A's inputs collide with B's too: the same idempotency key, names made of B's log text.
    headers = {**tickets_api.writer(stack, tenant), "Idempotency-Key": IDEMPOTENCY_KEY}
    body = tickets_api.ticket_body(name=values[-1][:100], description=" ".join(values)[:4000])
    response = await stack.client.post("/api/tickets", json=body, headers=headers)
    assert response.status_code == 201, response.text
    assert await sync_api.run_worker(stack, tenant) == "succeeded"

    # The values are live: A's own log lines lose them (A hides words from itself, no one else).
    first_record = len(caplog.records)
    await tickets_api.get(stack, tenant, expect=400, top="many")
    [line] = [r.getMessage() for r in caplog.records[first_record:] if r.name == "functions._http"]
    assert "validation_error" not in line
    assert "***" in line


async def test_tenant_a_cannot_change_what_tenant_b_logs_sees_or_stores(
    stack: Stack, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    observability.install()
    caplog.set_level(logging.INFO)
    # First use creates tables, queues and the app key (cached from the next read on): not part of
    # what the comparison is about.
    warm_up = Run(stack.new_tenant(), stack.simulator)
    await _b_journey(stack, warm_up, caplog)
    await api.authorize(stack, warm_up.tenant)
    before = Run(stack.new_tenant(), await stack.start_simulator())
    await _b_journey(stack, before, caplog)
    assert any("validation_error" in line for line in before.logs)  # B's logs hold what A will aim at

    after = Run(stack.new_tenant(), await stack.start_simulator())
    values = _colliding_values(before, after)
    await _tenant_a_attacks(stack, values, monkeypatch, caplog)
    await _b_journey(stack, after, caplog)

    assert after.logs == before.logs
    assert after.responses == before.responses
    assert after.rows == before.rows
    assert not any(line.startswith("ERROR functions._http forged") for line in caplog.text.splitlines())
