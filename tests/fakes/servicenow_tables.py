"""ServiceNow's Table API over dicts for unit tests (`ServiceNowRecords`).

Queries are evaluated by the local ServiceNow simulator's evaluator (`localdev/servicenow/query.py`),
compiled and applied the way its list endpoint does, so filters and order mean here what they mean
there. Stricter than an instance on one point: a field no record here has fails the test instead of
being silently ignored (a typo would otherwise match every record).

Every request is evaluated afresh, like the real API: `page` answers one page, `query` pages by
offset (what the `Link` header does). `between_requests` hooks run after every request (to change
records while a listing is read); `fail` makes a table's requests raise.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from localdev.servicenow.query import EncodedQuery, as_number, parse_encoded_query
from shared.clock import Clock
from shared.ports import ServiceNowRecords
from shared.records import CORRELATION_DISPLAY, Connection
from shared.services.sync_marks import format_glide
from tests.fakes.clock import FakeClock

KNOWN_FIELDS = frozenset(
    {"sys_id", "number", "correlation_id", "correlation_display", "state", "sys_updated_on", "sys_created_on"}
    | {"name", "element", "language", "sequence", "value", "label"}  # sys_choice
)
_SYS_ID_AFTER = re.compile(r"\^sys_id>[^^]*")


def _known(name: str) -> bool:
    assert name in KNOWN_FIELDS, f"a query names {name!r}, which no record here has"
    return True


def new_sys_id() -> str:
    """32 hex digits, as ServiceNow's; never all digits (the evaluator would compare it as a number)."""
    while True:
        sys_id = secrets.token_hex(16)
        if as_number(sys_id) is None:
            return sys_id


class FakeServiceNowTables:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.tables: dict[str, dict[str, dict[str, str]]] = {"incident": {}, "change_request": {}}
        self.requests: list[tuple[str, str]] = []  # (table, query), every request in order
        self.between_requests: list[Callable[[int], None]] = []  # given the number of requests so far
        self.fail: dict[str, Exception] = {}  # table -> what its requests raise
        self.ignore_sys_id_after = False  # an instance that silently ignores `sys_id>` terms

    def add(self, table: str, ticket_id: str, state: str, updated: str, **extra: str) -> str:
        """A record of this connector, correlated with `ticket_id`; returns its sys_id."""
        sys_id = new_sys_id()
        self.tables.setdefault(table, {})[sys_id] = {
            "sys_id": sys_id,
            "correlation_id": ticket_id,
            "correlation_display": CORRELATION_DISPLAY,
            "state": state,
            "sys_updated_on": updated,
            **extra,
        }
        return sys_id

    def add_choice(self, table: str, value: str, label: str) -> None:
        """A `sys_choice` row: the instance's label for one value of `table`'s state."""
        choices = self.tables.setdefault("sys_choice", {})
        sequence = str(len(choices))
        row = {"name": table, "element": "state", "language": "en", "value": value, "label": label}
        choices[new_sys_id()] = {**row, "sequence": sequence}

    def set(self, table: str, sys_id: str, **fields: str) -> None:
        self.tables[table][sys_id].update(fields)

    async def create(
        self,
        connection: Connection,
        table: str,
        fields: dict[str, str],
        *,
        before_post: Callable[[], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        if before_post is not None:
            await before_post()
        sys_id = new_sys_id()
        record = {**fields, "sys_id": sys_id, "sys_updated_on": format_glide(self.clock.now())}
        self.tables.setdefault(table, {})[sys_id] = record
        return dict(record)

    async def find_one(
        self, connection: Connection, table: str, query: str, fields: list[str]
    ) -> dict[str, Any] | None:
        found = await self.page(connection, table, query, fields, limit=1)
        return found[0] if found else None

    async def page(
        self, connection: Connection, table: str, query: str, fields: list[str], *, limit: int = 1000
    ) -> list[dict[str, Any]]:
        assert 1 <= limit <= 1000
        rows = self._answer(table, query)[:limit]
        return [_select(row, fields) for row in rows]

    async def query(
        self, connection: Connection, table: str, query: str, fields: list[str], *, page_size: int = 1000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        offset = 0
        while True:
            rows = self._answer(table, query)[offset : offset + page_size]
            page = [_select(row, fields) for row in rows]
            if page:
                yield page
            if len(page) < page_size:
                return
            offset += page_size

    def _matching(self, table: str, query: str) -> list[dict[str, str]]:
        if self.ignore_sys_id_after:
            query = _SYS_ID_AFTER.sub("", query)
        compiled: EncodedQuery = parse_encoded_query(query, _known, self.clock.now())
        assert compiled.order, "every listing must be ordered"
        return compiled.sort([row for row in self.tables.get(table, {}).values() if compiled.matches(row)])

    def _answer(self, table: str, query: str) -> list[dict[str, str]]:
        """One request: counted, failed if the test says so, answered, and then followed by what
        the test makes happen meanwhile (whether or not it failed)."""
        self.requests.append((table, query))
        try:
            if table in self.fail:
                raise self.fail[table]
            return self._matching(table, query)
        finally:
            for hook in list(self.between_requests):
                hook(len(self.requests))


def _select(row: dict[str, str], fields: list[str]) -> dict[str, Any]:
    return {name: row.get(name, "") for name in fields}


def _conforms(tables: FakeServiceNowTables) -> ServiceNowRecords:
    return tables
