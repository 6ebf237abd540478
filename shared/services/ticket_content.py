"""What a ticket says: the request, filled in from Secure Score, as ServiceNow receives it and as its
row keeps it. Pure mapping; README "Ticket mapping" documents the choices for the portal team and
customers:

- `short_description` is the name; change requests carry the prefix
  "Microsoft 365 Security and Configuration Change Request: " (the name Microsoft's own connector
  used), cut to ServiceNow's 160 characters. The full name is always in the description block.
- `description` is the user's text, then a block naming the recommendation source and category,
  the improvement action (id and link), who asked, and our ticket id.
- Priority is never sent: ServiceNow computes it from impact and urgency with its default lookup
  matrix, so we pick the (impact, urgency) pair that yields the requested priority exactly.
- `due_date` is the end of the due day in UTC (23:59:59): the ticket is not overdue on its due day.
- `correlation_id` is our ticket id (how a retried create finds the record it may already have
  made); `correlation_display` names this connector.
- With an improvement action, what the request leaves out comes from Secure Score: a missing name
  is the action's title, a missing description its remediation as plain text, a missing category
  its category.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from shared.errors import BadRequest
from shared.models import (
    CreateTicket,
    ImprovementAction,
    RecommendationCategory,
    RecommendationSource,
    TicketType,
)
from shared.records import CORRELATION_DISPLAY, Ticket
from shared.ticket_states import CHANGE_REQUEST, INCIDENT

logger = logging.getLogger(__name__)

CHANGE_REQUEST_PREFIX = "Microsoft 365 Security and Configuration Change Request: "
SECURE_SCORE_URL = "https://security.microsoft.com/securescore?viewid=actions"
SHORT_DESCRIPTION_MAX = 160
NAME_MAX = 160
DESCRIPTION_MAX = 4000

# priority -> (impact, urgency) under ServiceNow's default matrix (facts section 4):
#   impact\urgency  1  2  3
#   1               1  2  3
#   2               2  3  4
#   3               3  4  5
# Each priority has one pair on the matrix's diagonal or just above it; both values move together,
# so "how bad" and "how soon" stay balanced.
IMPACT_URGENCY = MappingProxyType({1: (1, 1), 2: (1, 2), 3: (2, 2), 4: (2, 3), 5: (3, 3)})

_SOURCE_LABELS = {"microsoft": "Microsoft Secure Score", "user": "User"}
_DEFAULT_STATE = {INCIDENT: "1", CHANGE_REQUEST: "-5"}  # a new record's state, if ServiceNow omits it


@dataclass(frozen=True)
class Requester:
    """Who asked for the ticket: the claim's creator, also when another request finishes the create."""

    tenant_id: str
    user_id: str
    name: str


@dataclass(frozen=True)
class TicketContent:
    """One ticket's content: what ServiceNow receives (`table`, `fields`) and what its row keeps.

    Build it with `ticket_content`, which fills the gaps from Secure Score and checks them.
    """

    ticket_id: str
    table: TicketType
    name: str
    description: str  # the user's text (or Secure Score's), without our block
    priority: int
    due_date: date
    source: RecommendationSource
    category: RecommendationCategory
    improvement_action_id: str | None
    improvement_action_link: str | None
    requester: Requester

    @cached_property
    def fields(self) -> Mapping[str, str]:
        """The Table API body of the record (every value a string, as ServiceNow expects)."""
        impact, urgency = IMPACT_URGENCY[self.priority]
        return MappingProxyType(
            {
                "short_description": short_description(self.table, self.name),
                "description": self._servicenow_description(),
                "impact": str(impact),
                "urgency": str(urgency),
                "due_date": f"{self.due_date.isoformat()} 23:59:59",  # the due day's end, in UTC
                "correlation_id": self.ticket_id,
                "correlation_display": CORRELATION_DISPLAY,
            }
        )

    def ticket(self, record: Mapping[str, Any], *, instance_url: str, at: datetime) -> Ticket:
        """The ticket row of the record ServiceNow made (or had) for this content."""
        return with_record(self.row(instance_url=instance_url, at=at), record, at=at)

    def row(self, *, instance_url: str, at: datetime) -> Ticket:
        """The ticket row before ServiceNow confirmed the record: `creating`, no sys_id, number or state."""
        return Ticket(
            tenant_id=self.requester.tenant_id,
            ticket_id=self.ticket_id,
            type=self.table,
            sys_id="",
            number="",
            instance_url=instance_url,
            name=self.name,
            description=self.description,
            priority=self.priority,
            due_date=self.due_date,
            recommendation_source=self.source,
            recommendation_category=self.category,
            improvement_action_id=self.improvement_action_id,
            improvement_action_link=self.improvement_action_link,
            created_by=self.requester.user_id,
            created_by_name=self.requester.name,
            created_at=at,
            state="",
            state_updated_at=at,
            status="creating",
        )

    def _servicenow_description(self) -> str:
        lines = [
            "-- Microsoft 365 Security Connector --",
            f"Task: {self.name}",
            f"Recommendation source: {_SOURCE_LABELS[self.source]}",
            f"Recommendation category: {self.category}",
        ]
        if self.improvement_action_id is not None:
            lines.append(f"Improvement action: {self.improvement_action_id}")
            if self.improvement_action_link:
                lines.append(f"Improvement action link: {self.improvement_action_link}")
        lines += [
            f"Requested by: {self.requester.name} ({self.requester.user_id})",
            f"Connector ticket id: {self.ticket_id}",
        ]
        block = "\n".join(lines)
        # ServiceNow's description holds 4,000 characters; the block must survive, so the text gives way.
        text = clip(self.description, DESCRIPTION_MAX - len(block) - 2) if self.description else ""
        return f"{text}\n\n{block}" if text else block


def with_record(row: Ticket, record: Mapping[str, Any], *, at: datetime) -> Ticket:
    """`row` (as `row()` wrote it) completed with the record ServiceNow made for it: `created`."""
    priority = _int(record.get("priority"))
    if priority != row.priority:
        # The instance's lookup rules differ from ServiceNow's default matrix; show its answer.
        logger.warning("ServiceNow set priority %s for requested %s", record.get("priority"), row.priority)
    update = {
        "sys_id": str(record.get("sys_id") or ""),
        "number": str(record.get("number") or ""),
        "priority": priority if priority in IMPACT_URGENCY else row.priority,
        "state": str(record.get("state") or _DEFAULT_STATE[row.type]),
        "state_updated_at": at,
        "servicenow_updated_on": str(record.get("sys_updated_on") or "") or None,
        "status": "created",
        "failure_reason": None,
    }
    return row.model_copy(update=update)


def ticket_content(
    request: CreateTicket, requester: Requester, ticket_id: str, action: ImprovementAction | None
) -> TicketContent:
    """The content of a ticket; `action` is the improvement action the request names, if it names one.

    Raises:
        BadRequest: the name or category is neither in the request nor in Secure Score.
    """
    name = request.name or (clip(action.title.strip(), NAME_MAX) if action else "")
    if request.description is not None:
        description = request.description
    else:
        description = clip(plain_text(action.remediation or ""), DESCRIPTION_MAX) if action else ""
    category = request.recommendation_category or (action.control_category if action else None)
    if not name or category is None:
        missing = "name" if not name else "recommendationCategory"
        message = f"{missing} is required: Secure Score has none for this improvement action."
        raise BadRequest(message, fields=[{"field": missing, "message": message}])
    action_id = request.improvement_action_id
    return TicketContent(
        ticket_id=ticket_id,
        table=request.type,
        name=name,
        description=description,
        priority=request.priority,
        due_date=request.due_date,
        source=request.recommendation_source,
        category=category,
        improvement_action_id=action_id,
        improvement_action_link=improvement_action_link(action_id, action) if action_id is not None else None,
        requester=requester,
    )


def row_content(row: Ticket) -> TicketContent:
    """The content a ticket row was written from (`TicketContent.row`): a create that finishes a
    `creating` row sends what the first create did, whatever Secure Score says now."""
    action_id = row.improvement_action_id
    link = row.improvement_action_link
    if action_id is not None and link is None:  # a row written before the link was kept
        link = improvement_action_link(action_id, None)
    return TicketContent(
        ticket_id=row.ticket_id,
        table=row.type,
        name=row.name,
        description=row.description,
        priority=row.priority,
        due_date=row.due_date,
        source=row.recommendation_source,
        category=row.recommendation_category,
        improvement_action_id=action_id,
        improvement_action_link=link,
        requester=Requester(row.tenant_id, row.created_by, row.created_by_name),
    )


def check_due_date(due: date, now: datetime) -> None:
    """A day is in the past only once it is over everywhere: the last place to leave a date is
    UTC-12, so a user late in the day west of Greenwich can still pick "today"."""
    if due < (now - timedelta(hours=12)).date():
        raise BadRequest(
            "dueDate is in the past.", fields=[{"field": "dueDate", "message": "must not be in the past"}]
        )


def short_description(ticket_type: TicketType, name: str) -> str:
    text = f"{CHANGE_REQUEST_PREFIX}{name}" if ticket_type == CHANGE_REQUEST else name
    return clip(text, SHORT_DESCRIPTION_MAX)


def improvement_action_link(action_id: str, action: ImprovementAction | None) -> str:
    """The action's own page when Graph gives one, else Secure Score's list of actions."""
    if action is not None and action.action_url and action.action_url.startswith("https://"):
        return action.action_url
    return f"{SECURE_SCORE_URL}&actionId={quote(action_id, safe='')}"


_BREAKS = re.compile(r"<\s*(br|/p|/li|/div|/h[1-6])\s*/?\s*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]+>")
_BLANK_LINES = re.compile(r"\n{3,}")


def plain_text(markup: str) -> str:
    """Graph's remediation is HTML; ServiceNow's description is plain text."""
    text = _TAGS.sub("", _BREAKS.sub("\n", markup))
    text = html.unescape(text).replace("\r", "")
    lines = [line.strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
