"""The Graph stand-in's Secure Scores: `GET /v1.0/security/secureScores`, newest first.

Each tenant has one score a day for the last `HISTORY_DAYS` days. Today's carries the tenant's
current points per control (`controlScores`); older days carry none of the points earned since,
so a client that reads anything but the newest score sees zeros. Every non-deprecated control
profile is scored (Graph scores fewer controls than it has profiles: a deprecated one has no
score here). A tenant's points start at `default_scores` and move through the control API
(`PUT /__entra/secure-scores/{tenant}/controls/{control}`).

The entity follows Graph's `secureScore` resource; `controlScores` items carry the four
documented properties and a few undocumented ones real tenants send (`scoreInPercentage`,
`implementationStatus`, `lastSynced`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

HISTORY_DAYS = 3
VENDOR = {"provider": "SecureScore", "providerVersion": None, "subProvider": None, "vendor": "Microsoft"}


def default_scores(actions: list[dict[str, Any]]) -> dict[str, float]:
    """A tenant's first points: by rank, a third of the controls done, a third half done, a third not."""
    scores: dict[str, float] = {}
    for action in actions:
        if action.get("deprecated"):
            continue
        share = (int(action.get("rank") or 0) % 3) / 2  # 0, 0.5 or 1
        scores[action["id"]] = float(action.get("maxScore") or 0) * share
    return scores


def secure_scores(
    tenant_id: str, actions: list[dict[str, Any]], points: dict[str, float], today: date | None = None
) -> list[dict[str, Any]]:
    """The tenant's scores, newest first."""
    today = today or datetime.now(UTC).date()
    return [
        _score(tenant_id, actions, points if age == 0 else {}, today - timedelta(days=age))
        for age in range(HISTORY_DAYS)
    ]


def _score(
    tenant_id: str, actions: list[dict[str, Any]], points: dict[str, float], day: date
) -> dict[str, Any]:
    scored = [a for a in actions if not a.get("deprecated")]
    controls = [_control(action, points.get(action["id"], 0.0), day) for action in scored]
    return {
        "id": f"{tenant_id}_{day.isoformat()}",
        "azureTenantId": tenant_id,
        "activeUserCount": 42,
        "createdDateTime": f"{day.isoformat()}T00:00:00Z",
        "currentScore": sum(c["score"] for c in controls),
        "enabledServices": ["HasExchange", "HasSharePoint", "HasOD4B", "HasMDEP", "HasAAD"],
        "licensedUserCount": 50,
        "maxScore": sum(float(a.get("maxScore") or 0) for a in scored),
        "averageComparativeScores": [
            {"basis": "AllTenants", "averageScore": 51.2},
            {"basis": "TotalSeats", "averageScore": 47.9, "seatSizeRangeLowerValue": "1"},
        ],
        "controlScores": controls,
        "vendorInformation": VENDOR,
    }


def _control(action: dict[str, Any], score: float, day: date) -> dict[str, Any]:
    max_score = float(action.get("maxScore") or 0)
    return {
        "controlCategory": action.get("controlCategory"),
        "controlName": action["id"],
        "description": action.get("title", ""),
        "score": score,
        "scoreInPercentage": round(100 * score / max_score, 2) if max_score else 0.0,
        "implementationStatus": f"{score:g} of {max_score:g} points achieved",
        "lastSynced": f"{day.isoformat()}T00:00:00Z",
    }
