"""Requests counted on the wire, per external service, for the benchmarks.

Every HTTP request the Azure SDKs (Table Storage, Queue Storage, Key Vault) or httpx (ServiceNow,
Graph, Entra) put on a socket passes one transport method; `WireCount` wraps both for the length
of a `with` block and files each request under the service whose address it went to. A retry is
a second request, a transaction (a batch of up to 100 entity writes) is one, as their bills and
throughput targets count them. Requests to an address no service claims (the benchmark's own
calls to the function host) are not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from azure.core.pipeline.transport import AioHttpTransport

SERVICES = ("ServiceNow", "Table", "Queue", "Key Vault", "Graph")


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname or ""
    return ("127.0.0.1" if host == "localhost" else host, parts.port or default)


class WireCount:
    """Counts requests by service while `counting()` is active; `services` maps a name to a base URL."""

    def __init__(self, services: Mapping[str, str]) -> None:
        self._by_address = {_address(url): name for name, url in services.items()}
        self.counts: Counter[str] = Counter()

    def add(self, name: str, url: str) -> None:
        """File the requests to `url`'s address under `name` too (a service at several addresses)."""
        self._by_address[_address(url)] = name

    def record(self, url: str) -> None:
        name = self._by_address.get(_address(url))
        if name is not None:
            self.counts[name] += 1

    def snapshot(self) -> Counter[str]:
        return Counter(self.counts)

    def since(self, before: Counter[str]) -> Counter[str]:
        return Counter({name: self.counts[name] - before[name] for name in self.counts})

    @contextmanager
    def counting(self) -> Iterator[WireCount]:
        # Typed as Any: mypy will not let a method be reassigned, and restoring it is the point here.
        azure_class: Any = AioHttpTransport
        httpx_class: Any = httpx.AsyncHTTPTransport
        azure_send = azure_class.send
        httpx_send = httpx_class.handle_async_request
        wire = self

        async def counted_azure(transport: Any, request: Any, **kwargs: Any) -> Any:
            wire.record(request.url)
            return await azure_send(transport, request, **kwargs)

        async def counted_httpx(transport: Any, request: httpx.Request) -> httpx.Response:
            wire.record(str(request.url))
            response: httpx.Response = await httpx_send(transport, request)
            return response

        azure_class.send = counted_azure
        httpx_class.handle_async_request = counted_httpx
        try:
            yield self
        finally:
            azure_class.send = azure_send
            httpx_class.handle_async_request = httpx_send


def per_operation(counts: Mapping[str, int], operations: int) -> str:
    """`ServiceNow 1.00, Table 3.00, Queue 0.00, Key Vault 0.00, Graph 0.00` per operation."""
    share = max(operations, 1)
    return ", ".join(f"{name} {counts.get(name, 0) / share:.2f}" for name in SERVICES)
