"""Encoded query strings (``sysparm_query``), parsed and evaluated like the instance does.

Syntax per facts L96-100: terms joined by ``^`` (AND) and ``^OR`` (OR, which binds tighter than
AND, so ``a^b^ORc`` is ``a AND (b OR c)``), groups joined by ``^NQ`` (OR of whole queries), and
``ORDERBY<field>``/``ORDERBYDESC<field>``. Names, operators and values are case-sensitive
(facts L99). A part the instance cannot use (unknown field, dot-walk, unsupported operator) is
silently ignored (facts L100): it matches every row rather than none.

Values compare as numbers when both sides are numeric (``state``, ``priority``, ``sys_mod_count``),
otherwise as strings. Date-times are stored as UTC ``YYYY-MM-DD HH:MM:SS`` so string comparison
orders them correctly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .clock import format_glide

Row = Mapping[str, str]
Predicate = Callable[[Row], bool]

_FIELD = re.compile(r"[a-z_][a-z0-9_.]*")
# Longest first, so that "NOT LIKE" wins over "LIKE" and "<=" over "<".
_OPERATORS = (
    "ISNOTEMPTY",
    "ISEMPTY",
    "EMPTYSTRING",
    "ANYTHING",
    "NOT LIKE",
    "NOT IN",
    "STARTSWITH",
    "ENDSWITH",
    "NSAMEAS",
    "SAMEAS",
    "BETWEEN",
    "LIKE",
    "IN",
    "!=",
    ">=",
    "<=",
    "=",
    ">",
    "<",
)
_JS_CALL = re.compile(r"javascript:\s*gs\.(\w+)\(([^)]*)\)\s*;?\s*$")


@dataclass(frozen=True)
class OrderBy:
    field: str
    descending: bool = False


@dataclass
class EncodedQuery:
    """A compiled query: OR'd groups of AND'd clauses of OR'd terms, plus the sort order."""

    groups: list[list[list[Predicate]]] = field(default_factory=list)
    order: list[OrderBy] = field(default_factory=list)

    def matches(self, row: Row) -> bool:
        if not self.groups:
            return True
        return any(all(any(term(row) for term in clause) for clause in group) for group in self.groups)

    def and_also(self, predicates: Sequence[Predicate]) -> None:
        """AND extra conditions (plain ``field=value`` URL parameters, facts L94) into every group."""
        if not predicates:
            return
        if not self.groups:
            self.groups.append([])
        for group in self.groups:
            group.extend([predicate] for predicate in predicates)

    def sort(self, rows: list[dict[str, str]]) -> list[dict[str, str]]:
        """Stable multi-key sort; earlier ORDERBY terms take precedence."""
        ordered = list(rows)
        for order in reversed(self.order):
            name = order.field

            def key(row: Row, name: str = name) -> tuple[int, float, str]:
                return sort_key(row.get(name, ""))

            ordered.sort(key=key, reverse=order.descending)
        return ordered


def as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def sort_key(value: str) -> tuple[int, float, str]:
    """Empty first, then numbers numerically, then strings."""
    if value == "":
        return (0, 0.0, "")
    number = as_number(value)
    if number is not None:
        return (1, number, "")
    return (2, 0.0, value)


def compare(left: str, right: str) -> int:
    """-1/0/1, numerically when both sides are numbers, else by string."""
    a, b = as_number(left), as_number(right)
    if a is not None and b is not None and left != "" and right != "":
        return (a > b) - (a < b)
    return (left > right) - (left < right)


_ESCAPED_CARET = "\x00"  # stands in for "^^" (a literal caret) while splitting on joiners


def resolve_value(value: str, now: datetime) -> str | None:
    """Evaluate the ``javascript:gs.*`` date helpers the docs use (facts L99); None if unsupported."""
    if not value.startswith("javascript:"):
        return value
    match = _JS_CALL.match(value)
    if match is None:
        return None
    function, raw_args = match.groups()
    args = [arg.strip().strip("'\"") for arg in raw_args.split(",") if arg.strip()]
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    amount = int(args[0]) if args and args[0].lstrip("-").isdigit() else 0
    helpers: dict[str, Callable[[], datetime]] = {
        "nowDateTime": lambda: now,
        "beginningOfToday": lambda: day_start,
        "endOfToday": lambda: day_start + timedelta(days=1, seconds=-1),
        "daysAgoStart": lambda: day_start - timedelta(days=amount),
        "daysAgoEnd": lambda: day_start - timedelta(days=amount - 1, seconds=1),
        "daysAgo": lambda: now - timedelta(days=amount),
        "hoursAgo": lambda: now - timedelta(hours=amount),
        "minutesAgo": lambda: now - timedelta(minutes=amount),
    }
    if function == "dateGenerate" and len(args) == 2:
        return f"{args[0]} {args[1]}"
    helper = helpers.get(function)
    return format_glide(helper()) if helper is not None else None


def _term(field_name: str, operator: str, raw: str, now: datetime) -> Predicate | None:
    """One condition, or None when the instance would ignore it."""
    if operator in ("ISEMPTY", "EMPTYSTRING"):
        return lambda row: row.get(field_name, "") == ""
    if operator == "ISNOTEMPTY":
        return lambda row: row.get(field_name, "") != ""
    if operator == "ANYTHING":
        return lambda row: True
    if operator in ("SAMEAS", "NSAMEAS"):
        other, same = raw, operator == "SAMEAS"
        return lambda row: (row.get(field_name, "") == row.get(other, "")) is same
    if operator in ("IN", "NOT IN"):
        options = [resolve_value(part, now) or "" for part in raw.split(",")]
        inside = operator == "IN"
        return lambda row: any(compare(row.get(field_name, ""), o) == 0 for o in options) is inside
    if operator == "BETWEEN":
        bounds = [resolve_value(part, now) for part in raw.split("@")]
        if len(bounds) != 2 or bounds[0] is None or bounds[1] is None:
            return None
        low, high = bounds[0], bounds[1]
        return lambda row: (
            compare(row.get(field_name, ""), low) >= 0 and compare(row.get(field_name, ""), high) <= 0
        )
    value = resolve_value(raw, now)
    if value is None:
        return None
    tests: dict[str, Callable[[str], bool]] = {
        "=": lambda cell: compare(cell, value) == 0,
        "!=": lambda cell: compare(cell, value) != 0,
        ">": lambda cell: cell != "" and compare(cell, value) > 0,
        ">=": lambda cell: cell != "" and compare(cell, value) >= 0,
        "<": lambda cell: cell != "" and compare(cell, value) < 0,
        "<=": lambda cell: cell != "" and compare(cell, value) <= 0,
        "STARTSWITH": lambda cell: cell.startswith(value),
        "ENDSWITH": lambda cell: cell.endswith(value),
        "LIKE": lambda cell: value in cell,
        "NOT LIKE": lambda cell: value not in cell,
    }
    test = tests[operator]
    return lambda row: test(row.get(field_name, ""))


def parse_term(text: str, known_fields: Callable[[str], bool], now: datetime) -> Predicate | None:
    """Parse ``<field><operator><value>``; None for anything the instance would ignore."""
    match = _FIELD.match(text)
    if match is None:
        return None
    field_name, rest = match.group(0), text[match.end() :]
    if not known_fields(field_name):
        return None  # unknown or dot-walked field: silently ignored (facts L100)
    for operator in _OPERATORS:
        if rest.startswith(operator):
            return _term(field_name, operator, rest[len(operator) :], now)
    return None


def parse_encoded_query(query: str, known_fields: Callable[[str], bool], now: datetime) -> EncodedQuery:
    """Compile ``sysparm_query`` for one table."""
    compiled = EncodedQuery()
    for group_text in query.replace("^^", _ESCAPED_CARET).split("^NQ"):
        group: list[list[Predicate]] = []
        for part in group_text.split("^"):
            is_or = part.startswith("OR") and not part.startswith("ORDERBY")
            text = (part[2:] if is_or else part).replace(_ESCAPED_CARET, "^")
            if text.startswith("ORDERBYDESC"):
                _add_order(compiled, text[len("ORDERBYDESC") :], True, known_fields)
                continue
            if text.startswith("ORDERBY"):
                _add_order(compiled, text[len("ORDERBY") :], False, known_fields)
                continue
            predicate = parse_term(text, known_fields, now) if text and text != "EQ" else None
            if predicate is None:
                continue
            if is_or and group:
                group[-1].append(predicate)
            else:
                group.append([predicate])
        # A group whose parts were all ignored is empty and matches every row, like an empty query.
        compiled.groups.append(group)
    return compiled


def _add_order(compiled: EncodedQuery, name: str, descending: bool, known: Callable[[str], bool]) -> None:
    if known(name):
        compiled.order.append(OrderBy(name, descending))
