"""The fleet view's ports: every tenant's connection row, a page at a time, and its push status."""

from __future__ import annotations

from typing import Protocol

from shared.models import ConnectionStatus
from shared.push_models import PushStatus
from shared.records import Connection


class ConnectionFleet(Protocol):
    async def fleet_page(
        self, *, status: ConnectionStatus | None, top: int, continuation_token: str | None
    ) -> tuple[list[Connection], str | None]:
        """One page of connections across tenants (`status` only, if given) and the token of the
        next page (None at the end; a short page may still have one).

        Raises:
            BadRequest: the continuation token was not issued by this method for this `status`.
        """
        ...


class PushStatuses(Protocol):
    async def status(self, tenant_id: str) -> PushStatus:
        """Whether push from ServiceNow is on for the tenant, and what arrived lately."""
        ...
