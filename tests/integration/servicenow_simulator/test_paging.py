"""Paging conformance: sysparm_limit/offset, Link and X-Total-Count.
Docstrings cite lines of ``cat -n /work/shared/reference/servicenow-wire-facts.md``."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from localdev.servicenow import RunningSimulator

TOTAL = 25


@pytest.fixture
async def many(sim: RunningSimulator, api: httpx.AsyncClient) -> httpx.AsyncClient:
    sim.state.seed("incident", TOTAL, {"short_description": "Ticket {n}"})
    return api


def _links(header: str) -> dict[str, list[tuple[str, str]]]:
    """rel -> the link's query parameters, in order."""
    links = {}
    for url, rel in re.findall(r'<([^>]*)>;rel="(\w+)"', header):
        links[rel] = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    return links


async def test_link_header_like_the_capture(many: httpx.AsyncClient) -> None:
    """facts L103-104: first/prev/next/last, params echoed in order, prev may be negative, last=total-limit."""
    answer = await many.get(
        "/api/now/table/incident",
        params={"sysparm_limit": "1", "sysparm_fields": "number", "sysparm_offset": "0"},
    )
    assert answer.headers["X-Total-Count"] == str(TOTAL)
    links = _links(answer.headers["Link"])
    assert list(links) == ["first", "prev", "next", "last"]
    assert links["first"] == [("sysparm_limit", "1"), ("sysparm_fields", "number"), ("sysparm_offset", "0")]
    assert dict(links["prev"])["sysparm_offset"] == "-1"
    assert dict(links["next"])["sysparm_offset"] == "1"
    assert dict(links["last"])["sysparm_offset"] == str(TOTAL - 1)
    assert answer.headers["Link"].startswith(f"<{many.base_url}".rstrip("/"))


async def test_walking_pages_with_orderby(many: httpx.AsyncClient) -> None:
    """facts L83-84, L103, L105: offset/limit pages with ORDERBY cover every row exactly once."""
    seen: list[str] = []
    offset = 0
    while True:
        answer = await many.get(
            "/api/now/table/incident",
            params={"sysparm_query": "ORDERBYnumber", "sysparm_limit": "10", "sysparm_offset": str(offset)},
        )
        rows = answer.json()["result"]
        seen += [row["number"] for row in rows]
        links = _links(answer.headers["Link"])
        if "next" not in links:
            break
        offset = int(dict(links["next"])["sysparm_offset"])
    assert seen == [f"INC{10001 + n:07d}" for n in range(TOTAL)]
    assert dict(links["last"])["sysparm_offset"] == str(TOTAL - 10)


async def test_total_count_is_of_matching_rows(many: httpx.AsyncClient) -> None:
    """facts L103: X-Total-Count is the number of rows matching the query, not the page size."""
    answer = await many.get(
        "/api/now/table/incident",
        params={"sysparm_query": "short_descriptionSTARTSWITHTicket 1", "sysparm_limit": "2"},
    )
    assert answer.headers["X-Total-Count"] == "11"  # Ticket 1, 10..19
    assert len(answer.json()["result"]) == 2


async def test_default_limit_is_10000(many: httpx.AsyncClient) -> None:
    """facts L83: sysparm_limit defaults to 10000."""
    answer = await many.get("/api/now/table/incident")
    assert len(answer.json()["result"]) == TOTAL
    assert dict(_links(answer.headers["Link"])["first"])["sysparm_limit"] == "10000"


async def test_suppress_pagination_header_and_no_count(many: httpx.AsyncClient) -> None:
    """facts L88-89: suppress_pagination_header drops Link; no_count skips the count."""
    quiet = await many.get("/api/now/table/incident", params={"sysparm_suppress_pagination_header": "true"})
    assert "Link" not in quiet.headers
    assert quiet.headers["X-Total-Count"] == str(TOTAL)
    uncounted = await many.get(
        "/api/now/table/incident", params={"sysparm_no_count": "true", "sysparm_limit": "5"}
    )
    assert "X-Total-Count" not in uncounted.headers
    assert "next" in _links(uncounted.headers["Link"])


async def test_offset_past_the_end(many: httpx.AsyncClient) -> None:
    """facts L63, L84: an offset past the end is an empty v2 page, not an error."""
    answer = await many.get("/api/now/table/incident", params={"sysparm_offset": "100"})
    assert (answer.status_code, answer.json()) == (200, {"result": []})
