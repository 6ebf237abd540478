"""Pure units of the encoded-query parser (facts L96-100 of servicenow-wire-facts.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from localdev.servicenow.query import compare, parse_encoded_query, resolve_value

NOW = datetime(2026, 3, 10, 15, 30, 0, tzinfo=UTC)
FIELDS = {"state", "short_description", "category", "sys_updated_on"}


def _match(query: str, row: dict[str, str]) -> bool:
    return parse_encoded_query(query, FIELDS.__contains__, NOW).matches(row)


def test_or_binds_tighter_than_and() -> None:
    """facts L97: a^b^ORc is a AND (b OR c)."""
    assert _match("category=A^state=1^ORstate=2", {"category": "A", "state": "2"})
    assert not _match("category=A^state=1^ORstate=2", {"category": "B", "state": "1"})


def test_escaped_caret_is_literal() -> None:
    """facts L96: ^^ in a value is a literal caret, not a joiner."""
    assert _match("short_description=a^^b", {"short_description": "a^b"})


def test_numeric_versus_string_comparison() -> None:
    """Numbers compare numerically ("-5" < "1" < "10"); dates as UTC strings (facts L111)."""
    assert compare("10", "2") > 0
    assert compare("-5", "1") < 0
    assert compare("2026-01-02 00:00:00", "2025-12-31 23:59:59") > 0


def test_unknown_parts_ignored_and_empty_query_matches() -> None:
    """facts L100: invalid parts are ignored, so they filter nothing."""
    assert _match("", {})
    assert _match("nope=1", {"state": "1"})
    assert _match("nope=1^NQstate=9", {"state": "1"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("javascript:gs.dateGenerate('2026-01-01','00:00:00')", "2026-01-01 00:00:00"),
        ("javascript:gs.daysAgoStart(1)", "2026-03-09 00:00:00"),
        ("javascript:gs.beginningOfToday()", "2026-03-10 00:00:00"),
        ("javascript:gs.minutesAgo(30)", "2026-03-10 15:00:00"),
        ("javascript:gs.unknownThing()", None),
        ("plain", "plain"),
    ],
)
def test_date_helpers(value: str, expected: str | None) -> None:
    """facts L98-99: the gs.* date functions used in encoded queries."""
    assert resolve_value(value, NOW) == expected


def test_order_by_keys() -> None:
    """facts L97: ORDERBY/ORDERBYDESC collected in order; unknown fields dropped."""
    compiled = parse_encoded_query(
        "ORDERBYstate^ORDERBYDESCsys_updated_on^ORDERBYnope", FIELDS.__contains__, NOW
    )
    assert [(o.field, o.descending) for o in compiled.order] == [("state", False), ("sys_updated_on", True)]
