"""Secure Score in our terms: the states a control can be given and which controls can be given
one, and Microsoft Graph's JSON read as our models (a `secureScoreControlProfile` as an
`ImprovementAction` with its newest `controlStateUpdates` entry, a `secureScore` as points per
control). Pure: `shared.graph` fetches and sends, the services decide with these rules.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shared.errors import UpstreamError
from shared.models import ImprovementAction, RecommendationCategory

# The states a control can be given through Graph (the portal's statuses map onto them).
CONTROL_STATES = ("Default", "Ignored", "ThirdParty", "Reviewed")
DEVICE_CONTROL_PREFIX = "scid_"
# Graph spells the device category in the singular; the portal and our API use the plural.
_CATEGORIES: dict[str, RecommendationCategory] = {
    "device": "Devices",
    "devices": "Devices",
    "data": "Data",
    "apps": "Apps",
    "identity": "Identity",
    "infrastructure": "Infrastructure",
}


def writable_control(control_id: str) -> bool:
    """Whether Graph can set this control's state: device controls (`scid_…`) belong to Defender
    Vulnerability Management, which refuses their updates through Secure Score."""
    return not control_id.lower().startswith(DEVICE_CONTROL_PREFIX)


def to_improvement_action(raw: dict[str, Any]) -> ImprovementAction:
    """Map one Graph `secureScoreControlProfile` to our model."""
    category = raw.get("controlCategory")
    latest = latest_control_state(raw.get("controlStateUpdates"))
    comment = latest.get("comment") if latest is not None else None
    try:
        return ImprovementAction(
            id=raw["id"],
            title=raw["title"],
            remediation=raw.get("remediation"),
            control_category=_CATEGORIES.get(category.lower()) if isinstance(category, str) else None,
            action_url=raw.get("actionUrl"),
            rank=raw.get("rank"),
            max_score=raw.get("maxScore"),
            user_impact=raw.get("userImpact"),
            implementation_cost=raw.get("implementationCost"),
            tier=raw.get("tier"),
            threats=tuple(raw.get("threats") or ()),
            deprecated=bool(raw.get("deprecated", False)),
            control_state=latest["state"] if latest is not None else None,
            control_state_comment=comment if isinstance(comment, str) else None,
        )
    except (KeyError, TypeError, ValidationError) as exc:
        raise UpstreamError("Microsoft Graph returned an improvement action we could not read.") from exc


def latest_control_state(updates: object) -> dict[str, Any] | None:
    """The newest `controlStateUpdates` entry: the latest `updatedDateTime` (of two alike, the later
    in the list, as Graph appends), or the last entry when none has a readable one. Entries that are
    not objects or have no state are skipped: one bad entry must not cost the whole profile."""
    if not isinstance(updates, list):
        return None
    usable = [
        u for u in updates if isinstance(u, dict) and isinstance(u.get("state"), str) and u["state"].strip()
    ]
    dated = [
        (when, i) for i, u in enumerate(usable) if (when := _instant(u.get("updatedDateTime"))) is not None
    ]
    if dated:
        return usable[max(dated)[1]]
    return usable[-1] if usable else None


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)  # Graph's times are UTC


def to_control_scores(raw: dict[str, Any]) -> dict[str, float]:
    """The points of each control (`controlName` -> `score`) in one Graph `secureScore`; a control
    whose score is not a number is left out."""
    try:
        scores = [(str(item["controlName"]), item.get("score")) for item in raw.get("controlScores") or []]
    except (KeyError, TypeError, AttributeError) as exc:
        raise UpstreamError("Microsoft Graph returned a Secure Score we could not read.") from exc
    return {name: float(n) for name, n in scores if type(n) in (int, float) and math.isfinite(n)}
