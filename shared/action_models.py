"""Pydantic bodies of `GET /api/improvement-actions` (camelCase): its query, and each action with
its points and the tickets made for it.

The action as Graph describes it (`ImprovementAction`) stays in `shared.models`: the Graph adapter
and the services read it; these are only what the listing answers."""

from __future__ import annotations

from shared.models import ApiModel, RecommendationCategory, TicketStatus, TicketType


class ImprovementActionQuery(ApiModel):
    """GET /api/improvement-actions query parameters."""

    category: RecommendationCategory | None = None
    has_ticket: bool | None = None


class ImprovementActionTicket(ApiModel):
    """A ticket made for an improvement action ("sent to ServiceNow as INC0010001")."""

    id: str
    type: TicketType
    number: str
    state: str
    state_name: str
    url: str
    status: TicketStatus
    deleted_in_servicenow: bool = False


class ImprovementActionView(ApiModel):
    """An improvement action; `currentScore` is the latest Secure Score's points for it (null when
    Secure Score does not score it), `tickets` the tickets made for it, newest first."""

    id: str
    title: str
    category: RecommendationCategory | None
    max_score: float | None
    current_score: float | None
    action_url: str
    deprecated: bool
    tickets: list[ImprovementActionTicket]


class ImprovementActionPage(ApiModel):
    """GET /api/improvement-actions: every action of the tenant (a few hundred at most: no paging)."""

    items: list[ImprovementActionView]
