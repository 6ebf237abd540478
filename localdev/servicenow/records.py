"""The in-memory tables of one instance and the business rules that run on every write.

Every write path (Table API, control API, bulk seeding) goes through :class:`RecordStore`, so the
platform rules hold everywhere: values are strings (facts L109), ``number`` comes from a per-table
counter with 7 digits (facts L173), ``priority`` is looked up from impact and urgency (facts
L154-163), and ``sys_updated_on``/``sys_mod_count`` move on each change (DESIGN.md section 5 relies
on that for incremental sync watermarks). A value written to a journal field (``work_notes``,
``comments``) is not stored in the record: it appends a ``sys_journal_field`` entry, as the
platform does (next-features facts A7), and counts as a change of the record.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, format_glide
from .schema import JOURNAL_TABLE, TABLES, TableSchema, compute_priority, state_choice_rows

ADMIN_USER_SYS_ID = "6816f79cc0a8016401c5a33be04be441"  # the stock admin's well-known sys_id
FULFILLER_USER_SYS_ID = "46d44a23a9fe19810012d100cca80666"


def new_sys_id() -> str:
    """A 32-character lowercase hex GUID like the platform's (facts L112)."""
    return secrets.token_hex(16)


def to_wire_string(value: Any) -> str:
    """Coerce a JSON value to the string the instance would store: everything is a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        # A reference sent back as {"value": ..., "link": ...} stores its value.
        return to_wire_string(value.get("value", ""))
    return str(value)


@dataclass
class Table:
    """One table's rows, in insertion order, and its number counter."""

    schema: TableSchema
    rows: dict[str, dict[str, str]] = field(default_factory=dict)
    next_number: int = 0

    def __post_init__(self) -> None:
        self.next_number = self.schema.number_start

    def take_number(self) -> str:
        if self.schema.number_prefix is None:
            return ""
        number = f"{self.schema.number_prefix}{self.next_number:07d}"
        self.next_number += 1
        return number


class RecordStore:
    """All tables of one simulated instance."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tables: dict[str, Table] = {}
        # Called after every insert and every update that changed something (the Business Rules'
        # "after insert/update"): the push rule player (push.py) listens here.
        self.on_write: Callable[[str, dict[str, str]], None] | None = None
        self.reset()

    def reset(self) -> None:
        """Back to a fresh instance: empty task tables, counters at their start, stock choices/users."""
        self._tables = {name: Table(schema) for name, schema in TABLES.items()}
        for row in state_choice_rows():
            self.insert("sys_choice", row, user="system", allow_read_only=True)
        for sys_id, user_name, name in (
            (ADMIN_USER_SYS_ID, "admin", "System Administrator"),
            (FULFILLER_USER_SYS_ID, "itil", "ITIL User"),
        ):
            self.insert(
                "sys_user",
                {"sys_id": sys_id, "user_name": user_name, "name": name},
                user="system",
                allow_read_only=True,
            )

    def has_table(self, table: str) -> bool:
        return table in self._tables

    def schema(self, table: str) -> TableSchema:
        return self._tables[table].schema

    def rows(self, table: str) -> Iterator[dict[str, str]]:
        return iter(self._tables[table].rows.values())

    def count(self, table: str) -> int:
        return len(self._tables[table].rows)

    def get(self, table: str, sys_id: str) -> dict[str, str] | None:
        return self._tables[table].rows.get(sys_id)

    def insert(
        self,
        table: str,
        values: Mapping[str, Any],
        *,
        user: str,
        opened_by: str = ADMIN_USER_SYS_ID,
        allow_read_only: bool = False,
    ) -> dict[str, str]:
        """Create a record as the platform does: defaults, then accepted client values, then rules.

        Unknown fields and read-only fields are silently dropped, as the Table API does with a
        POST body. ``allow_read_only`` is for stock data only (a given sys_id for a well-known row).
        """
        target = self._tables[table]
        schema = target.schema
        stamp = format_glide(self._clock.now())
        record = dict(schema.defaults)
        record.update(self._accepted(schema, values, allow_read_only=allow_read_only))
        given_sys_id = to_wire_string(values.get("sys_id")) if allow_read_only else ""
        record["sys_id"] = given_sys_id or new_sys_id()
        record.update(
            sys_created_on=stamp,
            sys_updated_on=stamp,
            sys_created_by=user,
            sys_updated_by=user,
            sys_mod_count="0",
        )
        if schema.number_prefix is not None:
            record["number"] = target.take_number()
            record["opened_at"] = stamp
            if not record.get("opened_by"):
                record["opened_by"] = opened_by
        self._apply_rules(schema, record)
        target.rows[record["sys_id"]] = record
        self._journal(schema, record["sys_id"], values, user=user)
        if self.on_write is not None:
            self.on_write(table, record)
        return record

    def update(
        self, table: str, sys_id: str, values: Mapping[str, Any], *, user: str
    ) -> dict[str, str] | None:
        """Apply a PATCH/PUT. Returns None for an unknown sys_id.

        Like GlideRecord.update(), a write that changes no value is not a write: the timestamps
        and mod count only move when something actually changed.
        """
        record = self._tables[table].rows.get(sys_id)
        if record is None:
            return None
        schema = self._tables[table].schema
        candidate = dict(record)
        candidate.update(self._accepted(schema, values, allow_read_only=False))
        self._apply_rules(schema, candidate)
        if self._journal(schema, sys_id, values, user=user) or candidate != record:
            candidate["sys_updated_on"] = format_glide(self._clock.now())
            candidate["sys_updated_by"] = user
            candidate["sys_mod_count"] = str(int(record["sys_mod_count"] or "0") + 1)
            record.clear()
            record.update(candidate)
            if self.on_write is not None:
                self.on_write(table, record)
        return record

    def delete(self, table: str, sys_id: str) -> bool:
        return self._tables[table].rows.pop(sys_id, None) is not None

    def journal_entries(self, table: str, sys_id: str, element: str) -> list[dict[str, str]]:
        """One record's entries of one journal field, newest first (as the activity stream shows them)."""
        entries = [
            row
            for row in self._tables[JOURNAL_TABLE].rows.values()
            if (row["name"], row["element_id"], row["element"]) == (table, sys_id, element)
        ]
        return entries[::-1]  # stored oldest first; several may share a second

    def _journal(self, schema: TableSchema, sys_id: str, values: Mapping[str, Any], *, user: str) -> bool:
        """Append an entry for each journal field written with a non-empty value; whether any was."""
        written = False
        for element, raw in values.items():
            text = to_wire_string(raw)
            if element not in schema.write_only or not text.strip():
                continue  # an empty note adds nothing
            entry = {
                "sys_id": new_sys_id(),
                "sys_created_on": format_glide(self._clock.now()),
                "sys_created_by": user,
                "name": schema.name,
                "element": element,
                "element_id": sys_id,
                "value": text,
            }
            self._tables[JOURNAL_TABLE].rows[entry["sys_id"]] = entry
            written = True
        return written

    def _accepted(
        self, schema: TableSchema, values: Mapping[str, Any], *, allow_read_only: bool
    ) -> dict[str, str]:
        accepted: dict[str, str] = {}
        for name, raw in values.items():
            if not schema.has_field(name):
                continue  # unknown fields are ignored, not rejected
            if name in schema.read_only and not allow_read_only:
                continue
            if name in schema.write_only:
                continue  # journal entries are not readable through the field (facts L113)
            value = to_wire_string(raw)
            limit = schema.max_lengths.get(name)
            if limit is not None:
                value = value[:limit]  # the platform truncates over-long strings on write
            accepted[name] = value
        return accepted

    @staticmethod
    def _apply_rules(schema: TableSchema, record: dict[str, str]) -> None:
        """Server-side business rules that run on insert and update."""
        if schema.computes_priority:
            priority = compute_priority(record.get("impact", ""), record.get("urgency", ""))
            if priority is not None:
                record["priority"] = priority
        if schema.inactive_states:
            record["active"] = "false" if record.get("state") in schema.inactive_states else "true"
        if "incident_state" in record:
            record["incident_state"] = record.get("state", "")  # legacy mirror field (facts L151)
