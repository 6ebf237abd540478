"""Ticket state codes and their default labels (reference/servicenow-wire-facts.md section 4).

Codes are strings, as ServiceNow sends them. Change requests use the current state model.
"""

from __future__ import annotations

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


def effective_state_names(custom: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The labels the portal shows: ServiceNow's, with the tenant's custom names over them."""
    return {table: {**labels, **custom.get(table, {})} for table, labels in DEFAULT_STATE_LABELS.items()}
