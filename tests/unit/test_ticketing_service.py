"""TicketingService with in-memory ports and a fake clock: mapping, idempotency, dedupe by
correlation id, errors. Waits advance the fake clock, so they take no real time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.errors import (
    BadRequest,
    ConnectionNotReady,
    DependencyNotConfigured,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    NotFound,
    ReauthorizationRequired,
    UpstreamRejected,
    UpstreamUnavailable,
    status_for,
)
from shared.identity import Caller, Role
from shared.models import ConnectionStatus, CreateTicket, ImprovementAction, TicketListQuery
from shared.ports import ImprovementActions
from shared.records import Connection, IdempotencyRecord, new_ticket_id
from shared.services.idempotency_claims import idempotency_key_hash, request_fingerprint
from shared.services.ticket_completion import Completion
from shared.services.ticket_content import Requester, ticket_content
from shared.services.ticket_creation import CreateResult
from shared.services.ticket_policy import TicketingPolicy
from shared.services.ticketing import TicketingService
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.tickets import (
    InMemoryClaims,
    InMemoryImprovementActions,
    InMemoryQueue,
    InMemoryServiceNowRecords,
    InMemoryTickets,
    UnconfiguredImprovementActions,
)

TENANT = "11111111-1111-1111-1111-111111111111"
NOW = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
CALLER = Caller(TENANT, "22222222-2222-2222-2222-222222222222", "Wendy Writer", frozenset({Role.READ_WRITE}))
ACTION = ImprovementAction(
    id="AdminMFAV2",
    title="Require MFA for administrative roles",
    remediation="<p>1. Sign in.<br/>2. Create a policy &amp; turn it on.</p>",
    control_category="Identity",
    action_url="https://portal.azure.com/#view/ca",
)


@dataclass
class World:
    servicenow: InMemoryServiceNowRecords = field(default_factory=InMemoryServiceNowRecords)
    tickets: InMemoryTickets = field(default_factory=InMemoryTickets)
    claims: InMemoryClaims = field(default_factory=InMemoryClaims)
    queue: InMemoryQueue = field(init=False)
    connections: InMemoryConnectionRepository = field(default_factory=InMemoryConnectionRepository)
    actions: ImprovementActions = field(default_factory=lambda: InMemoryImprovementActions(ACTION))
    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW))
    policy: TicketingPolicy = field(default_factory=TicketingPolicy)

    def __post_init__(self) -> None:
        self.queue = InMemoryQueue(self.clock)
        self.claims.clock = self.clock
        self.connections.rows[TENANT] = Connection(
            tenant_id=TENANT,
            instance="contoso",
            instance_url="https://contoso.service-now.com",
            client_id="abc",
            status=ConnectionStatus.CONNECTED,
            state_names={"incident": {"1": "Open"}},
            updated_at=NOW,
        )

    @property
    def service(self) -> TicketingService:
        return TicketingService(
            connections=self.connections,
            tickets=self.tickets,
            idempotency=self.claims,
            servicenow=self.servicenow,
            actions=self.actions,
            queue=self.queue,
            policy=self.policy,
            clock=self.clock,
        )

    @property
    def slept(self) -> list[float]:
        return self.clock.slept

    async def create(self, key: str | None = "key-1", **changes: Any) -> CreateResult:
        return await self.service.create(CALLER, request(**changes), key)

    async def work(self) -> Completion:
        """The `ticket-creates` worker's round on the oldest message, once that is visible."""
        message, visible_at = self.queue.take()
        if visible_at is not None and visible_at > self.clock.now():
            self.clock.current = visible_at
        return await self.service.complete(message)

    def all_records(self) -> list[dict[str, str]]:
        return [*self.servicenow.records["incident"], *self.servicenow.records["change_request"]]


def request(**changes: Any) -> CreateTicket:
    body: dict[str, Any] = {
        "type": "incident",
        "name": "Turn on MFA",
        "description": "Admins use passwords only.",
        "priority": 2,
        "dueDate": "2026-06-30",
        "recommendationSource": "user",
        "recommendationCategory": "Identity",
    }
    body.update(changes)
    return CreateTicket.model_validate({k: v for k, v in body.items() if v is not None})


async def test_an_incident_maps_every_field() -> None:
    world = World()
    result = await world.create()
    [record] = world.servicenow.records["incident"]
    ticket = result.ticket
    assert result.created
    assert record["short_description"] == "Turn on MFA"
    assert record["description"] == (
        "Admins use passwords only.\n\n-- Microsoft 365 Security Connector --\nTask: Turn on MFA\n"
        "Recommendation source: User\nRecommendation category: Identity\n"
        f"Requested by: Wendy Writer ({CALLER.user_id})\nConnector ticket id: {ticket.id}"
    )
    assert (record["impact"], record["urgency"]) == ("1", "2")
    assert record["due_date"] == "2026-06-30 23:59:59"
    assert record["correlation_id"] == ticket.id
    assert record["correlation_display"] == "Microsoft 365 Security Connector"
    assert (ticket.number, ticket.sys_id) == (record["number"], record["sys_id"])
    assert ticket.url == (
        f"https://contoso.service-now.com/nav_to.do?uri=incident.do%3Fsys_id%3D{record['sys_id']}"
    )
    assert (ticket.state, ticket.state_name, ticket.priority) == ("1", "Open", 2)
    assert (ticket.due_date, ticket.created_by, ticket.created_at) == (date(2026, 6, 30), "Wendy Writer", NOW)
    assert await world.service.ticket(TENANT, ticket.id) == ticket


@pytest.mark.parametrize("priority", [1, 2, 3, 4, 5])
async def test_impact_and_urgency_give_back_the_requested_priority(priority: int) -> None:
    world = World()
    sent = ticket_content(request(priority=priority), Requester(TENANT, "i", "u"), "t", None).fields
    assert "priority" not in sent
    result = await world.create(priority=priority)
    assert result.ticket.priority == priority
    assert world.servicenow.records["incident"][0]["priority"] == str(priority)


async def test_a_change_request_is_prefixed_and_long_names_are_cut_to_160() -> None:
    world = World()
    await world.create(type="change_request", name="n" * 160)
    [record] = world.servicenow.records["change_request"]
    assert record["short_description"].startswith(
        "Microsoft 365 Security and Configuration Change Request: nnn"
    )
    assert len(record["short_description"]) == 160
    assert record["short_description"].endswith("…")
    assert f"Task: {'n' * 160}" in record["description"]


async def test_secure_score_fills_what_is_missing() -> None:
    world = World()
    result = await world.create(
        name=None, description=None, recommendationCategory=None, improvementActionId="AdminMFAV2"
    )
    ticket = result.ticket
    assert ticket.name == "Require MFA for administrative roles"
    assert ticket.description == "1. Sign in.\n2. Create a policy & turn it on."
    assert ticket.recommendation_category == "Identity"
    description = world.servicenow.records["incident"][0]["description"]
    assert (
        "Improvement action: AdminMFAV2\nImprovement action link: https://portal.azure.com/#view/ca"
        in description
    )

    with pytest.raises(BadRequest) as unknown:
        await world.create(key="k2", improvementActionId="Nope")
    assert unknown.value.fields[0]["field"] == "improvementActionId"
    assert len(world.all_records()) == 1
    assert world.claims.rows.keys() == {(TENANT, idempotency_key_hash("key-1"))}  # nothing claimed for k2


@pytest.mark.parametrize("filled", [False, True])
async def test_an_improvement_action_without_graph_is_503_and_stores_nothing(filled: bool) -> None:
    world = World(actions=UnconfiguredImprovementActions())
    gaps: dict[str, Any] = (
        {} if filled else {"name": None, "description": None, "recommendationCategory": None}
    )
    with pytest.raises(DependencyNotConfigured) as failed:
        await world.create(improvementActionId="AdminMFAV2", **gaps)
    assert (status_for(failed.value), failed.value.code) == (503, "dependency_not_configured")
    assert world.claims.rows == {}
    assert world.tickets.rows == {}
    assert world.all_records() == []
    assert (await world.create(key="k2")).created  # a ticket without an action needs no Graph


async def test_a_repeat_of_a_made_ticket_reads_no_improvement_action() -> None:
    world = World()
    await world.create(improvementActionId="AdminMFAV2")
    world.actions = UnconfiguredImprovementActions()  # Graph gone: the repeat does not need it
    again = await world.create(improvementActionId="AdminMFAV2")
    assert again.created is False


async def test_due_date_is_past_only_once_the_day_is_over_everywhere() -> None:
    world = World(clock=FakeClock(datetime(2026, 6, 2, 11, 0, tzinfo=UTC)))  # still June 1st in UTC-12
    await world.create(dueDate="2026-06-01")
    world.clock.current = datetime(2026, 6, 2, 12, 0, 1, tzinfo=UTC)
    with pytest.raises(BadRequest):
        await world.create(key="k2", dueDate="2026-06-01")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (None, ConnectionNotReady),
        (ConnectionStatus.PENDING_AUTHORIZATION, ConnectionNotReady),
        (ConnectionStatus.REAUTHORIZATION_REQUIRED, ReauthorizationRequired),
    ],
)
async def test_no_ticket_without_a_usable_connection(status: ConnectionStatus | None, error: type) -> None:
    world = World()
    if status is None:
        world.connections.rows.clear()
    else:
        world.connections.rows[TENANT] = world.connections.rows[TENANT].model_copy(update={"status": status})
    with pytest.raises(error):
        await world.create()
    assert world.all_records() == []
    assert world.claims.rows == {}


async def test_a_repeat_returns_the_ticket_and_another_body_is_refused() -> None:
    world = World()
    first = await world.create()
    again = await world.create()
    assert (again.created, again.ticket) == (False, first.ticket)
    with pytest.raises(IdempotencyKeyReused):
        await world.create(priority=4)
    assert world.servicenow.creates == 1


async def test_without_a_key_each_request_is_its_own_ticket() -> None:
    world = World()
    first, second = await world.create(key=None), await world.create(key=None)
    assert first.ticket.id != second.ticket.id
    assert len(world.all_records()) == 2
    with pytest.raises(BadRequest):
        await world.create(key="")


async def test_concurrent_requests_with_one_key_make_one_record() -> None:
    world = World()
    results = await asyncio.gather(*(world.create(key="same") for _ in range(20)))
    assert sorted(r.created for r in results) == [False] * 19 + [True]
    assert len({r.ticket.id for r in results}) == 1
    assert world.servicenow.creates == 1


async def test_an_answer_lost_after_the_create_is_found_by_correlation_id() -> None:
    world = World()
    world.servicenow.outcomes = ["lost"]
    result = await world.create()
    [record] = world.all_records()
    assert record["correlation_id"] == result.ticket.id
    assert world.servicenow.creates == 1
    assert world.servicenow.lookups == [f"correlation_id={result.ticket.id}^ORDERBYsys_created_on"]


async def test_unavailable_creates_are_retried_after_a_look_up_honouring_retry_after() -> None:
    world = World()
    world.servicenow.outcomes = ["rate_limited", "unavailable"]
    world.servicenow.rate_limit_retry_after = 7
    await world.create()
    assert world.servicenow.creates == 3
    assert len(world.all_records()) == 1
    assert world.slept == [7, 1]
    assert len(world.servicenow.lookups) == 2


async def test_giving_up_keeps_the_ticket_id_so_a_retry_cannot_duplicate() -> None:
    world = World()
    world.servicenow.outcomes = ["unavailable", "lost", "unavailable", "unavailable"]
    world.policy = TicketingPolicy(create_attempts=2)
    # Attempt 2's record was made but its answer lost; the final lookup finds it.
    first = await world.create()
    assert len(world.all_records()) == 1

    world.servicenow.outcomes = ["unavailable", "unavailable"]
    with pytest.raises(UpstreamUnavailable):
        await world.create(key="k2")
    claim = world.claims.rows[(TENANT, idempotency_key_hash("k2"))]
    assert (claim.status, claim.lease_until) == ("in_progress", None)
    retried = await world.create(key="k2")
    assert retried.created
    assert retried.ticket.id == claim.ticket_id != first.ticket.id
    assert len(world.all_records()) == 2


async def test_a_long_retry_after_is_passed_on_not_slept() -> None:
    world = World()
    world.servicenow.outcomes = ["rate_limited"]
    world.servicenow.rate_limit_retry_after = 300
    with pytest.raises(UpstreamUnavailable) as failed:
        await world.create()
    assert failed.value.retry_after == 300
    assert world.slept == []


async def test_a_crashed_claim_is_taken_over_after_its_lease_and_finished_from_servicenow() -> None:
    world = World()
    world.servicenow.outcomes = ["lost"]

    # The first request dies after ServiceNow's 201: simulate by failing our own row write.
    async def crash(ticket: Any) -> Any:
        raise RuntimeError("process killed")

    add = world.tickets.add
    world.tickets.add = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await world.create()
    world.tickets.add = add  # type: ignore[method-assign]
    [record] = world.all_records()

    with pytest.raises(IdempotencyKeyInProgress) as in_progress:  # its lease is still running
        await world.create()
    waited = world.clock.now() - NOW
    assert waited >= timedelta(seconds=world.policy.wait_for_claim_s)  # it waited for the claimant first
    assert in_progress.value.retry_after == (world.policy.lease - waited).total_seconds()
    world.clock.current += world.policy.lease
    result = await world.create()
    assert result.created
    assert result.ticket.id == record["correlation_id"]
    assert world.servicenow.creates == 1


async def test_a_rejection_is_502_and_frees_the_key() -> None:
    world = World()
    world.servicenow.outcomes = ["rejected"]
    with pytest.raises(UpstreamRejected) as rejected:
        await world.create()
    assert "Operation Failed" in rejected.value.message
    assert world.claims.rows == {}
    assert (await world.create()).created
    assert len(world.all_records()) == 1


async def test_listing_reading_and_the_summary_use_the_tenants_state_names() -> None:
    world = World()
    ids = [
        (await world.create(key=None, type=t)).ticket.id for t in ("incident", "incident", "change_request")
    ]
    page = await world.service.page(TENANT, TicketListQuery(top=2))
    assert [t.id for t in page.items] == sorted(ids)[:2]
    assert page.continuation_token is not None
    with pytest.raises(NotFound):
        await world.service.ticket("someone-else", ids[0])
    with pytest.raises(NotFound):
        await world.service.ticket(TENANT, "not-a-ticket-id")
    summary = await world.service.summary(TENANT)
    assert summary.incident.total == 2
    assert summary.incident.states[0].model_dump() == {"state": "1", "name": "Open", "count": 2}
    assert summary.change_request.total == 1
    assert [s.name for s in summary.change_request.states][:2] == ["New", "Assess"]


# --- ambiguous creates: ServiceNow may commit one after we looked (its quota is 60 s) --------------


def claim_of(world: World, key: str = "key-1") -> IdempotencyRecord:
    return world.claims.rows[(TENANT, idempotency_key_hash(key))]


async def test_a_create_that_commits_after_the_lookup_is_202_and_the_worker_finds_it() -> None:
    world = World()
    world.servicenow.outcomes = ["late"]  # times out while ServiceNow still works; commits after our lookup
    result = await world.create()
    ticket = result.ticket
    assert (result.created, ticket.status, ticket.number, ticket.sys_id, ticket.url) == (
        True, "creating", "", "", "",
    )  # fmt: skip
    assert (ticket.state, ticket.state_name, ticket.failure_reason) == ("", "", None)
    assert world.tickets.rows[(TENANT, ticket.id)].status == "creating"
    [record] = world.all_records()  # made after the lookup that found nothing
    assert (world.servicenow.creates, len(world.servicenow.lookups), world.slept) == (1, 1, [])
    claim = claim_of(world)
    assert (claim.status, claim.posted_at, claim.lease_until) == (
        "in_progress",
        NOW,
        NOW + timedelta(seconds=75),
    )
    # The message names what is needed to finish, and shows once the settle window is over.
    [message] = world.queue.messages
    assert world.queue.delays == [75]
    assert (message.tenant_id, message.key_hash, message.ticket_id) == (TENANT, claim.key_hash, ticket.id)
    assert (message.table, message.round) == ("incident", 0)
    assert message.fields["correlation_id"] == ticket.id
    assert message.fields == {name: record[name] for name in message.fields}

    world.clock.advance(seconds=30)  # a repeat within the window: the same ticket at once
    again = await world.create()
    assert (again.created, again.ticket) == (False, ticket)
    assert world.clock.now() == NOW + timedelta(seconds=30)  # no wait, no 409
    assert (world.servicenow.creates, len(world.servicenow.lookups)) == (1, 1)

    assert await world.work() == "created"
    done = await world.service.ticket(TENANT, ticket.id)
    assert (done.status, done.number, done.sys_id, done.state) == (
        "created", record["number"], record["sys_id"], "1",
    )  # fmt: skip
    assert done.url.endswith(f"sys_id%3D{record['sys_id']}")
    assert (world.servicenow.creates, len(world.all_records())) == (1, 1)
    assert claim_of(world).status == "completed"
    assert world.queue.sent == []
    repeat = await world.create()
    assert (repeat.created, repeat.ticket) == (False, done)


async def test_the_worker_creates_the_record_when_servicenow_has_none_after_the_window() -> None:
    world = World()
    world.servicenow.outcomes = ["timeout"]  # ambiguous, and in fact nothing was made
    first = await world.create()
    assert first.ticket.status == "creating"
    assert world.all_records() == []
    assert await world.work() == "created"
    [record] = world.all_records()
    assert record["correlation_id"] == first.ticket.id
    assert world.servicenow.creates == 2
    assert len(world.servicenow.lookups) == 2  # after the failure; after the takeover, before the create
    assert world.clock.now() == NOW + world.policy.settle_window
    assert (await world.service.ticket(TENANT, first.ticket.id)).number == record["number"]


async def test_a_repeat_after_the_window_finishes_the_ticket_itself_and_the_message_then_skips() -> None:
    world = World()
    world.servicenow.outcomes = ["timeout"]
    first = await world.create()
    world.clock.current += world.policy.settle_window  # before the worker got to it
    again = await world.create()
    assert (again.created, again.ticket.status, again.ticket.id) == (False, "created", first.ticket.id)
    assert await world.work() == "skipped"
    assert (world.servicenow.creates, len(world.all_records())) == (2, 1)
    assert claim_of(world).status == "completed"


async def test_a_takeover_does_not_create_while_the_claims_last_create_may_still_commit() -> None:
    """A free lease (a crashed request, or one of an older version) does not end the settle window."""
    world = World()
    posted = NOW - timedelta(seconds=20)
    await world.claims.claim(
        IdempotencyRecord(
            tenant_id=TENANT, key_hash=idempotency_key_hash("key-1"), fingerprint=request_fingerprint(request()),
            ticket_id=new_ticket_id(posted), status="in_progress", created_by=CALLER.user_id,
            created_by_name=CALLER.name, created_at=posted, lease_until=None, posted_at=posted,
        )
    )  # fmt: skip
    result = await world.create()
    assert result.ticket.status == "creating"
    assert world.queue.delays == [55]
    assert (world.servicenow.creates, len(world.servicenow.lookups)) == (0, 1)
    assert claim_of(world).lease_until == NOW + timedelta(seconds=55)


async def test_a_short_settle_window_is_waited_out_within_the_request() -> None:
    world = World(policy=TicketingPolicy(settle_window=timedelta(seconds=5)))
    world.servicenow.outcomes = ["timeout"]
    result = await world.create()
    assert result.created
    assert world.slept == [5.0]
    assert (world.servicenow.creates, len(world.servicenow.lookups)) == (2, 2)
    assert len(world.all_records()) == 1


async def test_a_settle_wait_that_would_pass_the_deadline_is_answered_202_not_waited() -> None:
    policy = TicketingPolicy(settle_window=timedelta(seconds=30), max_retry_wait_s=40, create_deadline_s=20)
    world = World(policy=policy)
    world.servicenow.outcomes = ["timeout"]
    result = await world.create()
    assert result.ticket.status == "creating"
    assert world.queue.delays == [30]
    assert world.slept == []
    assert (world.servicenow.creates, len(world.servicenow.lookups)) == (1, 1)


async def test_a_backoff_that_would_pass_the_deadline_gives_up_at_once() -> None:
    world = World(policy=TicketingPolicy(create_deadline_s=5))
    world.servicenow.outcomes = ["rate_limited"]
    world.servicenow.rate_limit_retry_after = 3
    await world.create()  # 3 s fit into the deadline
    assert world.slept == [3]

    world.servicenow.outcomes = ["rate_limited"]
    world.servicenow.rate_limit_retry_after = 6  # within max_retry_wait_s, but past the deadline
    with pytest.raises(UpstreamUnavailable) as failed:
        await world.create(key="k2")
    assert failed.value.retry_after == 6
    assert world.slept == [3]


async def test_a_takeover_keeps_the_ticket_of_the_user_who_asked_first() -> None:
    world = World()
    world.servicenow.outcomes = ["unavailable"] * 3
    with pytest.raises(UpstreamUnavailable):
        await world.create()
    someone_else = Caller(TENANT, "33333333-3333-3333-3333-333333333333", "Sam Second", CALLER.roles)
    result = await world.service.create(someone_else, request(), "key-1")
    assert result.ticket.created_by == "Wendy Writer"
    [record] = world.all_records()
    assert f"Requested by: Wendy Writer ({CALLER.user_id})" in record["description"]


# --- which rejections free the key --------------------------------------------------------------------


async def test_a_refused_lookup_after_an_ambiguous_create_keeps_the_key() -> None:
    world = World()
    world.servicenow.outcomes = ["lost"]  # the record was made, the answer lost
    world.servicenow.lookup_outcomes = ["rejected"]  # and the lookup that would find it is refused
    with pytest.raises(UpstreamRejected):
        await world.create()
    claim = claim_of(world)
    assert (claim.status, claim.posted_at, claim.lease_until) == (
        "in_progress",
        NOW,
        NOW + timedelta(seconds=75),
    )
    world.clock.current += world.policy.settle_window
    result = await world.create()
    assert result.ticket.id == claim.ticket_id
    assert world.servicenow.creates == 1
    assert len(world.all_records()) == 1


async def test_a_refused_lookup_without_an_ambiguous_create_keeps_the_key_and_frees_the_lease() -> None:
    world = World(policy=TicketingPolicy(create_attempts=1))
    world.servicenow.outcomes = ["unavailable"]  # never reached ServiceNow
    with pytest.raises(UpstreamUnavailable):
        await world.create()
    world.servicenow.lookup_outcomes = ["rejected"]
    with pytest.raises(UpstreamRejected):
        await world.create()  # takes over, and its lookup is refused
    claim = claim_of(world)
    assert (claim.status, claim.lease_until, claim.posted_at) == ("in_progress", None, None)
    result = await world.create()
    assert result.ticket.id == claim.ticket_id
    assert len(world.all_records()) == 1


async def test_a_refused_create_after_an_ambiguous_one_keeps_the_key() -> None:
    world = World(policy=TicketingPolicy(settle_window=timedelta(seconds=5)))
    world.servicenow.outcomes = ["timeout", "rejected"]
    with pytest.raises(UpstreamRejected):
        await world.create()
    claim = claim_of(world)
    assert (claim.status, claim.posted_at, claim.lease_until) == ("in_progress", NOW, None)
    result = await world.create()
    assert result.ticket.id == claim.ticket_id
    assert world.servicenow.creates == 3
    assert len(world.all_records()) == 1


# --- the lease right before the POST, and the deadline --------------------------------------------


async def test_a_slow_token_refresh_cannot_carry_a_create_past_a_takeover() -> None:
    world = World()

    async def slow_refresh() -> None:
        # While this request fetched its token, its lease ran out and a retry took over and created.
        world.clock.current += world.policy.lease + timedelta(seconds=1)
        assert (await world.create()).created

    world.servicenow.token_hook = slow_refresh
    with pytest.raises(IdempotencyKeyInProgress):
        await world.create()
    assert world.servicenow.creates == 1
    assert len(world.all_records()) == 1
    assert (await world.create()).created is False


@pytest.mark.parametrize("stuck", ["token", "post"])
async def test_a_create_past_its_deadline_is_503_and_keeps_the_lease(stuck: str) -> None:
    world = World(policy=TicketingPolicy(create_deadline_s=0.05))
    if stuck == "token":
        world.servicenow.token_hook = asyncio.Event().wait  # a token refresh that does not end
    else:
        world.servicenow.outcomes = ["hang"]  # a POST that does not end
    with pytest.raises(UpstreamUnavailable) as failed:
        await asyncio.wait_for(world.create(), 2)
    claim = claim_of(world)
    # A POST cut on the wire may still commit: its window counts from the cut (here NOW). With
    # nothing sent, the lease is what it was.
    held = world.policy.settle_window if stuck == "post" else world.policy.lease
    assert (claim.status, claim.lease_until) == ("in_progress", NOW + held)
    assert failed.value.retry_after == held.total_seconds()
    assert claim.posted_at == NOW  # the POST cut, or the one the new claim reserved
    assert world.servicenow.creates == (1 if stuck == "post" else 0)
    world.clock.current += world.policy.lease
    assert (await world.create()).ticket.id == claim.ticket_id
    assert len(world.all_records()) == 1


async def test_the_settle_window_counts_from_the_failure_not_from_before_the_post() -> None:
    world = World()
    world.servicenow.outcomes = ["late"]

    def waited_for_a_connection() -> None:  # the POST left 19 s after its lease renewal was written
        world.clock.advance(seconds=19)

    world.servicenow.on_the_wire = waited_for_a_connection
    await world.create()
    claim = claim_of(world)
    assert claim.posted_at == NOW + timedelta(seconds=19)
    assert claim.lease_until == NOW + timedelta(seconds=19 + 75)
    assert world.queue.delays == [75]
    assert world.queue.sent[0].visible_at == claim.lease_until
