"""Which tables the simulated instance has, and the field rules ServiceNow applies to them.

Only what the connector and its tests touch is modelled: ``incident``, ``change_request`` (both
extend ``task``), ``sys_choice`` for their state labels, ``sys_user`` so reference links
resolve, and ``sys_journal_field``, where writes to the journal fields ``work_notes`` and
``comments`` land as entries (next-features facts A7). Field lists follow the doc examples (facts L175); choice values follow facts L150 and
L166; the priority lookup is the default Data Lookup matrix (facts L154-163).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

INCIDENT_STATES: Mapping[str, str] = MappingProxyType(
    {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"}
)
CHANGE_STATES: Mapping[str, str] = MappingProxyType(
    {
        "-5": "New",
        "-4": "Assess",
        "-3": "Authorize",
        "-2": "Scheduled",
        "-1": "Implement",
        "0": "Review",
        "3": "Closed",
        "4": "Canceled",
    }
)
IMPACT_URGENCY: Mapping[str, str] = MappingProxyType({"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"})
PRIORITIES: Mapping[str, str] = MappingProxyType(
    {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low", "5": "5 - Planning"}
)
CHANGE_TYPES: Mapping[str, str] = MappingProxyType(
    {"normal": "Normal", "standard": "Standard", "emergency": "Emergency"}
)

# (impact, urgency) -> priority, the stock "Priority Lookup Rules" (facts L156-160).
PRIORITY_MATRIX: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("1", "1"): "1",
        ("1", "2"): "2",
        ("1", "3"): "3",
        ("2", "1"): "2",
        ("2", "2"): "3",
        ("2", "3"): "4",
        ("3", "1"): "3",
        ("3", "2"): "4",
        ("3", "3"): "5",
    }
)

SYSTEM_FIELDS = frozenset(
    {"sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count"}
)
_SYSTEM_DEFAULTS = dict.fromkeys(
    ("sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count"), ""
)

_TASK_DEFAULTS: dict[str, str] = {
    **_SYSTEM_DEFAULTS,
    "number": "",
    "short_description": "",
    "description": "",
    "category": "",
    "subcategory": "",
    "impact": "3",
    "urgency": "3",
    "priority": "5",
    "state": "",
    "active": "true",
    "due_date": "",
    "correlation_id": "",
    "correlation_display": "",
    "opened_at": "",
    "opened_by": "",
    "assignment_group": "",
    "assigned_to": "",
    "cmdb_ci": "",
    "close_code": "",
    "close_notes": "",
    "work_notes": "",
    "comments": "",
    "sys_class_name": "",
}
_TASK_REFERENCES = {
    "opened_by": "sys_user",
    "assigned_to": "sys_user",
    "assignment_group": "sys_user_group",
    "cmdb_ci": "cmdb_ci",
}
# Task strings are 100 characters at most for correlation_* (facts L178) and 160 for the title.
_TASK_MAX_LENGTHS = {"correlation_id": 100, "correlation_display": 100, "short_description": 160}
_TASK_DATETIMES = frozenset({"due_date", "opened_at", "sys_created_on", "sys_updated_on"})


@dataclass(frozen=True)
class TableSchema:
    """Everything the record store needs to know about one table."""

    name: str
    defaults: Mapping[str, str]
    number_prefix: str | None = None
    number_start: int = 0
    references: Mapping[str, str] = field(default_factory=dict)
    read_only: frozenset[str] = SYSTEM_FIELDS
    max_lengths: Mapping[str, int] = field(default_factory=dict)
    choices: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    datetimes: frozenset[str] = frozenset({"sys_created_on", "sys_updated_on"})
    inactive_states: frozenset[str] = frozenset()
    computes_priority: bool = False
    # Journal fields: a write appends a sys_journal_field entry; the field reads back as "" (facts L113).
    write_only: frozenset[str] = frozenset()
    # False: rows are made by the platform only (journal entries); Table API writes are refused.
    api_writable: bool = True

    def has_field(self, name: str) -> bool:
        return name in self.defaults


def _task_table(
    name: str,
    *,
    prefix: str,
    start: int,
    states: Mapping[str, str],
    default_state: str,
    inactive: frozenset[str],
    extra_defaults: Mapping[str, str],
    extra_references: Mapping[str, str],
    extra_choices: Mapping[str, Mapping[str, str]],
) -> TableSchema:
    return TableSchema(
        name=name,
        defaults={**_TASK_DEFAULTS, "state": default_state, "sys_class_name": name, **extra_defaults},
        number_prefix=prefix,
        number_start=start,
        references={**_TASK_REFERENCES, **extra_references},
        # number and priority are set by the platform; a client's value is dropped (facts L162-163).
        read_only=SYSTEM_FIELDS | {"number", "priority", "sys_class_name", "active", "opened_at"},
        max_lengths=_TASK_MAX_LENGTHS,
        choices={
            "state": states,
            "impact": IMPACT_URGENCY,
            "urgency": IMPACT_URGENCY,
            "priority": PRIORITIES,
            **extra_choices,
        },
        datetimes=_TASK_DATETIMES,
        inactive_states=inactive,
        computes_priority=True,
        write_only=frozenset({"work_notes", "comments"}),
    )


INCIDENT = _task_table(
    "incident",
    prefix="INC",
    start=10001,
    states=INCIDENT_STATES,
    default_state="1",
    inactive=frozenset({"7", "8"}),
    extra_defaults={"incident_state": "1", "caller_id": ""},
    extra_references={"caller_id": "sys_user"},
    extra_choices={"incident_state": INCIDENT_STATES},
)
CHANGE_REQUEST = _task_table(
    "change_request",
    prefix="CHG",
    start=30001,
    states=CHANGE_STATES,
    default_state="-5",
    inactive=frozenset({"3", "4"}),
    extra_defaults={"type": "normal"},
    extra_references={},
    extra_choices={"type": CHANGE_TYPES},
)
SYS_CHOICE = TableSchema(
    name="sys_choice",
    defaults={
        **_SYSTEM_DEFAULTS,
        "name": "",
        "element": "",
        "value": "",
        "label": "",
        "language": "en",
        "sequence": "",
        "inactive": "false",
        "dependent_value": "",
    },
)
SYS_USER = TableSchema(
    name="sys_user",
    defaults={**_SYSTEM_DEFAULTS, "user_name": "", "name": "", "email": "", "active": "true"},
)
JOURNAL_TABLE = "sys_journal_field"
# An entry is written once and never updated, so it has no sys_updated_* fields.
SYS_JOURNAL_FIELD = TableSchema(
    name=JOURNAL_TABLE,
    defaults={
        "sys_id": "",
        "sys_created_on": "",
        "sys_created_by": "",
        "name": "",
        "element": "",
        "element_id": "",
        "value": "",
    },
    read_only=frozenset(
        {"sys_id", "sys_created_on", "sys_created_by", "name", "element", "element_id", "value"}
    ),
    datetimes=frozenset({"sys_created_on"}),
    api_writable=False,
)
# How the activity stream labels each journal field in a display value (next-features facts A7).
JOURNAL_LABELS: Mapping[str, str] = MappingProxyType(
    {"work_notes": "Work notes", "comments": "Additional comments"}
)

TABLES: Mapping[str, TableSchema] = MappingProxyType(
    {schema.name: schema for schema in (INCIDENT, CHANGE_REQUEST, SYS_CHOICE, SYS_USER, SYS_JOURNAL_FIELD)}
)


def compute_priority(impact: str, urgency: str) -> str | None:
    """The default matrix's priority, or None when impact/urgency are off the 1-3 scale."""
    return PRIORITY_MATRIX.get((impact, urgency))


def state_choice_rows() -> list[dict[str, str]]:
    """``sys_choice`` rows for the state labels of incident and change_request (facts L150, L166, L171)."""
    rows: list[dict[str, str]] = []
    for table, states in (("incident", INCIDENT_STATES), ("change_request", CHANGE_STATES)):
        for sequence, (value, label) in enumerate(states.items(), start=1):
            rows.append(
                {
                    "name": table,
                    "element": "state",
                    "value": value,
                    "label": label,
                    "language": "en",
                    "sequence": str(sequence),
                }
            )
    return rows
