"""In-memory implementations of the ticket ports: the `tickets` and `idempotency` tables, the
`ticket-creates` queue, a scriptable ServiceNow Table API, and Secure Score's improvement actions
(with and without Graph).

Same contracts as the real adapters: every write hands out a new ETag, `claim`/`add` refuse an
existing key, `replace`/`release` refuse a stale ETag (`PreconditionFailed`). `InMemoryTickets`
is the whole `TicketStore`, the one fake of the `tickets` table (the sync's tests add only
bookkeeping to it), and of its timeline events (`TicketEvents`, `NoteEvents`, `PushedStates`):
each write records its event as the real store does, by the same identity (a retried write is
the same event), and `apply_pushed` decides with `push_applies`.
`InMemoryServiceNowRecords` keeps the records it made and plays scripted outcomes for the next
creates. None subclasses an adapter; `_conforms` has mypy check each against its port.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.clock import Clock
from shared.errors import (
    DependencyNotConfigured,
    NotFound,
    PreconditionFailed,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.models import TICKET_CREATE_QUEUE, ImprovementAction, PendingCreate, TicketType
from shared.observability import current_invocation_id
from shared.ports import (
    IdempotencyClaims,
    ImprovementActions,
    MessageQueue,
    ServiceNowRecords,
    TicketStore,
)
from shared.records import (
    ActionTicket,
    Connection,
    IdempotencyRecord,
    StateChangeResult,
    Ticket,
    TicketStateChange,
    TicketSyncEntry,
    with_created_event,
)
from shared.remediation_models import FLAG_FIELDS, RemediationFlag, TicketCounts
from shared.timeline_models import NoteEvent, PushedState, RowFacts, StoredEvent, glide_instant, push_applies
from shared.timeline_ports import NoteEvents, PushedStates, TicketEvents

_etags = (f'W/"t{n}"' for n in itertools.count(1))
_MATRIX = {(i, u): min(5, i + u - 1) for i in (1, 2, 3) for u in (1, 2, 3)}  # ServiceNow's default


class InMemoryTickets:
    """Rows by (tenant id, ticket id)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.rows: dict[tuple[str, str], Ticket] = {}
        self.action_reads = 0  # calls of by_improvement_action
        self.event_rows: dict[tuple[str, str, str], StoredEvent] = {}  # (tenant, ticket, identity)
        self.clock = clock

    def put(self, ticket: Ticket) -> Ticket:
        """Store `ticket` unconditionally with a new ETag, as a test sets up a row directly."""
        key = (ticket.tenant_id, ticket.ticket_id)
        self.rows[key] = ticket.model_copy(update={"etag": next(_etags)})
        return self.rows[key]

    async def add(self, ticket: Ticket) -> Ticket:
        if (ticket.tenant_id, ticket.ticket_id) in self.rows:
            raise PreconditionFailed()
        return self.put(with_created_event(ticket, current_invocation_id()))

    async def replace(self, ticket: Ticket) -> Ticket:
        current = self.rows.get((ticket.tenant_id, ticket.ticket_id))
        if current is None or current.etag != ticket.etag:
            raise PreconditionFailed()
        return self.put(with_created_event(ticket, None))

    async def get(self, tenant_id: str, ticket_id: str) -> Ticket | None:
        return self.rows.get((tenant_id, ticket_id))

    async def page(
        self,
        tenant_id: str,
        *,
        type: TicketType | None = None,
        state: str | None = None,
        flag: RemediationFlag | None = None,
        top: int = 50,
        continuation_token: str | None = None,
    ) -> tuple[list[Ticket], str | None]:
        rows = sorted(
            (t for (tenant, _), t in self.rows.items() if tenant == tenant_id),
            key=lambda t: t.ticket_id,
        )
        rows = [
            t
            for t in rows
            if (type is None or t.type == type)
            and (state is None or t.state == state)
            and (flag is None or getattr(t, FLAG_FIELDS[flag]))
        ]
        start = int(continuation_token or 0)
        following = str(start + top) if start + top < len(rows) else None
        return rows[start : start + top], following

    async def count_by_state(self, tenant_id: str) -> TicketCounts:
        states: dict[tuple[str, str], int] = {}
        flags: dict[tuple[str, RemediationFlag], int] = {}
        for (tenant, _), ticket in self.rows.items():
            if tenant == tenant_id:
                states[(ticket.type, ticket.state)] = states.get((ticket.type, ticket.state), 0) + 1
                for flag, name in FLAG_FIELDS.items():
                    if getattr(ticket, name):
                        flags[(ticket.type, flag)] = flags.get((ticket.type, flag), 0) + 1
        return TicketCounts(states=states, flags=flags)

    async def sync_index(self, tenant_id: str) -> dict[str, TicketSyncEntry]:
        return {
            ticket_id: TicketSyncEntry(
                ticket_id=ticket_id,
                type=ticket.type,
                sys_id=ticket.sys_id,
                state=ticket.state,
                created_at=ticket.created_at,
                deleted=ticket.deleted_in_servicenow_at is not None,
            )
            for (tenant, ticket_id), ticket in self.rows.items()
            if tenant == tenant_id
        }

    async def apply_state_changes(
        self, tenant_id: str, changes: Sequence[TicketStateChange]
    ) -> StateChangeResult:
        latest = {change.ticket_id: change for change in changes}  # the last word on each ticket
        missing = [ticket_id for ticket_id in latest if (tenant_id, ticket_id) not in self.rows]
        for ticket_id, change in latest.items():
            if ticket_id not in missing:
                self._merge_state(tenant_id, change)
        return StateChangeResult(applied=len(latest) - len(missing), missing=tuple(missing))

    async def merge_states(self, tenant_id: str, changes: Sequence[TicketStateChange]) -> str | None:
        latest = {change.ticket_id: change for change in changes}
        assert len(latest) <= 50, "a transaction holds at most 100 operations: 50 rows with their events"
        missing = [ticket_id for ticket_id in latest if (tenant_id, ticket_id) not in self.rows]
        if missing:
            return missing[0]  # the transaction fails whole: nothing written
        for change in latest.values():
            self._merge_state(tenant_id, change)
        return None

    async def mark_deleted(self, tenant_id: str, ticket_ids: Sequence[str], at: datetime) -> int:
        for ticket_id in ticket_ids:
            self._merge(tenant_id, ticket_id, {"deleted_in_servicenow_at": at})
            self._event(tenant_id, "d", StoredEvent(ticket_id, "deleted", at))
        return len(ticket_ids)

    async def by_improvement_action(self, tenant_id: str) -> dict[str, list[ActionTicket]]:
        self.action_reads += 1
        found: dict[str, list[ActionTicket]] = {}
        for (tenant, ticket_id), t in sorted(self.rows.items()):
            if tenant == tenant_id and t.improvement_action_id:
                found.setdefault(t.improvement_action_id, []).append(
                    ActionTicket(
                        ticket_id,
                        t.type,
                        t.number,
                        t.sys_id,
                        t.instance_url,
                        t.state,
                        t.status,
                        deleted=t.deleted_in_servicenow_at is not None,
                    )
                )
        return found

    def _merge(self, tenant_id: str, ticket_id: str, update: dict[str, Any]) -> None:
        key = (tenant_id, ticket_id)
        self.rows[key] = self.rows[key].model_copy(update={**update, "etag": next(_etags)})

    # --- the timeline (`shared.timeline_ports`) ---

    async def events(self, tenant_id: str, ticket_id: str, *, limit: int) -> tuple[list[StoredEvent], bool]:
        mine = [
            e
            for (tenant, ticket, _), e in self.event_rows.items()
            if (tenant, ticket) == (tenant_id, ticket_id)
        ]
        mine.sort(key=lambda e: e.at, reverse=True)
        return mine[:limit], len(mine) > limit

    async def record_note(self, tenant_id: str, ticket_id: str, note: NoteEvent) -> None:
        event = StoredEvent(ticket_id, "note", note.at, note_kind=note.kind, author=note.author)
        self._event(tenant_id, f"n{note.key}", event)

    async def apply_pushed(self, tenant_id: str, changes: Sequence[PushedState]) -> int:
        newest: dict[str, PushedState] = {}
        for change in changes:
            if change.ticket_id not in newest or change.mod_count > newest[change.ticket_id].mod_count:
                newest[change.ticket_id] = change
        written = 0
        for change in newest.values():
            row = self.rows.get((tenant_id, change.ticket_id))
            facts = (
                None if row is None else RowFacts(row.status, row.type, row.sys_id, row.servicenow_mod_count)
            )
            if not push_applies(facts, change):
                continue
            now = self.clock.now() if self.clock is not None else datetime.now(UTC)
            at = glide_instant(change.updated) or now
            update = {"state": change.state, "state_updated_at": at, "servicenow_updated_on": change.updated}
            self._merge(tenant_id, change.ticket_id, {**update, "servicenow_mod_count": change.mod_count})
            self._state_event(
                tenant_id, change.ticket_id, change.state, at, change.updated, change.mod_count, push=now
            )
            written += 1
        return written

    def _merge_state(self, tenant_id: str, change: TicketStateChange) -> None:
        update = {
            "state": change.state,
            "state_updated_at": change.state_updated_at,
            "servicenow_updated_on": change.servicenow_updated_on,
        }
        if change.mod_count is not None:
            update["servicenow_mod_count"] = change.mod_count
        self._merge(tenant_id, change.ticket_id, update)
        if change.servicenow_updated_on:
            seen = change.seen_at or datetime.now(UTC)
            updated, count = change.servicenow_updated_on, change.mod_count
            self._state_event(
                tenant_id, change.ticket_id, change.state, change.state_updated_at, updated, count, poll=seen
            )

    def _state_event(
        self,
        tenant_id: str,
        ticket_id: str,
        state: str,
        at: datetime,
        updated: str,
        mod_count: int | None,
        *,
        poll: datetime | None = None,
        push: datetime | None = None,
    ) -> None:
        identity = f"s{updated}~{mod_count}"
        held = self.event_rows.get((tenant_id, ticket_id, identity))
        event = StoredEvent(
            ticket_id,
            "state",
            at,
            state=state,
            servicenow_updated_on=updated,
            mod_count=mod_count,
            seen_by_poll_at=poll or (held.seen_by_poll_at if held else None),
            seen_by_push_at=push or (held.seen_by_push_at if held else None),
        )
        self._event(tenant_id, identity, event)

    def _event(self, tenant_id: str, identity: str, event: StoredEvent) -> None:
        self.event_rows[(tenant_id, event.ticket_id, identity)] = event


class InMemoryClaims:
    """`written` keeps when each claim was last written (Table Storage's `Timestamp`), by `clock`;
    `calls` the name of every request made of the table, in order."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.rows: dict[tuple[str, str], IdempotencyRecord] = {}
        self.written: dict[tuple[str, str], datetime] = {}
        self.clock = clock
        self.calls: list[str] = []

    def _store(self, key: tuple[str, str], record: IdempotencyRecord) -> IdempotencyRecord:
        self.rows[key] = record.model_copy(update={"etag": next(_etags)})
        self.written[key] = self.clock.now() if self.clock is not None else datetime.now(UTC)
        return self.rows[key]

    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord:
        key = (record.tenant_id, record.key_hash)
        self.calls.append("claim")
        await asyncio.sleep(0)  # let concurrent requests interleave, as real I/O would
        if key in self.rows:
            raise PreconditionFailed()
        return self._store(key, record)

    async def get(self, tenant_id: str, key_hash: str) -> IdempotencyRecord | None:
        self.calls.append("get")
        await asyncio.sleep(0)
        return self.rows.get((tenant_id, key_hash))

    async def replace(self, record: IdempotencyRecord) -> IdempotencyRecord:
        key = (record.tenant_id, record.key_hash)
        self.calls.append("replace")
        current = self.rows.get(key)
        if current is None or current.etag != record.etag:
            raise PreconditionFailed()
        return self._store(key, record)

    async def release(self, record: IdempotencyRecord) -> None:
        key = (record.tenant_id, record.key_hash)
        self.calls.append("release")
        current = self.rows.get(key)
        if current is not None and current.etag != record.etag:
            raise PreconditionFailed()
        self.rows.pop(key, None)

    async def delete_expired(self, before: datetime, *, limit: int = 1000) -> int:
        expired = [
            key
            for key, claim in self.rows.items()
            if claim.created_at < before and (claim.status == "completed" or not claim.deferred)
        ][: max(0, limit)]
        for key in expired:
            del self.rows[key]
        return len(expired)

    async def stale_in_progress(
        self, *, written_before: datetime, created_after: datetime, limit: int
    ) -> list[IdempotencyRecord]:
        return [
            claim
            for key, claim in sorted(self.rows.items())
            if claim.status == "in_progress"
            and claim.deferred
            and self.written.get(key, datetime.min.replace(tzinfo=UTC)) < written_before
            and claim.created_at > created_after
        ][: max(0, limit)]


@dataclass(frozen=True)
class Sent:
    body: str
    delay_s: int
    visible_at: datetime | None  # when the message shows, by the queue's clock (if it has one)


class InMemoryQueue:
    """The `ticket-creates` queue: what was sent, with its delay; `take` receives the oldest."""

    name = TICKET_CREATE_QUEUE

    def __init__(self, clock: Clock | None = None) -> None:
        self.sent: list[Sent] = []
        self.fail_sends = False
        self._clock = clock

    async def send(self, body: str, *, delay_s: int = 0) -> None:
        if self.fail_sends:
            raise UpstreamUnavailable("Queue Storage is unavailable (send to ticket-creates).", retry_after=5)
        visible_at = self._clock.now() + timedelta(seconds=delay_s) if self._clock is not None else None
        self.sent.append(Sent(body, delay_s, visible_at))

    @property
    def messages(self) -> list[PendingCreate]:
        return [PendingCreate.model_validate_json(sent.body) for sent in self.sent]

    @property
    def delays(self) -> list[int]:
        return [sent.delay_s for sent in self.sent]

    def take(self) -> tuple[PendingCreate, datetime | None]:
        """The oldest message, removed (as the worker receives it), and when it became visible."""
        sent = self.sent.pop(0)
        return PendingCreate.model_validate_json(sent.body), sent.visible_at


Outcome = Literal[
    "ok", "lost", "late", "timeout", "hang", "made_then_hang", "unavailable", "rejected", "rate_limited"
]
LookupOutcome = Literal["ok", "rejected", "unavailable"]


@dataclass
class InMemoryServiceNowRecords:
    """ServiceNow's Table API over records kept by table. `outcomes` scripts the next creates (then "ok"):

    - "lost": the record is made, then the answer is lost (ambiguous UpstreamUnavailable) — a 201
      we never saw;
    - "late": ambiguous UpstreamUnavailable while ServiceNow is still working: the record is made
      only after the next lookup (which therefore finds nothing) — a transaction that commits late;
    - "timeout": ambiguous UpstreamUnavailable, and nothing is ever made;
    - "hang": the POST never returns (until cancelled), and nothing is made;
    - "made_then_hang": the record is made, and the POST never returns (until cancelled);
    - "unavailable": nothing is made, and certainly not (a connect error: not ambiguous, retry_after 1);
    - "rate_limited": a 429, nothing is made (not ambiguous, `rate_limit_retry_after`, hinted);
    - "rejected": ServiceNow refuses the record (UpstreamRejected).

    `lookup_outcomes` scripts the next `find_one` lookups the same way (then "ok"). Like `ServiceNowTables`,
    `create` gets the token (`token_hook`, one-shot, stands for a slow refresh), then awaits
    `before_post`, then sends; `creates` counts the POSTs sent.
    """

    records: dict[str, list[dict[str, str]]] = field(
        default_factory=lambda: {"incident": [], "change_request": []}
    )
    outcomes: list[Outcome] = field(default_factory=list)
    lookup_outcomes: list[LookupOutcome] = field(default_factory=list)
    rate_limit_retry_after: int = 1
    creates: int = 0
    lookups: list[str] = field(default_factory=list)
    token_hook: Callable[[], Awaitable[object]] | None = None
    on_the_wire: Callable[[], None] | None = None  # runs after before_post: time the POST spends waiting
    pending: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # "late" creates

    async def create(
        self,
        connection: Connection,
        table: str,
        fields: dict[str, str],
        *,
        before_post: Callable[[], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        if self.token_hook is not None:
            hook, self.token_hook = self.token_hook, None
            await hook()
        if before_post is not None:
            await before_post()
        if self.on_the_wire is not None:
            self.on_the_wire()
        self.creates += 1
        await asyncio.sleep(0)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "rejected":
            raise UpstreamRejected(
                "ServiceNow refused to create a incident record (HTTP 403): Operation Failed."
            )
        if outcome == "unavailable":
            raise UpstreamUnavailable("ServiceNow did not answer.", retry_after=1)
        if outcome == "rate_limited":
            raise UpstreamUnavailable("rate limited", retry_after=self.rate_limit_retry_after, hinted=True)
        if outcome == "hang":
            await asyncio.Event().wait()
        if outcome == "made_then_hang":
            self._insert(table, fields)
            await asyncio.Event().wait()
        if outcome == "timeout":
            raise UpstreamUnavailable("ServiceNow did not answer (create).", retry_after=1, ambiguous=True)
        if outcome == "late":
            self.pending.append((table, fields))
            raise UpstreamUnavailable("ServiceNow did not answer (create).", retry_after=1, ambiguous=True)
        record = self._insert(table, fields)
        if outcome == "lost":
            raise UpstreamUnavailable("ServiceNow did not answer (create).", retry_after=1, ambiguous=True)
        return dict(record)

    async def find_one(
        self, connection: Connection, table: str, query: str, fields: list[str]
    ) -> dict[str, Any] | None:
        self.lookups.append(query)
        assert re.fullmatch(r"correlation_id=([0-9a-f]+)\^ORDERBYsys_created_on", query), query
        found = self._matching(table, query)
        self.commit_late()  # a transaction still running commits after this lookup
        outcome = self.lookup_outcomes.pop(0) if self.lookup_outcomes else "ok"
        if outcome == "rejected":
            raise UpstreamRejected("ServiceNow refused to query incident (HTTP 403): Operation Failed.")
        if outcome == "unavailable":
            raise UpstreamUnavailable("ServiceNow did not answer (query incident).", retry_after=1)
        return _only(found[0], fields) if found else None

    async def query(
        self, connection: Connection, table: str, query: str, fields: list[str], *, page_size: int = 1000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        rows = self._matching(table, query)
        for start in range(0, len(rows), page_size):
            yield [_only(row, fields) for row in rows[start : start + page_size]]

    async def page(
        self, connection: Connection, table: str, query: str, fields: list[str], *, limit: int = 1000
    ) -> list[dict[str, Any]]:
        return [_only(row, fields) for row in self._matching(table, query)[:limit]]

    def _matching(self, table: str, query: str) -> list[dict[str, str]]:
        """The records an encoded query of `field=value` clauses selects. Records keep their
        creation order, so every `ORDERBY` reads as `sys_created_on`."""
        rows = list(self.records[table])
        for clause in query.split("^"):
            if clause.startswith("ORDERBY"):
                continue
            name, equals, value = clause.partition("=")
            assert equals, f"unexpected clause {clause!r}"
            rows = [row for row in rows if row.get(name) == value]
        return rows

    def commit_late(self) -> None:
        """Let every create still running in ServiceNow ("late") commit its record now."""
        while self.pending:
            table, fields = self.pending.pop(0)
            self._insert(table, fields)

    def _insert(self, table: str, fields: dict[str, str]) -> dict[str, str]:
        prefix, state = ("INC", "1") if table == "incident" else ("CHG", "-5")
        number = f"{prefix}{10001 + len(self.records[table]):07d}"
        priority = _MATRIX[(int(fields["impact"]), int(fields["urgency"]))]
        record = {
            **fields,
            "sys_id": secrets.token_hex(16),
            "number": number,
            "state": state,
            "priority": str(priority),
            "sys_updated_on": "2026-06-01 10:00:00",
        }
        self.records[table].append(record)
        return record


class InMemoryImprovementActions:
    """Secure Score's improvement actions of every tenant; `calls` counts the reads of one action.

    `scores` are the latest Secure Score's points by control name; `list_calls` and `score_calls`
    count the other reads. While `gate` is set and not open, listings wait for it (concurrent
    readers pile up); `failure`, when set, is raised by the next listing instead.
    """

    def __init__(self, *actions: ImprovementAction, scores: dict[str, float] | None = None) -> None:
        self.actions = {action.id: action for action in actions}
        self.scores = dict(scores or {})
        self.calls = 0
        self.list_calls = 0
        self.score_calls = 0
        self.gate: asyncio.Event | None = None
        self.failure: Exception | None = None

    async def get_improvement_action(self, tenant_id: str, action_id: str) -> ImprovementAction:
        self.calls += 1
        if action_id not in self.actions:
            raise NotFound(f"Improvement action {action_id} was not found in Microsoft Secure Score.")
        return self.actions[action_id]

    async def list_improvement_actions(self, tenant_id: str) -> list[ImprovementAction]:
        self.list_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        return list(self.actions.values())

    async def control_scores(self, tenant_id: str) -> dict[str, float]:
        self.score_calls += 1
        await asyncio.sleep(0)
        return dict(self.scores)


class UnconfiguredImprovementActions:
    """What the app uses when Graph is not configured: every read is 503 `dependency_not_configured`."""

    async def get_improvement_action(self, tenant_id: str, action_id: str) -> ImprovementAction:
        raise DependencyNotConfigured(
            "Microsoft Graph is not configured: set GRAPH_CLIENT_ID and GRAPH_CLIENT_SECRET."
        )

    async def list_improvement_actions(self, tenant_id: str) -> list[ImprovementAction]:
        return [await self.get_improvement_action(tenant_id, "")]

    async def control_scores(self, tenant_id: str) -> dict[str, float]:
        await self.get_improvement_action(tenant_id, "")
        return {}


def _only(record: dict[str, str], fields: list[str]) -> dict[str, Any]:
    return {name: record.get(name, "") for name in fields}


def _conforms(
    tickets: InMemoryTickets,
    claims: InMemoryClaims,
    queue: InMemoryQueue,
    servicenow: InMemoryServiceNowRecords,
    actions: InMemoryImprovementActions,
    no_graph: UnconfiguredImprovementActions,
) -> None:
    # mypy checks here that the fakes implement the ports.
    _tickets: TicketStore = tickets
    _events: TicketEvents = tickets
    _notes: NoteEvents = tickets
    _pushed: PushedStates = tickets
    _queue: MessageQueue = queue
    _claims: IdempotencyClaims = claims
    _servicenow: ServiceNowRecords = servicenow
    _actions: ImprovementActions = actions
    _no_graph: ImprovementActions = no_graph
