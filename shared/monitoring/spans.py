"""The one place that decides what a span may carry: `SpanHygiene`, first of the tracer provider's
processors, so every exporter after it (Azure Monitor, Live Metrics, a test's in-memory one) sees
only what it lets through.

- Every span started in an invocation carries its tenant (`connector.tenant_id`, once
  `observability.bind_tenant` knew it) and its invocation id (`faas.invocation_id`, the request id
  of an HTTP answer). The parent is whatever context is current: the Functions worker attaches
  the host's trace context to each invocation (PYTHON_ENABLE_OPENTELEMETRY), so our spans are
  children of the host's request span.
- No secret: URLs lose their query string, fragment and user info (the OAuth callback's `code`
  and `state`, the revoke endpoint's `token`, a SAS `sig`), and Table entity keys (the OAuth
  state's row is keyed by the state); query and header attributes are
  dropped whole, and so is any attribute whose key names a credential; every other text (span
  name, attribute, event name and attribute, link attribute, status description) goes through the
  log redactor
  (`observability.redact`: the secret values registered for the tenant, bearer tokens, JWTs...).

It cleans when a span starts (what instrumentations set up front: URLs) and again when it ends
(what was added later: exception events, statuses), before the exporters' processors see it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Link, Status

from shared import observability
from shared.observability import REDACTED
from shared.telemetry import INVOCATION_ATTRIBUTE, TENANT_ATTRIBUTE

# Attributes holding a whole URL or a request target: kept without query, fragment or user info.
URL_ATTRIBUTES = frozenset({"url.full", "http.url", "http.target", "url.original"})
# Never exported: a query string on its own, and headers (Authorization, cookies, signatures).
_DROPPED = re.compile(
    r"^url\.query$|^http\.(?:request|response)\.header\.|token|secret|passw|authorization|cookie"
    r"|signature|code_verifier|assertion|credential|(?:^|[._])key$",
    re.IGNORECASE,
)
# A Table entity's address: `table(PartitionKey='..',RowKey='..')`, quotes maybe percent-encoded.
_ENTITY_KEYS = re.compile(r"\((?:PartitionKey|RowKey)=[^)/]*\)")
_MASKED_KEYS = f"(PartitionKey={REDACTED},RowKey={REDACTED})"
# A URL inside any text: its query and fragment go (user info too).
_URL_TAIL = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://)(?:[^/\s@?#\"'<>]*@)?(?P<rest>[^\s?#\"'<>]*)[?#][^\s\"'<>]*", re.I
)


def clean_url(url: str) -> str:
    """`url` without user info, query string and fragment: scheme, host, port and path only; a
    Table entity's keys masked (an OAuth state row is keyed by the state itself)."""
    without_tail = _ENTITY_KEYS.sub(_MASKED_KEYS, url.split("#", 1)[0].split("?", 1)[0])
    scheme, sep, rest = without_tail.partition("://")
    if not sep:
        return clean_text(without_tail)
    authority, slash, path = rest.partition("/")
    return clean_text(f"{scheme}://{authority.rsplit('@', 1)[-1]}{slash}{path}")


def clean_text(text: str) -> str:
    """`text` without URL query strings, Table entity keys and what the log redactor removes."""
    if "://" in text:
        text = _URL_TAIL.sub(lambda match: match.group("head") + match.group("rest"), text)
    if "PartitionKey=" in text or "RowKey=" in text:
        text = _ENTITY_KEYS.sub(_MASKED_KEYS, text)
    return observability.redact(text)


def clean_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return clean_url(value) if key in URL_ATTRIBUTES else clean_text(value)
    if isinstance(value, tuple | list) and value and isinstance(value[0], str):
        return tuple(clean_text(item) for item in value)
    return value


def clean_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        key: clean_value(key, value)
        for key, value in (attributes or {}).items()
        if key in (TENANT_ATTRIBUTE, INVOCATION_ATTRIBUTE) or not _DROPPED.search(key)
    }


class SpanHygiene(SpanProcessor):
    """Stamps the tenant and invocation on each span; keeps secrets out of it (module docstring)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        tenant, invocation = observability.current_tenant_id(), observability.current_invocation_id()
        if tenant:
            span.set_attribute(TENANT_ATTRIBUTE, tenant)
        if invocation:
            span.set_attribute(INVOCATION_ATTRIBUTE, invocation)
        span.update_name(clean_text(span.name))
        for key, value in list((span.attributes or {}).items()):
            if key not in (TENANT_ATTRIBUTE, INVOCATION_ATTRIBUTE):
                # A dropped key cannot be removed from a live span: it is emptied here, gone at the end.
                cleaned = "" if _DROPPED.search(key) else clean_value(key, value)
                if cleaned != value:
                    span.set_attribute(key, cleaned)

    def on_end(self, span: ReadableSpan) -> None:
        # The processors after this one receive this very object: cleaning it in place is what
        # makes them (and their exporters) see the clean span. A finished span has no public setter.
        span._name = clean_text(span.name)
        span._attributes = clean_attributes(span.attributes)
        span._events = [
            Event(clean_text(event.name), clean_attributes(event.attributes), event.timestamp)
            for event in span.events
        ]
        span._links = [Link(link.context, clean_attributes(link.attributes)) for link in span.links]
        if span.status.description:
            span._status = Status(span.status.status_code, clean_text(span.status.description))
