"""The tenant's Secure Score improvement actions, their points, and the tickets made for them.

What Graph says (the actions, every page, and the latest score's points per control) is kept per
tenant for `cache_ttl`: Secure Score changes about once a day, and Graph allows an app only 150
Secure Score requests a minute per tenant. Requests that miss the cache together share one read
(single flight), and a caller that goes away does not cancel it for the others; a failed read is
not kept. The tickets are read on every request, so a ticket made a moment ago shows at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.action_models import (
    ImprovementActionPage,
    ImprovementActionQuery,
    ImprovementActionTicket,
    ImprovementActionView,
)
from shared.clock import SYSTEM_CLOCK, Clock
from shared.models import ImprovementAction
from shared.ports import ConnectionStore, ImprovementActions, TicketStore
from shared.records import ActionTicket
from shared.services.ticket_content import improvement_action_link
from shared.services.ticket_queries import record_url
from shared.ticket_states import StateLabels, effective_state_names

DEFAULT_CACHE_TTL = timedelta(minutes=5)
MAX_CACHED_TENANTS = 1000  # a few hundred actions each: a few MB at most per worker


@dataclass(frozen=True)
class SecureScoreSnapshot:
    """What Graph said about one tenant, and until when we believe it."""

    actions: tuple[ImprovementAction, ...]
    scores: Mapping[str, float]
    expires_at: datetime


class ImprovementActionsService:
    def __init__(
        self,
        *,
        actions: ImprovementActions,
        tickets: TicketStore,
        connections: ConnectionStore,
        clock: Clock = SYSTEM_CLOCK,
        cache_ttl: timedelta = DEFAULT_CACHE_TTL,
        max_cached_tenants: int = MAX_CACHED_TENANTS,
    ) -> None:
        self._actions = actions
        self._tickets = tickets
        self._connections = connections
        self._clock = clock
        self._ttl = cache_ttl
        self._max_cached = max_cached_tenants
        self._cache: dict[str, SecureScoreSnapshot] = {}  # oldest read first
        self._loading: dict[str, asyncio.Task[SecureScoreSnapshot]] = {}

    async def page(self, tenant_id: str, query: ImprovementActionQuery) -> ImprovementActionPage:
        """Every improvement action of the tenant in Graph's order, filtered by `query`.

        Raises:
            DependencyNotConfigured: Graph is not configured.
            UpstreamUnavailable: Graph (or storage) did not answer, or asked us to wait.
        """
        snapshot, by_action = await asyncio.gather(
            self._snapshot(tenant_id), self._tickets.by_improvement_action(tenant_id)
        )
        names = await self._state_names(tenant_id) if by_action else effective_state_names({})
        items = [
            _view(action, snapshot.scores.get(action.id), by_action.get(action.id, ()), names)
            for action in snapshot.actions
        ]
        return ImprovementActionPage(items=[item for item in items if _wanted(item, query)])

    async def _state_names(self, tenant_id: str) -> StateLabels:
        connection = await self._connections.get(tenant_id)
        if connection is None:
            return effective_state_names({})
        return effective_state_names(connection.state_names, connection.instance_state_labels)

    # --- the cache ----------------------------------------------------------------------------

    async def _snapshot(self, tenant_id: str) -> SecureScoreSnapshot:
        cached = self._cache.get(tenant_id)
        if cached is not None and cached.expires_at > self._clock.now():
            return cached
        loading = self._loading.get(tenant_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(tenant_id))
            self._loading[tenant_id] = loading
            loading.add_done_callback(functools.partial(self._loaded, tenant_id))
        return await asyncio.shield(loading)

    def _loaded(self, tenant_id: str, task: asyncio.Task[SecureScoreSnapshot]) -> None:
        if self._loading.get(tenant_id) is task:
            del self._loading[tenant_id]

    async def _load(self, tenant_id: str) -> SecureScoreSnapshot:
        actions, scores = await asyncio.gather(
            self._actions.list_improvement_actions(tenant_id), self._actions.control_scores(tenant_id)
        )
        snapshot = SecureScoreSnapshot(tuple(actions), dict(scores), self._clock.now() + self._ttl)
        if self._ttl > timedelta(0):
            self._cache.pop(tenant_id, None)
            self._cache[tenant_id] = snapshot
            while len(self._cache) > self._max_cached:
                del self._cache[next(iter(self._cache))]
        return snapshot


def _view(
    action: ImprovementAction, score: float | None, tickets: Sequence[ActionTicket], names: StateLabels
) -> ImprovementActionView:
    return ImprovementActionView(
        id=action.id,
        title=action.title,
        category=action.control_category,
        max_score=action.max_score,
        current_score=score,
        action_url=improvement_action_link(action.id, action),
        deprecated=action.deprecated,
        tickets=[_ticket(ticket, names) for ticket in tickets],
    )


def _ticket(ticket: ActionTicket, names: StateLabels) -> ImprovementActionTicket:
    return ImprovementActionTicket(
        id=ticket.ticket_id,
        type=ticket.type,
        number=ticket.number,
        state=ticket.state,
        state_name=names[ticket.type].get(ticket.state, ticket.state),
        # No record yet (creating) or none ever (failed): nothing to link to.
        url=record_url(ticket.instance_url, ticket.type, ticket.sys_id) if ticket.sys_id else "",
        status=ticket.status,
        deleted_in_servicenow=ticket.deleted,
    )


def _wanted(item: ImprovementActionView, query: ImprovementActionQuery) -> bool:
    if query.category is not None and item.category != query.category:
        return False
    # A failed ticket will never have a record: the action still needs one.
    has_ticket = any(ticket.status != "failed" for ticket in item.tickets)
    return query.has_ticket is None or has_ticket == query.has_ticket
