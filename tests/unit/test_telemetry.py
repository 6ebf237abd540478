"""Telemetry: what a span may carry (tenant, invocation, never a secret), the span and count of each
ServiceNow request, the distro's start, and that nothing is measured or imported while it is off."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
from opentelemetry.trace import Link, SpanKind, StatusCode

from localdev.local_settings import REPO_ROOT
from shared import observability, telemetry
from shared.monitoring import azure_monitor
from shared.monitoring.spans import SpanHygiene, clean_url
from shared.servicenow.transport import new_http_client
from tests.conftest import BASE_ENV
from tests.telemetry_capture import capturing

TENANT = "11111111-1111-1111-1111-111111111111"
SECRET = "tenant-chosen-secret-0123456789"
BEARER = "Bearer abcdefghijklmnop0123456789"


def _text_of(span: Any) -> str:
    """Everything of a span an exporter would send, as one text."""
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    return json.dumps([span.name, dict(span.attributes or {}), events, span.status.description], default=str)


def test_a_span_carries_the_tenant_and_invocation_and_no_secret() -> None:
    with capturing() as capture, observability.log_context(invocation_id="inv-1", tenant_id=TENANT):
        observability.register_secret(SECRET)
        tracer = telemetry.tracer()
        assert tracer is not None
        with tracer.start_as_current_span(
            f"GET https://h.example/api/oauth/callback?code={SECRET}",
            attributes={
                "url.full": f"https://user:pw@h.example/api/oauth/callback?code=abc&state={SECRET}#frag",
                "url.query": "code=abc&state=def",
                "http.request.header.authorization": (BEARER,),
                "connector.client_secret": "anything",
                "db.statement": f"token=x1y2z3w4v5u6 and {SECRET}",
            },
        ) as span:
            span.add_event("exception", {"exception.message": f"failed with {BEARER} and {SECRET}"})
            span.set_attribute("http.target", "/oauth_token.do?refresh_token=abc")
            span.set_status(StatusCode.ERROR, f"GET https://h.example/x?sig={SECRET} failed")
    [exported] = capture.spans()
    attributes = dict(exported.attributes or {})
    assert attributes["connector.tenant_id"] == TENANT
    assert attributes["faas.invocation_id"] == "inv-1"
    assert attributes["url.full"] == "https://h.example/api/oauth/callback"
    assert attributes["http.target"] == "/oauth_token.do"
    assert not {"url.query", "http.request.header.authorization", "connector.client_secret"} & set(attributes)
    text = _text_of(exported)
    for secret in (SECRET, "abcdefghijklmnop0123456789", "x1y2z3w4v5u6", "code=", "state=", "sig=", "pw@"):
        assert secret not in text


def test_links_event_names_and_entity_keys_anywhere_are_cleaned_too() -> None:
    with capturing() as capture, observability.log_context(invocation_id="inv-2", tenant_id=TENANT):
        observability.register_secret(SECRET)
        tracer = telemetry.tracer()
        assert tracer is not None
        with tracer.start_as_current_span("parent") as parent:
            context = parent.get_span_context()
        link = Link(context, {"note": BEARER, "messaging.url": f"https://x.example/y?sig={SECRET}"})
        with tracer.start_as_current_span("child", links=[link]) as span:
            span.add_event(f"retry of https://h.example/p?code={SECRET}", {"a": "b"})
            span.set_attribute("url.path", f"/oauthstates(PartitionKey='p',RowKey='{SECRET}')")
    [child] = [s for s in capture.spans() if s.name == "child"]
    text = json.dumps(
        [
            [dict(link.attributes or {}) for link in child.links],
            [e.name for e in child.events],
            dict(child.attributes or {}),
        ]
    )
    for secret in (SECRET, "abcdefghijklmnop0123456789", "sig=", "code="):
        assert secret not in text
    assert child.links[0].context == context  # the link itself is kept


def test_clean_url_keeps_scheme_host_port_and_path() -> None:
    assert clean_url("https://a:b@dev1.service-now.com:8443/oauth_revoke_token.do?token=t#x") == (
        "https://dev1.service-now.com:8443/oauth_revoke_token.do"
    )
    assert clean_url("/api/oauth/callback?code=c&state=s") == "/api/oauth/callback"


def _instance(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/down":
        raise httpx.ConnectError("refused", request=request)
    return httpx.Response(429 if request.url.path == "/busy" else 201, json={})


async def test_each_servicenow_request_is_a_client_span_and_its_answer_is_counted() -> None:
    with capturing() as capture, observability.log_context(invocation_id="inv-2", tenant_id=TENANT):
        async with new_http_client(transport=httpx.MockTransport(_instance)) as client:
            await client.post("https://dev1.service-now.com/api/now/table/incident?sysparm_x=1")
            await client.get("https://dev1.service-now.com/busy", headers={"Authorization": BEARER})
            with pytest.raises(httpx.ConnectError):
                await client.post("https://dev1.service-now.com/down?token=revoked-token-value")
    spans = capture.spans()
    assert [(s.name, s.kind, (s.attributes or {}).get("http.response.status_code")) for s in spans] == [
        ("POST servicenow", SpanKind.CLIENT, 201),
        ("GET servicenow", SpanKind.CLIENT, 429),
        ("POST servicenow", SpanKind.CLIENT, None),
    ]
    assert [(s.attributes or {})["url.full"] for s in spans] == [
        "https://dev1.service-now.com/api/now/table/incident",
        "https://dev1.service-now.com/busy",
        "https://dev1.service-now.com/down",
    ]
    assert all((s.attributes or {})["connector.tenant_id"] == TENANT for s in spans)
    assert [s.status.status_code for s in spans] == [StatusCode.UNSET, StatusCode.ERROR, StatusCode.ERROR]
    assert all("Bearer" not in _text_of(s) and "revoked-token-value" not in _text_of(s) for s in spans)
    for status_class in ("2xx", "429", "error"):
        assert capture.total("connector.servicenow.responses", status_class=status_class) == 1


async def test_with_telemetry_off_requests_pass_through_unmeasured() -> None:
    telemetry.stop()
    async with new_http_client(transport=httpx.MockTransport(_instance)) as client:
        assert (await client.get("https://dev1.service-now.com/busy")).status_code == 429
    telemetry.servicenow_response(200)  # nothing to record into: no error
    assert telemetry.tracer() is None
    assert not telemetry.enabled()


_PROBE = r"""
import json, sys
import function_app
from shared.bootstrap import get_container
get_container()
print(json.dumps([m for m in ("opentelemetry", "azure.monitor.opentelemetry") if m in sys.modules]))
"""


def test_without_a_connection_string_the_first_invocation_imports_no_telemetry() -> None:
    env = {"PATH": "/usr/bin:/bin", **BASE_ENV}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_distro_starts_once_with_our_span_processor_first(
    app_env: pytest.MonkeyPatch,
) -> None:
    import azure.monitor.opentelemetry

    calls: list[dict[str, Any]] = []
    app_env.setattr(azure.monitor.opentelemetry, "configure_azure_monitor", lambda **kw: calls.append(kw))
    app_env.setattr(azure_monitor, "_decided", False)
    app_env.setenv(
        "APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=00000000-0000-0000-0000-000000000000"
    )
    try:
        assert azure_monitor.start_once() is True
        assert azure_monitor.start_once() is True
    finally:
        telemetry.stop()
    [options] = calls
    assert options["connection_string"].startswith("InstrumentationKey=")
    assert [type(p) for p in options["span_processors"]] == [SpanHygiene]
    assert options["instrumentation_options"]["httpx"] == {"enabled": False}
    assert "azure_sdk" not in options["instrumentation_options"]  # Key Vault, Tables, Queues: traced
    assert options["disable_logging"] is True  # the host sends the (scrubbed) log records


def test_a_blank_connection_string_leaves_telemetry_off(app_env: pytest.MonkeyPatch) -> None:
    app_env.setattr(azure_monitor, "_decided", False)
    app_env.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", " ")
    assert azure_monitor.start_once() is False
    assert not telemetry.enabled()
