"""The repository of the `tickets` table (the `idempotency` table's is in `idempotency.py`).

Tickets live in one partition per tenant, keyed by ticket id. Ticket ids sort newest first (an
inverted millisecond timestamp, then a random suffix), so a plain partition query already returns
the newest tickets first and paging needs no sort of its own. The partition also holds the
tickets' timeline events (`event_rows.py`), whose keys sort after every ticket id: every query of
ticket rows here bounds its RowKeys (`TICKET_ROWS`).

Continuation tokens are Azure's own (next PartitionKey and RowKey), wrapped as opaque base64url
JSON: the portal passes them back unchanged and never learns our keys' format.

    TicketRepository
        add(ticket)                         insert; PreconditionFailed if the id exists
        replace(ticket)                     ETag-conditional write (a `creating` row finished)
        get(tenant_id, ticket_id)           one ticket, or None (also for ids of another shape)
        page(tenant_id, ...)                newest first, filters type/state/flag, top, continuation
        every_ticket(tenant_id, ...)        every ticket of a tenant, newest first
        count_by_state(tenant_id)           counts by (type, state) and (type, flag), for the cards
        sync_index(tenant_id)               the few columns the sync compares, by ticket id
        apply_state_changes(tenant_id, changes)
                                            merge new states in transactions of <= 50 rows
        merge_states(tenant_id, changes)    one transaction of <= 50 merges, all or nothing
        mark_deleted(tenant_id, ids, at)    flag tickets whose record is gone from ServiceNow
        (the last three, with their events: `ticket_state_rows.py`)
        by_improvement_action(tenant_id)    the few columns an action listing shows, by action id
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from pydantic.alias_generators import to_pascal

from shared.errors import BadRequest
from shared.models import TicketType
from shared.observability import current_invocation_id
from shared.records import (
    TICKET_ID,
    ActionTicket,
    StateChangeResult,
    Ticket,
    TicketStateChange,
    TicketSyncEntry,
    with_created_event,
)
from shared.remediation_models import FLAG_FIELDS, RemediationFlag, TicketCounts
from shared.stores.event_rows import TICKET_ROWS
from shared.stores.tables import (
    TableStore,
    create_entity,
    from_entity,
    get_entity,
    query,
    replace_entity,
    storage_errors,
    to_entity,
)
from shared.stores.ticket_state_rows import (
    MAX_BATCH,
    TICKETS,
    apply_state_changes,
    mark_deleted,
    merge_states,
    sync_index,
)
from shared.untrusted import decode_json

__all__ = ["MAX_BATCH", "TICKETS", "TicketRepository"]


class TicketRepository:
    def __init__(self, store: TableStore) -> None:
        self._store = store

    async def add(self, ticket: Ticket) -> Ticket:
        """Insert a new ticket row, which is its own `created` event (the request that asked for
        it). PreconditionFailed if the ticket id already exists."""
        ticket = with_created_event(ticket, current_invocation_id())
        table = await self._store.table(TICKETS)
        etag = await create_entity(table, to_entity(ticket, ticket.tenant_id, ticket.ticket_id))
        return ticket.model_copy(update={"etag": etag})

    async def replace(self, ticket: Ticket) -> Ticket:
        """Write the whole row only if nobody changed it since it was read; PreconditionFailed otherwise."""
        read_etag = ticket.etag
        if read_etag is None:
            raise ValueError("replace needs a ticket read from the table (with its ETag)")
        ticket = with_created_event(ticket, None)
        table = await self._store.table(TICKETS)
        entity = to_entity(ticket, ticket.tenant_id, ticket.ticket_id)
        etag = await replace_entity(table, entity, read_etag)
        return ticket.model_copy(update={"etag": etag})

    async def get(self, tenant_id: str, ticket_id: str) -> Ticket | None:
        if not TICKET_ID.match(ticket_id):
            return None  # not one of our ids: nothing to look up
        table = await self._store.table(TICKETS)
        entity = await get_entity(table, tenant_id, ticket_id)
        return None if entity is None else from_entity(Ticket, entity, frozenset())

    async def page(
        self,
        tenant_id: str,
        *,
        type: TicketType | None = None,
        state: str | None = None,
        flag: RemediationFlag | None = None,
        top: int = 50,
        continuation_token: str | None = None,
    ) -> tuple[list[Ticket], str | None]:
        """One page of the tenant's tickets, newest first, and the token of the next (None at the end).
        `flag` keeps the tickets whose remediation flag is set (a row without the column has none).

        Table Storage may return fewer than `top` rows with a token (a filter that skips many
        rows, or a partition boundary), so a short page is not the last one: only a None token is.

        Raises:
            BadRequest: the continuation token is not one this method issued for this tenant.
        """
        table = await self._store.table(TICKETS)
        query_filter, parameters = _filter(tenant_id, type, state, flag)
        resume = decode_continuation(continuation_token, tenant_id) if continuation_token else None
        with storage_errors(f"list {TICKETS}"):
            entities = table.query_entities(query_filter, parameters=parameters, results_per_page=top)
            # The SDK types the token as str, but its table pager reads (and returns) a dict.
            pages = entities.by_page(continuation_token=resume)  # type: ignore[arg-type]
            items: list[Ticket] = []
            async for page in pages:
                items = [from_entity(Ticket, entity, frozenset()) async for entity in page]
                break
            following: Any = getattr(pages, "continuation_token", None)
        return items, encode_continuation(following, tenant_id) if following else None

    async def every_ticket(self, tenant_id: str, *, type: TicketType | None = None) -> AsyncIterator[Ticket]:
        """Every ticket of the tenant, newest first."""
        table = await self._store.table(TICKETS)
        query_filter, parameters = _filter(tenant_id, type, None, None)
        async for entity in query(table, query_filter, parameters):
            yield from_entity(Ticket, entity, frozenset())

    async def count_by_state(self, tenant_id: str) -> TicketCounts:
        """Tickets by (type, state) and by (type, flag set), reading only those columns."""
        table = await self._store.table(TICKETS)
        states: dict[tuple[str, str], int] = {}
        flags: dict[tuple[str, RemediationFlag], int] = {}
        with storage_errors(f"list {TICKETS}"):
            async for entity in table.query_entities(
                f"PartitionKey eq @tenant and {TICKET_ROWS}",
                parameters={"tenant": tenant_id},
                select=["Type", "State", *_FLAG_COLUMNS.values()],
            ):
                kind = str(entity.get("Type"))
                key = (kind, str(entity.get("State")))
                states[key] = states.get(key, 0) + 1
                for flag, column in _FLAG_COLUMNS.items():
                    if entity.get(column) is True:
                        flags[(kind, flag)] = flags.get((kind, flag), 0) + 1
        return TicketCounts(states=states, flags=flags)

    async def sync_index(self, tenant_id: str) -> dict[str, TicketSyncEntry]:
        return await sync_index(self._store, tenant_id)

    async def by_improvement_action(self, tenant_id: str) -> dict[str, list[ActionTicket]]:
        """The tenant's tickets made for an improvement action, by action id, newest first: one
        partition query (a row without the property never compares greater), the shown columns only."""
        table = await self._store.table(TICKETS)
        found: dict[str, list[ActionTicket]] = {}
        with storage_errors(f"list {TICKETS}"):
            async for entity in table.query_entities(
                f"PartitionKey eq @tenant and ImprovementActionId gt @none and {TICKET_ROWS}",
                parameters={"tenant": tenant_id, "none": ""},
                select=_ACTION_COLUMNS,
                results_per_page=1000,
            ):
                found.setdefault(str(entity["ImprovementActionId"]), []).append(
                    ActionTicket(
                        ticket_id=str(entity["RowKey"]),
                        type=entity["Type"],
                        number=str(entity.get("Number") or ""),
                        sys_id=str(entity.get("SysId") or ""),
                        instance_url=str(entity.get("InstanceUrl") or ""),
                        state=str(entity.get("State") or ""),
                        status=entity.get("Status") or "created",  # rows older than the column
                        deleted=entity.get("DeletedInServicenowAt") is not None,
                    )
                )
        return found

    async def mark_deleted(self, tenant_id: str, ticket_ids: Sequence[str], at: datetime) -> int:
        return await mark_deleted(self._store, tenant_id, ticket_ids, at)

    async def apply_state_changes(
        self, tenant_id: str, changes: Sequence[TicketStateChange]
    ) -> StateChangeResult:
        """Merge new states (and their events) into the tenant's ticket rows, up to 50 rows per
        transaction.

        Only `State`, `StateUpdatedAt`, `ServicenowUpdatedOn` and `ServicenowModCount` are written
        (a merge, without an ETag): the sync owns these columns and nothing else writes them after
        creation but a push (`ticket_pushes.py`, ETag-conditional), and a merge cannot undo a
        concurrent change to any other column. Applying the same change twice is harmless. A
        transaction fails whole when one of its rows is missing; that batch is then applied row by
        row and the missing ids are reported instead of failing the sync.
        """
        return await apply_state_changes(self._store, tenant_id, changes)

    async def merge_states(self, tenant_id: str, changes: Sequence[TicketStateChange]) -> str | None:
        """Merge new states into up to 50 of the tenant's rows, with their events, in one
        transaction, all or nothing.

        Each merge carries `If-Match: *`: it updates the row if it exists and never makes one, so
        the rows are written without reading them first. When one of them does not exist the
        transaction fails whole and the id of that row is returned (Table Storage names the first
        failing operation); nothing was written then. None once all are written. Any other
        failure raises (`UpstreamUnavailable`).
        """
        return await merge_states(self._store, tenant_id, changes)


def _filter(
    tenant_id: str, type: TicketType | None, state: str | None, flag: RemediationFlag | None
) -> tuple[str, dict[str, Any]]:
    clauses, parameters = ["PartitionKey eq @tenant", TICKET_ROWS], {"tenant": tenant_id}
    if type is not None:
        clauses.append("Type eq @type")
        parameters["type"] = type
    if state is not None:
        clauses.append("State eq @state")
        parameters["state"] = state
    if flag is not None:
        clauses.append(f"{_FLAG_COLUMNS[flag]} eq true")  # a column name from our table, never input
    return " and ".join(clauses), parameters


def encode_continuation(token: dict[str, Any], tenant_id: str) -> str:
    # Azure's next keys are encoded by the service, so the tenant is named beside them: a token is
    # only accepted back from the tenant it was issued to. (The query's PartitionKey filter would
    # keep other tenants' rows out anyway; this makes a misused token a clear 400.)
    payload = {"t": tenant_id, "pk": token.get("PartitionKey"), "rk": token.get("RowKey")}
    raw = json.dumps(payload, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode_continuation(token: str, tenant_id: str) -> dict[str, str]:
    """Azure's continuation from our opaque token; BadRequest if it was not issued for this tenant."""
    invalid = BadRequest(
        "continuationToken is not valid: pass back the token of the previous page unchanged.",
        fields=[{"field": "continuationToken", "message": "not a token issued by this API"}],
    )
    try:
        data = decode_json(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)), max_bytes=4096)
    except (binascii.Error, ValueError) as exc:
        raise invalid from exc
    if not isinstance(data, dict) or data.get("t") != tenant_id:
        raise invalid
    # Azure's (and Azurite's) next keys are short printable ASCII: anything else was not issued.
    if not all(isinstance(data.get(key), str) and _NEXT_KEY.fullmatch(data[key]) for key in ("pk", "rk")):
        raise invalid
    return {"PartitionKey": data["pk"], "RowKey": data["rk"]}


_NEXT_KEY = re.compile(r"[!-~]{0,1024}")


_ACTION_COLUMNS = [
    "RowKey",
    "ImprovementActionId",
    "Type",
    "Number",
    "SysId",
    "InstanceUrl",
    "State",
    "Status",
    "DeletedInServicenowAt",
]
_FLAG_COLUMNS: dict[RemediationFlag, str] = {flag: to_pascal(name) for flag, name in FLAG_FIELDS.items()}
