"""Pydantic bodies of the rules API (`/api/rules`, camelCase): what a rule matches, what it creates,
what its last run did, and the preview's answer.

A rule turns the tenant's Secure Score improvement actions into tickets once a day, right after
the daily Secure Score read (`shared.services.rule_evaluation`); which actions it takes is
`shared.rules`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from shared.models import IMPROVEMENT_ACTION_ID, ApiModel, RecommendationCategory, TicketType

MAX_RULES_PER_TENANT = 20
DEFAULT_MAX_PER_RUN = 25
MAX_PER_RUN = 100
MAX_LISTED = 50  # of a run's skipped actions and errors: what one table property holds with room
# A slug (lower case letters, digits, dashes) or a GUID; never a Table Storage key character.
RULE_ID = r"^(?:[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?|[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})$"

RuleName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ActionId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=IMPROVEMENT_ACTION_ID)]
RuleId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=RULE_ID)]


class RuleMatch(ApiModel):
    """Which improvement actions a rule takes. Every condition must hold; an empty list is no
    condition. An action with no points left to gain (done, or not scored) never matches."""

    categories: list[RecommendationCategory] = Field(default_factory=list, max_length=5)
    min_points_to_gain: float = Field(default=0, ge=0, le=1000, strict=True)  # a number, not true
    # Non-empty: only these actions (still under the other conditions).
    include_action_ids: list[ActionId] = Field(default_factory=list, max_length=200)
    exclude_action_ids: list[ActionId] = Field(default_factory=list, max_length=200)
    include_deprecated: bool = False
    # Device controls (`scid_...`): Graph cannot take their state back, so left out unless asked.
    include_device_controls: bool = False


class RuleTicket(ApiModel):
    """What a rule creates for each action: its name, description and category come from Secure
    Score, like a ticket created from the Improvement actions page."""

    type: TicketType
    priority: int = Field(ge=1, le=5, strict=True)
    due_in_days: int = Field(ge=1, le=365, strict=True)
    recommendation_source: Literal["microsoft"] = "microsoft"


class RuleBody(ApiModel):
    """PUT /api/rules/{ruleId}, and a preview's unsaved rule."""

    name: RuleName
    enabled: bool = True
    match: RuleMatch = Field(default_factory=RuleMatch)
    ticket: RuleTicket
    max_per_run: int = Field(default=DEFAULT_MAX_PER_RUN, ge=1, le=MAX_PER_RUN, strict=True)


class CreatedTicket(ApiModel):
    action_id: str
    ticket_id: str
    number: str


class SkippedAction(ApiModel):
    action_id: str
    reason: str


RunOutcome = Literal["completed", "capped", "paused", "not_connected", "failed"]


class RuleRun(ApiModel):
    """What a rule's latest evaluation did. `skipped` and `errors` list at most `MAX_LISTED`
    entries; `skippedCount` counts them all."""

    at: AwareDatetime
    outcome: RunOutcome
    message: str | None = None
    created: list[CreatedTicket] = Field(default_factory=list)
    skipped: list[SkippedAction] = Field(default_factory=list)
    skipped_count: int = 0
    over_cap: int = 0  # matching actions left for a later run by the cap
    errors: list[SkippedAction] = Field(default_factory=list)


class RuleView(RuleBody):
    """A stored rule, as GET answers it."""

    id: str
    created_at: datetime
    updated_at: datetime
    updated_by: str
    last_run: RuleRun | None = None


class RuleList(ApiModel):
    """GET /api/rules: every rule of the tenant (at most `MAX_RULES_PER_TENANT`), by id."""

    items: list[RuleView]
    paused_until: datetime | None = None  # ServiceNow asked us to wait: no evaluation before then


class RulePreviewRequest(ApiModel):
    """POST /api/rules/preview: an unsaved rule or a saved one's id (exactly one)."""

    rule: RuleBody | None = None
    rule_id: RuleId | None = None

    @model_validator(mode="after")
    def _one_of(self) -> RulePreviewRequest:
        if (self.rule is None) == (self.rule_id is None):
            raise ValueError("give exactly one of rule and ruleId")
        return self


class PreviewedAction(ApiModel):
    action_id: str
    title: str
    category: RecommendationCategory | None
    points_to_gain: float


class RulePreview(ApiModel):
    """What the rule would create now (nothing is created): `wouldCreate` up to its cap, `overCap`
    the matching actions the cap leaves for a later run, `skipped` the matching actions that have
    an open ticket; `message` says why a run would create nothing (not connected, paused)."""

    would_create: list[PreviewedAction]
    over_cap: int
    skipped: list[SkippedAction]
    message: str | None = None


class RulePath(ApiModel):
    """The `{ruleId}` of `/api/rules/{ruleId}`."""

    rule_id: RuleId
