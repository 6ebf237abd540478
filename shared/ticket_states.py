"""Ticket state codes and their default labels (reference/servicenow-wire-facts.md section 4).

Codes are strings, as ServiceNow sends them. Change requests use the current state model.
"""

from __future__ import annotations

import re
from types import MappingProxyType

INCIDENT = "incident"
CHANGE_REQUEST = "change_request"
TICKET_TABLES = (INCIDENT, CHANGE_REQUEST)

DEFAULT_STATE_LABELS = MappingProxyType(
    {
        INCIDENT: MappingProxyType(
            {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"}
        ),
        CHANGE_REQUEST: MappingProxyType(
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
        ),
    }
)


StateLabels = dict[str, dict[str, str]]


def effective_state_names(custom: StateLabels, instance: StateLabels | None = None) -> StateLabels:
    """The labels the portal shows: the documented defaults, then the instance's own `sys_choice`
    labels (read by the sync), then the tenant's custom names over both."""
    instance = instance or {}
    return {
        table: {**labels, **instance.get(table, {}), **custom.get(table, {})}
        for table, labels in DEFAULT_STATE_LABELS.items()
    }


def known_state_codes(table: str, instance: StateLabels | None = None) -> set[str]:
    """The state codes a table has: the documented ones and any the instance added."""
    return {*DEFAULT_STATE_LABELS[table], *(instance or {}).get(table, {})}


def labels_from_choices(rows: list[dict[str, str]]) -> StateLabels:
    """`sys_choice` rows (name, value, label) of the ticket tables' `state` element, by table."""
    labels: StateLabels = {}
    for row in rows:
        table, code, label = row.get("name", ""), row.get("value", ""), row.get("label", "")
        if table in TICKET_TABLES and code and label:
            labels.setdefault(table, {})[code] = label
    return labels


# The codes of the out-of-the-box states in which a ticket's work is over (resolved, closed,
# cancelled); an instance's own states are told by their label (`closed_state`).
CLOSED_STATE_CODES = MappingProxyType(
    {INCIDENT: frozenset({"6", "7", "8"}), CHANGE_REQUEST: frozenset({"3", "4"})}
)
_CLOSED_LABEL = re.compile(r"\b(resolved|closed|cancell?ed|completed?)\b", re.IGNORECASE)


def closed_state(table: str, code: str, labels: StateLabels | None = None) -> bool:
    """Whether the ticket's work is over in state `code`: an out-of-the-box resolved, closed or
    cancelled state, or a state the instance added whose label says so (`labels`: the instance's
    `sys_choice` labels). A tenant's custom display names do not change what a state means."""
    if code in CLOSED_STATE_CODES.get(table, frozenset()):
        return True
    if code in DEFAULT_STATE_LABELS.get(table, {}):
        return False
    label = (labels or {}).get(table, {}).get(code, "")
    return _CLOSED_LABEL.search(label) is not None
