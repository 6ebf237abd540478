"""Table API handlers: ``/api/now[/v1|/v2]/table/{table}[/{sys_id}]`` (facts L59-124).

Authentication and the rate limit are applied before these run (see :mod:`.app`); the
authenticated grant is ``request[GRANT_KEY]``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from yarl import URL

from .envelope import error_response, invalid_table, no_record, operation_failed
from .oauth import DEFAULT_USER
from .query import Predicate, compare, parse_encoded_query
from .render import (
    JournalReader,
    ReferenceNamer,
    RenderOptions,
    parse_display_mode,
    render,
    selected_fields,
)
from .schema import JOURNAL_LABELS, TableSchema
from .state import GRANT_KEY, STATE_KEY, SimulatorState

TableHandler = Callable[[web.Request], Awaitable[web.Response]]
DEFAULT_LIMIT = 10000
_TRUE = "true"


def _state(request: web.Request) -> SimulatorState:
    return request.app[STATE_KEY]


def _user(request: web.Request) -> str:
    grant = request.get(GRANT_KEY)
    return grant.user if grant is not None else DEFAULT_USER


def _flag(query: MultiMapping[str], name: str) -> bool:
    return query.get(name, "false").lower() == _TRUE


def _int_param(query: MultiMapping[str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        return default


def _options(request: web.Request, schema: TableSchema) -> RenderOptions:
    query = request.query
    return RenderOptions(
        base_url=str(request.url.origin()),
        fields=selected_fields(schema, query.get("sysparm_fields")),
        display=parse_display_mode(query.get("sysparm_display_value")),
        exclude_reference_link=_flag(query, "sysparm_exclude_reference_link"),
    )


def _namer(state: SimulatorState) -> ReferenceNamer:
    def name_of(table: str, sys_id: str) -> str:
        if not state.records.has_table(table):
            return ""
        record = state.records.get(table, sys_id) or {}
        return record.get("name", "")

    return name_of


def _journal_reader(state: SimulatorState) -> JournalReader:
    """A journal field's display value: its entries, newest first, as the activity stream shows them
    (the simulated user's time zone is UTC)."""

    def full_name(user_name: str) -> str:
        users = (row for row in state.records.rows("sys_user") if row.get("user_name") == user_name)
        return next((row.get("name") or user_name for row in users), user_name)

    def read(table: str, sys_id: str, element: str) -> str:
        label = JOURNAL_LABELS.get(element, element)
        return "".join(
            f"{entry['sys_created_on']} - {full_name(entry['sys_created_by'])} ({label})\n{entry['value']}\n\n"
            for entry in state.records.journal_entries(table, sys_id, element)
        )

    return read


def _render_one(request: web.Request, schema: TableSchema, record: Mapping[str, str]) -> dict[str, Any]:
    state = _state(request)
    return render(schema, record, _options(request, schema), _namer(state), _journal_reader(state))


def _schema(request: web.Request) -> TableSchema:
    """The table's schema; an unknown table answers 400 'Invalid table <name>' (facts L120)."""
    table = request.match_info["table"]
    records = _state(request).records
    if not records.has_table(table):
        raise InvalidTableError(table)
    return records.schema(table)


class InvalidTableError(Exception):
    """A table the instance does not have; :func:`_answering_invalid_table` turns it into the 400."""

    def __init__(self, table: str) -> None:
        super().__init__(table)
        self.table = table


def _answering_invalid_table(handler: TableHandler) -> TableHandler:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except InvalidTableError as exc:
            return invalid_table(exc.table)

    return wrapped


def _refusing_writes_to_platform_tables(handler: TableHandler) -> TableHandler:
    """Rows of some tables (journal entries) are made by the platform only: a write is refused."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        if not _schema(request).api_writable:
            return operation_failed()
        return await handler(request)

    return wrapped


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The JSON object in the body; for an array only the first record counts (facts L71)."""
    try:
        # body_exists, not can_read_body: a body read already (a late_commit fault) is cached.
        body = await request.json() if request.body_exists else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error_response(400, "Exception while reading request", "The payload is not valid JSON.")
    if isinstance(body, list):
        body = body[0] if body else {}
    if not isinstance(body, dict):
        return error_response(400, "Exception while reading request", "The payload is not a JSON object.")
    return body


def _plain_field_filters(schema: TableSchema, query: MultiMapping[str]) -> list[Predicate]:
    """``&field=value`` URL parameters (facts L94); they accept a choice value or its label."""
    predicates: list[Predicate] = []
    for name, wanted in query.items():
        if name.startswith("sysparm_") or not schema.has_field(name):
            continue
        labels = schema.choices.get(name, {})

        def predicate(
            row: Mapping[str, str], f: str = name, w: str = wanted, c: Mapping[str, str] = labels
        ) -> bool:
            cell = row.get(f, "")
            return compare(cell, w) == 0 or c.get(cell) == w

        predicates.append(predicate)
    return predicates


def _page_link(url: URL, limit: int, offset: int, rel: str) -> str:
    """One ``Link`` entry: the request URL with every parameter echoed in the caller's order
    (as the captured header does, facts L104) and ``sysparm_limit``/``sysparm_offset`` set."""
    replacements = {"sysparm_limit": str(limit), "sysparm_offset": str(offset)}
    query = [(key, replacements.pop(key, value)) for key, value in url.query.items()]
    query += list(replacements.items())  # the ones the caller left out, appended
    return f'<{url.with_query(query)}>;rel="{rel}"'


def link_header(url: URL, *, limit: int, offset: int, total: int | None, returned: int) -> str:
    """first/prev/next/last like the capture in facts L103-104: prev may be negative and
    last = total - limit (never below 0 here). Without a count, next is offered for a full page."""
    links = [_page_link(url, limit, 0, "first"), _page_link(url, limit, offset - limit, "prev")]
    has_next = offset + limit < total if total is not None else returned >= limit > 0
    if has_next:
        links.append(_page_link(url, limit, offset + limit, "next"))
    if total is not None:
        links.append(_page_link(url, limit, max(total - limit, 0), "last"))
    return ",".join(links)


async def list_records(request: web.Request) -> web.Response:
    """GET list: filter, sort, page (facts L63, L77-105)."""
    schema = _schema(request)
    state = _state(request)
    query = request.query
    compiled = parse_encoded_query(query.get("sysparm_query", ""), schema.has_field, state.clock.now())
    compiled.and_also(_plain_field_filters(schema, query))
    readable = schema.name not in state.unreadable  # an ACL hides rows instead of refusing the call
    rows = state.records.rows(schema.name) if readable else iter(())
    matching = compiled.sort([row for row in rows if compiled.matches(row)])
    limit = max(_int_param(query, "sysparm_limit", DEFAULT_LIMIT), 0)
    offset = max(_int_param(query, "sysparm_offset", 0), 0)
    page = matching[offset : offset + limit]
    options = _options(request, schema)
    namer = _namer(state)
    journal = _journal_reader(state)
    body = {"result": [render(schema, row, options, namer, journal) for row in page]}
    headers: dict[str, str] = {}
    total = None if _flag(query, "sysparm_no_count") else len(matching)
    if total is not None:
        headers["X-Total-Count"] = str(total)
    if not _flag(query, "sysparm_suppress_pagination_header"):
        headers["Link"] = link_header(
            request.url, limit=limit, offset=offset, total=total, returned=len(page)
        )
    if not page and request.match_info.get("version") == "v1":
        # v1 answers a valid query with no rows with 404; v2 and unversioned give 200 [] (facts L63).
        return no_record()
    return web.json_response(body, headers=headers)


async def get_record(request: web.Request) -> web.Response:
    schema = _schema(request)
    state = _state(request)
    record = state.records.get(schema.name, request.match_info["sys_id"])
    if record is None or schema.name in state.unreadable:
        return no_record()  # "Record doesn't exist or ACL restricts the record retrieval"
    return web.json_response({"result": _render_one(request, schema, record)})


async def create_record(request: web.Request) -> web.Response:
    """POST: 201 with ``Location``; unknown and read-only fields are ignored (facts L71)."""
    schema = _schema(request)
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    record = _state(request).records.insert(schema.name, body, user=_user(request))
    location = f"{request.url.origin()}/api/now/table/{schema.name}/{record['sys_id']}"
    return web.json_response(
        {"result": _render_one(request, schema, record)}, status=201, headers={"Location": location}
    )


async def update_record(request: web.Request) -> web.Response:
    """PATCH and PUT: 200 with the updated record, 404 for an unknown sys_id (facts L72)."""
    schema = _schema(request)
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    record = _state(request).records.update(
        schema.name, request.match_info["sys_id"], body, user=_user(request)
    )
    if record is None:
        return no_record()
    return web.json_response({"result": _render_one(request, schema, record)})


async def delete_record(request: web.Request) -> web.Response:
    """DELETE: 204 with an empty body (facts L73)."""
    schema = _schema(request)
    if not _state(request).records.delete(schema.name, request.match_info["sys_id"]):
        return no_record()
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    """Unversioned and ``v1``/``v2`` paths are the same handlers (facts L63); HEAD is supported (L75)."""
    for prefix in ("/api/now/table", "/api/now/{version:v1|v2}/table"):
        collection, member = f"{prefix}/{{table}}", f"{prefix}/{{table}}/{{sys_id}}"
        for method, path, handler in (
            ("GET", collection, list_records),
            ("HEAD", collection, list_records),
            ("POST", collection, _refusing_writes_to_platform_tables(create_record)),
            ("GET", member, get_record),
            ("HEAD", member, get_record),
            ("PATCH", member, _refusing_writes_to_platform_tables(update_record)),
            ("PUT", member, _refusing_writes_to_platform_tables(update_record)),
            ("DELETE", member, _refusing_writes_to_platform_tables(delete_record)),
        ):
            app.router.add_route(method, path, _answering_invalid_table(handler))
