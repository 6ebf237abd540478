"""Storage queues: `shared.ports.MessageQueue` on the azure-storage-queue client.

Queue triggers read message bodies as Base64 by default (host.json `messageEncoding`), so the
adapter encodes with `TextBase64EncodePolicy`: a plain-text body would be rejected by the trigger
and end up in the poison queue. The queue is created once, on first send, by whichever instance
gets there first; creating it again is harmless.

The SDK client is built on first send, not with the adapter: azure.storage.queue imports
cryptography, and most requests that are handed a queue never send to it, so a fresh worker
should not pay for the import before one does.

Locally the connection string (`DataStorage`) points at Azurite; in Azure the queue service URI
(`DataStorage__queueServiceUri`) is used with the managed identity, like the tables.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError

from shared.errors import UpstreamUnavailable
from shared.stores.tables import STORAGE_TIMEOUTS

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.storage.queue.aio import QueueClient

logger = logging.getLogger(__name__)


class StorageQueue:
    """A Storage queue on the async `QueueClient`: the client built and the queue created on first
    send, Base64-encoded bodies."""

    def __init__(
        self,
        queue_name: str,
        build: Callable[[], QueueClient],
        *,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        self._name = queue_name
        self._build = build
        self._client: QueueClient | None = None
        self._credential = credential
        self._created = False
        self._lock = asyncio.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str) -> StorageQueue:
        def build() -> QueueClient:
            from azure.storage.queue.aio import QueueClient

            return QueueClient.from_connection_string(connection_string, queue_name, **_client_options())

        return cls(queue_name, build)

    @classmethod
    def from_service_uri(
        cls, queue_service_uri: str, queue_name: str, credential: AsyncTokenCredential
    ) -> StorageQueue:
        def build() -> QueueClient:
            from azure.storage.queue.aio import QueueClient

            return QueueClient(queue_service_uri, queue_name, credential=credential, **_client_options())

        return cls(queue_name, build, credential=credential)

    @property
    def name(self) -> str:
        return self._name

    def _queue_client(self) -> QueueClient:
        # No await between the check and the assignment: concurrent first sends share one client.
        if self._client is None:
            self._client = self._build()
        return self._client

    async def send(self, body: str, *, delay_s: int = 0) -> None:
        client = self._queue_client()
        await self._ensure_created(client)
        try:
            await client.send_message(body, visibility_timeout=delay_s or None)
        except AzureError as exc:
            raise UpstreamUnavailable(
                f"Queue Storage is unavailable (send to {self.name}).", retry_after=5
            ) from exc

    async def _ensure_created(self, client: QueueClient) -> None:
        if self._created:
            return
        async with self._lock:
            if self._created:
                return
            try:
                await client.create_queue()
            except ResourceExistsError:
                pass  # another instance (or an earlier process) created it
            except AzureError as exc:
                raise UpstreamUnavailable(
                    f"Queue Storage is unavailable (create {self.name}).", retry_after=5
                ) from exc
            self._created = True

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._credential is not None:
            await self._credential.close()


def _client_options() -> dict[str, Any]:
    from azure.storage.queue import TextBase64EncodePolicy

    return {"message_encode_policy": TextBase64EncodePolicy(), **STORAGE_TIMEOUTS}
