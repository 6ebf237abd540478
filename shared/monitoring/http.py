"""A span for every request our httpx clients send (ServiceNow, Graph), made by one transport
wrapper rather than at each call site, and ServiceNow's answers counted by status class.

Each try of a retried request is its own span (and its own count): a 429 followed by a 201 shows
as both. The span names the method and the service only; its URL is scheme, host and path (the
query string can hold the revoke endpoint's token), and no header is recorded. `SpanHygiene`
cleans whatever gets through anyway.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared import telemetry
from shared.telemetry import PEER_ATTRIBUTE

SERVICENOW, GRAPH = "servicenow", "graph"


class TracedTransport(httpx.AsyncBaseTransport):
    """Sends through `inner`; with telemetry on, inside a CLIENT span named `{METHOD} {peer}`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, peer: str) -> None:
        self._inner = inner
        self._peer = peer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tracer = telemetry.tracer()
        if tracer is None:
            return await self._inner.handle_async_request(request)
        from opentelemetry.trace import SpanKind, StatusCode

        with tracer.start_as_current_span(
            f"{request.method} {self._peer}",
            kind=SpanKind.CLIENT,
            attributes=_request_attributes(request, self._peer),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                response = await self._inner.handle_async_request(request)
            except Exception as error:
                span.set_attribute("error.type", type(error).__name__)
                span.set_status(StatusCode.ERROR)
                self._count(None)
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(StatusCode.ERROR)
            self._count(response.status_code)
            return response

    def _count(self, status: int | None) -> None:
        if self._peer == SERVICENOW:
            telemetry.servicenow_response(status)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _request_attributes(request: httpx.Request, peer: str) -> dict[str, Any]:
    url = request.url
    return {
        PEER_ATTRIBUTE: peer,
        "http.request.method": request.method,
        "server.address": url.host,
        "server.port": url.port or (443 if url.scheme == "https" else 80),
        "url.full": f"{url.scheme}://{url.netloc.decode('ascii', 'replace').rsplit('@', 1)[-1]}{url.path}",
    }


def traced(peer: str, transport: httpx.AsyncBaseTransport | None = None, **options: Any) -> TracedTransport:
    """`transport` (or a new `httpx.AsyncHTTPTransport(**options)`) wrapped in a `TracedTransport`."""
    return TracedTransport(transport or httpx.AsyncHTTPTransport(**options), peer)
