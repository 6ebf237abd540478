"""Every tenant's connection, a page at a time, for unit tests of the fleet view (`ConnectionFleet`).

Same contract as `ConnectionRepository.fleet_page`: pages in tenant id order, filtered by status,
and a token that resumes only the filter it was issued for (BadRequest otherwise).
"""

from __future__ import annotations

from shared.errors import BadRequest
from shared.models import ConnectionStatus
from shared.operator_ports import ConnectionFleet
from shared.records import Connection


class InMemoryConnectionFleet:
    def __init__(self, connections: list[Connection] | None = None) -> None:
        self.rows: dict[str, Connection] = {c.tenant_id: c for c in connections or []}
        self.requests: list[tuple[ConnectionStatus | None, int, str | None]] = []

    async def fleet_page(
        self, *, status: ConnectionStatus | None, top: int, continuation_token: str | None
    ) -> tuple[list[Connection], str | None]:
        self.requests.append((status, top, continuation_token))
        scope = status.value if status else "*"
        start = _offset(continuation_token, scope) if continuation_token else 0
        matching = [
            self.rows[t] for t in sorted(self.rows) if status is None or self.rows[t].status == status
        ]
        end = start + top
        following = f"{scope}:{end}" if end < len(matching) else None
        return matching[start:end], following


def _offset(token: str, scope: str) -> int:
    issued_for, _, offset = token.rpartition(":")
    if issued_for != scope or not offset.isdigit():
        raise BadRequest(
            "continuationToken is not valid: pass back the token of the previous page unchanged."
        )
    return int(offset)


def _conforms(fleet: InMemoryConnectionFleet) -> None:
    # mypy checks here that the fake implements the port.
    _fleet: ConnectionFleet = fleet
