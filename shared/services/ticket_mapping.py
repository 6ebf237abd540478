"""How a ticket request becomes a ServiceNow record, and a ServiceNow record a ticket row.

The choices (README "Ticket mapping" documents them for the portal team and customers):

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
"""

from __future__ import annotations

import html
import re
from datetime import date
from types import MappingProxyType
from urllib.parse import quote

from shared.models import ImprovementAction, RecommendationCategory, RecommendationSource, TicketType

CORRELATION_DISPLAY = "Microsoft 365 Security Connector"
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


def short_description(ticket_type: TicketType, name: str) -> str:
    text = f"{CHANGE_REQUEST_PREFIX}{name}" if ticket_type == "change_request" else name
    if len(text) <= SHORT_DESCRIPTION_MAX:
        return text
    return text[: SHORT_DESCRIPTION_MAX - 1].rstrip() + "…"


def improvement_action_link(action_id: str, action: ImprovementAction | None) -> str:
    """The action's own page when Graph gives one, else Secure Score's list of actions."""
    if action is not None and action.action_url and action.action_url.startswith("https://"):
        return action.action_url
    return f"{SECURE_SCORE_URL}&actionId={quote(action_id, safe='')}"


def description(
    *,
    ticket_id: str,
    name: str,
    text: str,
    source: RecommendationSource,
    category: RecommendationCategory,
    action_id: str | None,
    action_link: str | None,
    user_name: str,
    user_id: str,
) -> str:
    lines = [
        "-- Microsoft 365 Security Connector --",
        f"Task: {name}",
        f"Recommendation source: {_SOURCE_LABELS[source]}",
        f"Recommendation category: {category}",
    ]
    if action_id is not None:
        lines.append(f"Improvement action: {action_id}")
        if action_link:
            lines.append(f"Improvement action link: {action_link}")
    lines += [f"Requested by: {user_name} ({user_id})", f"Connector ticket id: {ticket_id}"]
    block = "\n".join(lines)
    # ServiceNow's description holds 4,000 characters; the block must survive, so the text gives way.
    text = clip(text, DESCRIPTION_MAX - len(block) - 2) if text else ""
    return f"{text}\n\n{block}" if text else block


def due_date(day: date) -> str:
    """ServiceNow's UTC date-time format, at the end of the due day."""
    return f"{day.isoformat()} 23:59:59"


def record_fields(
    *,
    ticket_id: str,
    ticket_type: TicketType,
    name: str,
    text: str,
    priority: int,
    due: date,
    source: RecommendationSource,
    category: RecommendationCategory,
    action_id: str | None,
    action_link: str | None,
    user_name: str,
    user_id: str,
) -> dict[str, str]:
    """The Table API body of the record (every value a string, as ServiceNow expects)."""
    impact, urgency = IMPACT_URGENCY[priority]
    return {
        "short_description": short_description(ticket_type, name),
        "description": description(
            ticket_id=ticket_id,
            name=name,
            text=text,
            source=source,
            category=category,
            action_id=action_id,
            action_link=action_link,
            user_name=user_name,
            user_id=user_id,
        ),
        "impact": str(impact),
        "urgency": str(urgency),
        "due_date": due_date(due),
        "correlation_id": ticket_id,
        "correlation_display": CORRELATION_DISPLAY,
    }


def record_url(instance_url: str, table: str, sys_id: str) -> str:
    """A deep link that opens the record inside the instance's navigation frame."""
    target = f"{table}.do?sys_id={sys_id}"
    return f"{instance_url.rstrip('/')}/nav_to.do?uri={quote(target, safe='')}"


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
