"""Building the Graph and queue adapters is cheap: their SDKs load and their clients are built on
first use, so a ticket request that never calls Graph or sends a message does not pay for them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
from azure.core.exceptions import AzureError, ResourceExistsError
from pydantic import SecretStr

from localdev.local_settings import REPO_ROOT
from shared.errors import UpstreamUnavailable
from shared.graph import GraphClient
from shared.stores.queues import StorageQueue

HEAVY = ("msal", "requests", "azure.storage.queue", "cryptography")

PROBE = r"""
import json, sys
from shared.bootstrap import Container
from shared.settings import Settings

settings = Settings.model_validate({
    "DataStorage": "UseDevelopmentStorage=true",
    "KEY_VAULT_URL": "https://contoso-vault.vault.azure.net",
    "OAUTH_REDIRECT_URI": "https://app.example/api/oauth/callback",
    "PORTAL_URL": "https://portal.example/",
    "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-0000000000ab",
    "GRAPH_CLIENT_SECRET": "graph-secret-value",
})
container = Container(settings)
graph, queues = container.graph, (container.ticket_queue, container.sync_queue)
heavy = %r
built = [m for m in heavy if m in sys.modules]
queues[0]._queue_client()  # what a first send does before it goes on the wire
print(json.dumps({
    "graph": type(graph).__name__, "built": built,
    "after_first_use": [m for m in heavy if m in sys.modules],
}))
"""


def test_building_graph_and_the_queues_imports_neither_sdk() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["graph"] == "GraphClient"  # the real client, not the unconfigured stand-in
    assert report["built"] == []
    assert "azure.storage.queue" in report["after_first_use"]  # the probe does see a loaded SDK


class _QueueClient:
    """The few `QueueClient` calls the adapter makes, recorded."""

    def __init__(self, *, send_error: Exception | None = None, exists: bool = False) -> None:
        self.calls: list[str] = []
        self._send_error = send_error
        self._exists = exists

    async def create_queue(self) -> None:
        self.calls.append("create")
        await asyncio.sleep(0)  # lets a concurrent first send run meanwhile
        if self._exists:
            raise ResourceExistsError("The specified queue already exists.")

    async def send_message(self, body: str, *, visibility_timeout: int | None = None) -> None:
        if self._send_error is not None:
            raise self._send_error
        self.calls.append(f"send {body} {visibility_timeout}")

    async def close(self) -> None:
        self.calls.append("close")


class _Credential:
    closed = False

    async def close(self) -> None:
        self.closed = True


def _queue(client: _QueueClient, builds: list[int], credential: Any = None) -> StorageQueue:
    def build() -> Any:
        builds.append(1)
        return client

    return StorageQueue("ticket-create", build, credential=credential)


async def test_the_queue_client_is_built_once_on_first_send_even_when_sends_race() -> None:
    client, builds = _QueueClient(exists=True), list[int]()
    queue = _queue(client, builds)
    assert (queue.name, builds) == ("ticket-create", [])
    await asyncio.gather(queue.send("a"), queue.send("b", delay_s=30))
    await queue.send("c")
    assert builds == [1]
    assert client.calls == ["create", "send a None", "send b 30", "send c None"]
    await queue.aclose()
    assert client.calls[-1] == "close"


async def test_closing_an_unused_queue_builds_nothing_and_closes_its_credential() -> None:
    credential, builds = _Credential(), list[int]()
    queue = _queue(_QueueClient(), builds, credential)
    await queue.aclose()
    assert (builds, credential.closed) == ([], True)


async def test_a_failed_first_send_is_still_queue_storage_unavailable() -> None:
    queue = _queue(_QueueClient(send_error=AzureError("connection reset")), [])
    with pytest.raises(UpstreamUnavailable, match="send to ticket-create"):
        await queue.send("a")


async def test_graph_builds_its_http_client_on_first_use_only() -> None:
    unused = GraphClient(client_id="id", client_secret=SecretStr("secret-value"))
    assert unused._http_client is None
    await unused.aclose()  # nothing to close, nothing built

    used = GraphClient(client_id="id", client_secret=SecretStr("secret-value"))
    try:
        assert used._http is used._http  # one client for the worker's life
    finally:
        await used.aclose()
    assert used._http_client is not None
    assert used._http_client.is_closed
