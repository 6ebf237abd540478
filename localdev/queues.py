"""Queue-trigger polling against Azurite, with the host's retry and poison-queue rules.

A message is received invisible for a while; success deletes it; failure makes it visible again
after host.json's `visibilityTimeout`, and once it has failed `maxDequeueCount` times it is copied
to `<queue>-poison` and deleted, so a bad message is visible there rather than lost.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueMessage as StoredMessage
from azure.storage.queue.aio import QueueClient

from localdev.functions_index import IndexedFunction, QueueFunction

logger = logging.getLogger("localdev.queues")

PROCESSING_VISIBILITY_S = 300
_MIN_POLL_S = 0.1

Invoke = Callable[[IndexedFunction, Any], Awaitable[Any]]


def decode_body(text: str) -> bytes:
    """Queue triggers expect base64 bodies (the host's default `messageEncoding`)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the message body is not valid base64") from exc


class QueuePoller:
    def __init__(
        self,
        function: QueueFunction,
        *,
        connection_string: str,
        invoke: Invoke,
        max_dequeue_count: int,
        visibility_timeout_s: float,
        max_polling_interval_s: float,
        batch_size: int,
    ) -> None:
        self._function = function
        self._invoke = invoke
        self._max_dequeue = max_dequeue_count
        # Public so a test can shorten host.json's visibilityTimeout on a running host.
        self.retry_visibility_s = int(visibility_timeout_s)
        self._max_poll = max(max_polling_interval_s, _MIN_POLL_S)
        self._batch = batch_size
        self._queue = QueueClient.from_connection_string(connection_string, function.queue_name)
        self._poison = QueueClient.from_connection_string(connection_string, f"{function.queue_name}-poison")

    async def run(self) -> None:
        for queue in (self._queue, self._poison):
            with contextlib.suppress(ResourceExistsError):
                await queue.create_queue()
        delay = _MIN_POLL_S
        while True:
            try:
                handled = await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Polling queue %s failed; retrying", self._function.queue_name)
                handled = 0
            # Back off while the queue is empty, as the host does, up to maxPollingInterval.
            delay = _MIN_POLL_S if handled else min(delay * 2, self._max_poll)
            await asyncio.sleep(delay)

    async def _poll_once(self) -> int:
        messages = [
            message
            async for message in self._queue.receive_messages(
                messages_per_page=self._batch,
                visibility_timeout=PROCESSING_VISIBILITY_S,
                max_messages=self._batch,
            )
        ]
        await asyncio.gather(*(self._handle(message) for message in messages))
        return len(messages)

    async def _handle(self, stored: StoredMessage) -> None:
        try:
            body = decode_body(str(stored.content))
        except ValueError:
            logger.error(
                "Message %s on %s is not base64; moving it to the poison queue",
                stored.id,
                self._function.queue_name,
            )
            await self._to_poison(stored)
            return
        message = QueueMessage(
            id=stored.id,
            body=body,
            dequeue_count=stored.dequeue_count,
            expiration_time=stored.expires_on,
            insertion_time=stored.inserted_on,
            time_next_visible=stored.next_visible_on,
            pop_receipt=stored.pop_receipt,
        )
        try:
            await self._invoke(self._function, message)
        except Exception:
            if (stored.dequeue_count or 0) >= self._max_dequeue:
                logger.error(
                    "Message %s failed %s times; moving it to %s-poison",
                    stored.id,
                    stored.dequeue_count,
                    self._function.queue_name,
                )
                await self._to_poison(stored)
            else:
                await self._queue.update_message(stored, visibility_timeout=self.retry_visibility_s)
            return
        await self._queue.delete_message(stored)

    async def _to_poison(self, stored: StoredMessage) -> None:
        await self._poison.send_message(stored.content)
        await self._queue.delete_message(stored)

    async def aclose(self) -> None:
        await self._queue.close()
        await self._poison.close()
