"""Push from ServiceNow put together: the hook's receiver, the hints' worker and the admin's setup,
built once from their ports and sharing them (one hook cache, one key cache, one rate limiter
and one coalescing window per process)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from shared.clock import SYSTEM_CLOCK, Clock
from shared.ports import ConnectionStore, MessageQueue, ServiceNowRecords
from shared.push_ports import PushHooks, PushKeys
from shared.services.push_hints import HookRateLimiter, PushReceiver
from shared.services.push_setup import PushSetupService, public_base_url
from shared.services.push_worker import PushWorker
from shared.settings import Settings
from shared.timeline_ports import PushedStates


class _Wiring(Protocol):
    """What `wired` takes from the composition root besides the push adapters."""

    @property
    def connections(self) -> ConnectionStore: ...

    @property
    def servicenow_tables(self) -> ServiceNowRecords: ...

    @property
    def ticket_events(self) -> PushedStates: ...

    @property
    def settings(self) -> Settings: ...


class PushServices:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        records: ServiceNowRecords,
        changes: PushedStates,
        hooks: PushHooks,
        keys: PushKeys,
        queue: MessageQueue,
        callback_url: str,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._closeables = (keys, queue)
        self.receiver = PushReceiver(
            hooks=hooks, keys=keys, queue=queue, limiter=HookRateLimiter(), clock=clock
        )
        self.worker = PushWorker(
            connections=connections, records=records, changes=changes, hooks=hooks, clock=clock
        )
        self.setup = PushSetupService(
            connections=connections,
            hooks=hooks,
            keys=keys,
            base_url=public_base_url(callback_url),
            clock=clock,
        )

    @classmethod
    def wired(cls, hooks: PushHooks, keys: PushKeys, queue: MessageQueue, root: _Wiring) -> PushServices:
        return cls(
            connections=root.connections,
            records=root.servicenow_tables,
            changes=root.ticket_events,
            hooks=hooks,
            keys=keys,
            queue=queue,
            callback_url=str(root.settings.oauth_redirect_uri),
        )

    async def aclose(self) -> None:
        for closeable in self._closeables:
            close = getattr(closeable, "aclose", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
