"""What the OpenAPI document says of the rules (merged into `_contract.OPERATIONS`); the rules are
described for users in docs/rules.md."""

from __future__ import annotations

from datetime import UTC, datetime

from functions._contract_types import Answer, Operation, PathParameter
from shared.errors import (
    BadRequest,
    Conflict,
    DependencyNotConfigured,
    Forbidden,
    ForbiddenOrigin,
    Misconfigured,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
    UpstreamUnavailable,
)
from shared.rule_models import (
    CreatedTicket,
    PreviewedAction,
    RuleBody,
    RuleList,
    RulePreview,
    RulePreviewRequest,
    RuleRun,
    RuleView,
    SkippedAction,
)

_AT = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
RULE = RuleBody.model_validate(
    {
        "name": "Identity actions worth 5 points",
        "enabled": True,
        "match": {"categories": ["Identity"], "minPointsToGain": 5, "excludeActionIds": ["SigninRiskPolicy"]},
        "ticket": {"type": "incident", "priority": 2, "dueInDays": 30, "recommendationSource": "microsoft"},
        "maxPerRun": 25,
    }
)
RUN = RuleRun(
    at=_AT,
    outcome="completed",
    created=[CreatedTicket(action_id="AdminMFAV2", ticket_id="t01JH4Z5X0A1B2C3D4E5F6", number="INC0010001")],
    skipped=[SkippedAction(action_id="MFARegistrationV2", reason="open ticket INC0010002")],
    skipped_count=1,
)
VIEW = RuleView(
    **RULE.model_dump(), id="identity-5", created_at=_AT, updated_at=_AT, updated_by="Ada Admin", last_run=RUN
)
PREVIEW = RulePreview(
    would_create=[
        PreviewedAction(
            action_id="AdminMFAV2", title="Require MFA for admins", category="Identity", points_to_gain=10
        )
    ],
    over_cap=0,
    skipped=[SkippedAction(action_id="MFARegistrationV2", reason="open ticket INC0010002")],
)
_PATH = {"ruleId": PathParameter("A slug (a-z, 0-9, dashes; 64 at most) or a GUID.", "identity-5")}
_ERRORS = (Unauthenticated, Forbidden, Conflict, Misconfigured, UpstreamUnavailable)
_WRITE = (ForbiddenOrigin, UnsupportedMediaType, BadRequest, PayloadTooLarge)

RULE_OPERATIONS: dict[str, Operation] = {
    "rules_list": Operation(
        summary="The tenant's rules",
        description="Every rule of the tenant (20 at most), by id, each with its last run; `pausedUntil` when "
        "ServiceNow asked us (429) to wait: no rule creates anything before then.",
        tag="Rules",
        answers=(Answer(200, "The rules.", RuleList, RuleList(items=[VIEW])),),
        errors=_ERRORS,
    ),
    "rules_get": Operation(
        summary="A rule",
        description="The rule and its `lastRun`: when the daily evaluation ran, what it created, what it "
        "skipped and why, the matching actions the cap left for a later run, and errors.",
        tag="Rules",
        answers=(Answer(200, "The rule.", RuleView, VIEW),),
        errors=(*_ERRORS, BadRequest, NotFound),
        path=_PATH,
    ),
    "rules_put": Operation(
        summary="Create or replace a rule",
        description="Once a day, right after the daily Secure Score read, an enabled rule creates a ticket for "
        "each improvement action it matches that has no open ticket from us, `maxPerRun` (1 to 100, default "
        "25) at most; `createdBy` of each ticket is `Rule: <name>`. `match`: `categories` (none: all), "
        "`minPointsToGain`, `includeActionIds` (none: all), `excludeActionIds`, `includeDeprecated`, "
        "`includeDeviceControls` (both false unless set). `ticket`: `type`, `priority` (1 to 5), `dueInDays` "
        "(1 to 365). A tenant has at most 20 rules: a 21st is 409 `conflict`.",
        tag="Rules",
        body=RuleBody,
        body_examples={"rule": RULE.model_dump(mode="json", by_alias=True)},
        answers=(Answer(201, "Created.", RuleView, VIEW), Answer(200, "Replaced.", RuleView, VIEW)),
        errors=(*_ERRORS, *_WRITE),
        path=_PATH,
    ),
    "rules_delete": Operation(
        summary="Delete a rule",
        description="The rule is gone; the tickets it created stay.",
        tag="Rules",
        answers=(Answer(204, "Deleted."),),
        errors=(*_ERRORS, ForbiddenOrigin, BadRequest, NotFound),
        path=_PATH,
    ),
    "rules_preview": Operation(
        summary="What a rule would create now",
        description="Give `rule` (unsaved) or `ruleId` (saved), exactly one. Answers the actions it would "
        "create tickets for now (up to its cap), how many the cap leaves for later, and the matching actions "
        "skipped because they have an open ticket; creates nothing. Reads Secure Score as the Improvement "
        "actions page does (cached 5 minutes).",
        tag="Rules",
        body=RulePreviewRequest,
        body_examples={
            "unsaved": {"rule": RULE.model_dump(mode="json", by_alias=True)},
            "saved": {"ruleId": "identity-5"},
        },
        answers=(Answer(200, "The preview.", RulePreview, PREVIEW),),
        errors=(*_ERRORS, *_WRITE, NotFound, DependencyNotConfigured),
    ),
}
