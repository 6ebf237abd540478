"""Telemetry across the journeys: connect (Key Vault, Tables, the OAuth callback's code and state,
ServiceNow's token exchange), the queue worker's sync, a manual sync's queue message, a ticket
create, and the improvement actions (Entra, Graph), through the local host, with the tracer
provider's exporter in memory (`tests.telemetry_capture`): everything an exporter would get.

- A span for each outgoing call kind: ServiceNow, Entra and Graph (our httpx transport and token
  spans), Key Vault, Table and Queue (azure-core's OpenTelemetry tracing), with the tenant.
- Each invocation runs in the trace context the host passed, as the Functions worker attaches it
  (PYTHON_ENABLE_OPENTELEMETRY): here a fresh remote parent per invocation. Every span of the
  invocation is in that trace, under that parent, and carries the invocation (request) id.
- No secret anywhere in a span: client secrets, the callback's code and state, ServiceNow's and
  Entra's tokens, the storage account key and its signatures, Authorization headers.
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from localdev.host import LocalHost
from tests.conftest import GRAPH_CLIENT_SECRET
from tests.e2e import api, sync_api, tickets_api
from tests.e2e.conftest import Stack
from tests.telemetry_capture import Capture, capturing

pytestmark = pytest.mark.e2e

# Wire text that would betray a credential even when its value is unknown to the test.
FORBIDDEN_WORDS = (
    "bearer ",
    "sharedkey",
    "authorization",
    "client_secret",
    "code=",
    "state=",
    "sig=",
    "token=",
)


@pytest.fixture
def host_trace_contexts(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[int, int]]:
    """Invocation id -> (trace id, parent span id) of the trace context it ran in: each invocation
    gets a new one, extracted from a `traceparent` and made current as the worker does. Set up
    before the host starts: its queue pollers keep the `_invoke` they were given."""
    contexts: dict[str, tuple[int, int]] = {}
    invoke = LocalHost._invoke

    async def in_host_trace(
        self: LocalHost, function: Any, argument: Any, invocation_id: str | None = None
    ) -> Any:
        invocation_id = invocation_id or str(uuid.uuid4())
        trace_id, span_id = secrets.randbits(128) | 1, secrets.randbits(64) | 1
        contexts[invocation_id] = (trace_id, span_id)
        carrier = {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-01"}
        token = otel_context.attach(TraceContextTextMapPropagator().extract(carrier))
        try:
            return await invoke(self, function, argument, invocation_id)
        finally:
            otel_context.detach(token)

    monkeypatch.setattr(LocalHost, "_invoke", in_host_trace)
    return contexts


async def _journeys(stack: Stack, tenant: str) -> list[str]:
    """Every journey once; returns the secrets they involved that the test knows of."""
    connected = await api.connect(stack, tenant, stack.simulator)
    assert connected.outcome == {"servicenow": "connected"}
    unknown_code = "unknown-state-code-" + secrets.token_hex(8)
    await api.callback(stack, f"{stack.redirect_uri}?state=no-such-state-{tenant}&code={unknown_code}")
    assert await sync_api.run_worker(stack, tenant) == "succeeded"
    await sync_api.sync_now(stack, tenant)
    await tickets_api.create(
        stack, tenant, tickets_api.ticket_body(), key="telemetry-" + secrets.token_hex(4)
    )
    actions = await stack.client.get("/api/improvement-actions", headers=tickets_api.reader(stack, tenant))
    assert actions.status_code == 200, actions.text
    grants = await stack.simulator.tokens()
    account_key = dict(
        part.split("=", 1) for part in stack.azurite.connection_string.split(";") if "=" in part
    )["AccountKey"]
    assert connected.code is not None
    return [
        stack.simulator.client_secret,
        GRAPH_CLIENT_SECRET,
        connected.code,
        connected.state,
        unknown_code,
        account_key,
        *(grant["refresh_token"] for grant in grants),
        *(access["access_token"] for grant in grants for access in grant["access_tokens"]),
        *stack.entra.state.tokens,
    ]


def _exported_text(span: ReadableSpan) -> str:
    events = [(event.name, dict(event.attributes or {})) for event in span.events]
    links = [dict(link.attributes or {}) for link in span.links]
    parts = [span.name, dict(span.attributes or {}), events, links, span.status.description]
    return json.dumps(parts, default=str)


def _kinds(spans: list[ReadableSpan]) -> set[str]:
    found: set[str] = set()
    for span in spans:
        attributes = dict(span.attributes or {})
        peer = attributes.get("peer.service")
        if isinstance(peer, str):
            found.add(peer)
        for prefix, kind in (
            ("SecretClient.", "keyvault"),
            ("TableClient.", "table"),
            ("QueueClient.send", "queue"),
        ):
            if span.name.startswith(prefix):
                found.add(kind)
    return found


async def test_every_outgoing_call_is_a_span_of_the_tenant_in_the_hosts_trace_with_no_secret(
    host_trace_contexts: dict[str, tuple[int, int]], stack: Stack
) -> None:
    tenant = stack.new_tenant()
    with capturing() as capture:
        known_secrets = await _journeys(stack, tenant)
        spans = capture.spans()

    ours = [s for s in spans if (s.attributes or {}).get("connector.tenant_id") == tenant]
    assert _kinds(ours) >= {"servicenow", "entra", "graph", "keyvault", "table", "queue"}
    _assert_in_the_hosts_trace(spans, host_trace_contexts)
    _assert_tenant_on_every_span_of_its_invocations(spans, tenant)
    for span in spans:  # the host's own queue polling included
        text = _exported_text(span)
        assert not [s for s in known_secrets if s and s in text], span.name
        assert not [w for w in FORBIDDEN_WORDS if w in text.lower()], text
    _assert_metrics(capture)


def _assert_in_the_hosts_trace(spans: list[ReadableSpan], contexts: dict[str, tuple[int, int]]) -> None:
    ids = {span.context.span_id for span in spans if span.context is not None}
    invoked = [s for s in spans if (s.attributes or {}).get("faas.invocation_id")]
    assert invoked
    for span in invoked:
        invocation = str((span.attributes or {})["faas.invocation_id"])
        trace_id, parent_id = contexts[invocation]
        assert span.context is not None
        assert span.context.trace_id == trace_id, span.name
        assert span.parent is not None, f"{span.name} is a root: not under the host's span"
        assert span.parent.span_id in ids or span.parent.span_id == parent_id, span.name


def _assert_tenant_on_every_span_of_its_invocations(spans: list[ReadableSpan], tenant: str) -> None:
    """An invocation that knew its tenant stamped it on every span: no invocation mixes a tenant
    with spans of none or of another. (Earlier tests' queue messages may run here too: those are
    other tenants' invocations, held to the same rule.)"""
    by_invocation: dict[str, set[object]] = {}
    for span in spans:
        attributes = dict(span.attributes or {})
        if "faas.invocation_id" in attributes:
            by_invocation.setdefault(str(attributes["faas.invocation_id"]), set()).add(
                attributes.get("connector.tenant_id")
            )
    assert all(len(tenants) == 1 for tenants in by_invocation.values()), by_invocation
    assert any(tenants == {tenant} for tenants in by_invocation.values())


def _assert_metrics(capture: Capture) -> None:
    assert capture.total("connector.tickets.created", type="incident", outcome="created") == 1
    assert capture.total("connector.servicenow.responses", status_class="2xx") >= 4
    assert capture.total("connector.sync.runs", outcome="synced") >= 1  # the manual one may run too
