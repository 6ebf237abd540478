"""The Entra + Graph stand-in's state: registered clients, issued tokens, the sample improvement
actions, each tenant's control states and Secure Score points, injected faults, the PATCH requests
received, request counts and settings."""

from __future__ import annotations

import json
import re
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from localdev.entra.secure_score import default_scores

DEFAULT_CLIENTS = {"dev-graph-client": "dev-graph-secret"}
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
TOKEN_LIFETIME = 3599
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 200
CONCURRENCY_LIMIT = 4  # Graph's Secure Score requests in flight per app and tenant
DATA_FILE = Path(__file__).with_name("improvement_actions.json")
TENANT = re.compile(r"^[0-9a-zA-Z.-]{1,100}$")
ControlKey = tuple[str, str]  # tenant, control profile id


@dataclass
class IssuedToken:
    tenant_id: str
    client_id: str
    expires_at: float


@dataclass
class GraphFault:
    """One injected Graph answer; `kind` (a route kind, e.g. `graph_patch`) and `tenant_id` narrow
    which request receives it (None: any)."""

    status: int
    retry_after: float | None
    kind: str | None = None
    tenant_id: str | None = None

    def matches(self, kind: str, tenant_id: str) -> bool:
        return self.kind in (None, kind) and self.tenant_id in (None, tenant_id)


@dataclass
class EntraState:
    """Registered clients, issued tokens, sample data, Secure Score points, faults and counts.

    `tenant_counts` counts Graph requests by (tenant, kind); `in_flight` and `max_in_flight` the
    Graph requests of each tenant being served at once (with `latency_s` they overlap).

    The sample profiles are shared; what a tenant changes of them is its own: `state_updates`
    (appended after the profile's own `controlStateUpdates`, by PATCH or the control API) and
    `deprecations`. `patches` records every PATCH that reached the handler, in order.
    """

    clients: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CLIENTS))
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=lambda: load_actions())
    faults: deque[GraphFault] = field(default_factory=deque)
    counts: Counter[str] = field(default_factory=Counter)
    page_size: int = DEFAULT_PAGE_SIZE
    page_sizes: dict[str, int] = field(default_factory=dict)  # by tenant, over `page_size`
    points: dict[str, dict[str, float]] = field(default_factory=dict)  # tenant -> control -> score
    latency_s: float = 0.0
    tenant_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    max_in_flight: Counter[str] = field(default_factory=Counter)
    state_updates: dict[ControlKey, list[dict[str, Any]]] = field(default_factory=dict)
    deprecations: dict[ControlKey, bool] = field(default_factory=dict)
    patches: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        self.tokens.clear()
        self.faults.clear()
        self.counts.clear()
        self.actions = load_actions()
        self.page_size, self.latency_s = DEFAULT_PAGE_SIZE, 0.0
        for table in (self.page_sizes, self.points, self.tenant_counts, self.max_in_flight):
            table.clear()
        self.state_updates.clear()
        self.deprecations.clear()
        self.patches.clear()

    def take_fault(self, kind: str, tenant_id: str) -> GraphFault | None:
        """The oldest injected fault meant for this request, removed; None when there is none."""
        fault = next((f for f in self.faults if f.matches(kind, tenant_id)), None)
        if fault is not None:
            self.faults.remove(fault)
        return fault

    def action(self, control_id: str) -> dict[str, Any] | None:
        return next((a for a in self.actions if a["id"] == control_id), None)

    def profile(self, tenant_id: str, action: dict[str, Any]) -> dict[str, Any]:
        """The tenant's copy of a sample profile: its state updates (oldest first) and deprecation."""
        key = (tenant_id, action["id"])
        return {
            **action,
            "azureTenantId": tenant_id,
            "deprecated": self.deprecations.get(key, bool(action.get("deprecated"))),
            "controlStateUpdates": [
                *(action.get("controlStateUpdates") or []),
                *self.state_updates.get(key, []),
            ],
        }

    def profiles(self, tenant_id: str) -> list[dict[str, Any]]:
        return [self.profile(tenant_id, action) for action in self.actions]

    def latest_update(self, tenant_id: str, action: dict[str, Any]) -> dict[str, Any] | None:
        updates = self.profile(tenant_id, action)["controlStateUpdates"]
        return updates[-1] if updates else None

    def append_update(self, tenant_id: str, control_id: str, update: dict[str, Any]) -> None:
        self.state_updates.setdefault((tenant_id, control_id), []).append(update)

    def points_of(self, tenant_id: str) -> dict[str, float]:
        """The tenant's current points per control (the defaults until a test sets one)."""
        if tenant_id not in self.points:
            self.points[tenant_id] = default_scores(self.actions)
        return self.points[tenant_id]

    def expire_tokens(self, tenant_id: str | None = None) -> int:
        expired = 0
        for token in self.tokens.values():
            if tenant_id in (None, token.tenant_id):
                token.expires_at = 0
                expired += 1
        return expired


def load_actions() -> list[dict[str, Any]]:
    data: dict[str, list[dict[str, Any]]] = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    return data["value"]


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"
