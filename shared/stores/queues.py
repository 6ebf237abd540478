"""Storage queues: `shared.ports.MessageQueue` on the azure-storage-queue client.

Queue triggers read message bodies as Base64 by default (host.json `messageEncoding`), so the
adapter encodes with `TextBase64EncodePolicy`: a plain-text body would be rejected by the trigger
and end up in the poison queue. The queue is created once, on first send, by whichever instance
gets there first; creating it again is harmless.

Locally the connection string (`DataStorage`) points at Azurite; in Azure the queue service URI
(`DataStorage__queueServiceUri`) is used with the managed identity, like the tables.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError, ResourceExistsError

from shared.errors import UpstreamUnavailable
from shared.stores.tables import STORAGE_TIMEOUTS

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.storage.queue.aio import QueueClient

logger = logging.getLogger(__name__)


class StorageQueue:
    """A Storage queue on the async `QueueClient`, created on first use, Base64-encoded bodies."""

    def __init__(self, client: QueueClient, *, credential: AsyncTokenCredential | None = None) -> None:
        self._client = client
        self._credential = credential
        self._created = False
        self._lock = asyncio.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str) -> StorageQueue:
        from azure.storage.queue import TextBase64EncodePolicy
        from azure.storage.queue.aio import QueueClient

        client = QueueClient.from_connection_string(
            connection_string, queue_name, message_encode_policy=TextBase64EncodePolicy(), **STORAGE_TIMEOUTS
        )
        return cls(client)

    @classmethod
    def from_service_uri(
        cls, queue_service_uri: str, queue_name: str, credential: AsyncTokenCredential
    ) -> StorageQueue:
        from azure.storage.queue import TextBase64EncodePolicy
        from azure.storage.queue.aio import QueueClient

        client = QueueClient(
            queue_service_uri,
            queue_name,
            credential=credential,
            message_encode_policy=TextBase64EncodePolicy(),
            **STORAGE_TIMEOUTS,
        )
        return cls(client, credential=credential)

    @property
    def name(self) -> str:
        return str(self._client.queue_name)

    async def send(self, body: str, *, delay_s: int = 0) -> None:
        await self._ensure_created()
        try:
            await self._client.send_message(body, visibility_timeout=delay_s or None)
        except AzureError as exc:
            raise UpstreamUnavailable(
                f"Queue Storage is unavailable (send to {self.name}).", retry_after=5
            ) from exc

    async def _ensure_created(self) -> None:
        if self._created:
            return
        async with self._lock:
            if self._created:
                return
            try:
                await self._client.create_queue()
            except ResourceExistsError:
                pass  # another instance (or an earlier process) created it
            except AzureError as exc:
                raise UpstreamUnavailable(
                    f"Queue Storage is unavailable (create {self.name}).", retry_after=5
                ) from exc
            self._created = True

    async def aclose(self) -> None:
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()
