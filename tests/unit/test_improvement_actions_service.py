"""ImprovementActionsService on in-memory ports: the ticket join, scores, filters, and the per-tenant
cache (hit, miss, expiry by the fake clock, single flight, failures not kept)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from functions._http import validate
from shared.action_models import ImprovementActionQuery
from shared.errors import BadRequest, DependencyNotConfigured, UpstreamUnavailable
from shared.models import ConnectionStatus, ImprovementAction
from shared.records import Connection, Ticket, new_ticket_id
from shared.services.improvement_actions import ImprovementActionsService
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.tickets import InMemoryImprovementActions, InMemoryTickets, UnconfiguredImprovementActions

TENANT = "11111111-1111-1111-1111-111111111111"
OTHER = "33333333-3333-3333-3333-333333333333"
NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
INSTANCE = "https://contoso.service-now.com"
MFA = ImprovementAction(
    id="AdminMFAV2",
    title="Require MFA for administrative roles",
    control_category="Identity",
    action_url="https://portal.azure.com/#view/ca",
    max_score=10.0,
)
DLP = ImprovementAction(id="DLPEnabled", title="Turn on DLP", control_category="Data", max_score=10.0)
AV = ImprovementAction(
    id="scid_2000", title="Turn on Defender Antivirus", control_category="Devices", max_score=9.0
)
OLD = ImprovementAction(id="PWAgePolicyNew", title="Old password policy", deprecated=True, max_score=8.0)
ALL = ImprovementActionQuery()


class World:
    def __init__(self, *, ttl: timedelta = timedelta(minutes=5), **options: Any) -> None:
        self.clock = FakeClock(NOW)
        self.graph = InMemoryImprovementActions(
            MFA, DLP, AV, OLD, scores={"AdminMFAV2": 5.0, "DLPEnabled": 10.0, "scid_2000": 0.0}
        )
        self.tickets = InMemoryTickets()
        self.connections = InMemoryConnectionRepository()
        self.service = ImprovementActionsService(
            actions=self.graph,
            tickets=self.tickets,
            connections=self.connections,
            clock=self.clock,
            cache_ttl=ttl,
            **options,
        )

    def connect(self, **state_names: dict[str, str]) -> None:
        self.connections.rows[TENANT] = Connection(
            tenant_id=TENANT,
            instance="contoso",
            instance_url=INSTANCE,
            client_id="abc",
            status=ConnectionStatus.CONNECTED,
            state_names=state_names,
            updated_at=NOW,
        )

    def ticket(self, action_id: str | None, *, tenant: str = TENANT, age_s: int = 0, **fields: Any) -> Ticket:
        created = self.clock.now() - timedelta(seconds=age_s)
        values: dict[str, Any] = {
            "tenant_id": tenant,
            "ticket_id": new_ticket_id(created),
            "type": "incident",
            "sys_id": "a" * 32,
            "number": "INC0010001",
            "instance_url": INSTANCE,
            "name": "Require MFA",
            "description": "",
            "priority": 2,
            "due_date": date(2030, 2, 1),
            "recommendation_source": "microsoft",
            "recommendation_category": "Identity",
            "improvement_action_id": action_id,
            "created_by": "u",
            "created_by_name": "Wendy",
            "created_at": created,
            "state": "1",
            "state_updated_at": created,
            **fields,
        }
        return self.tickets.put(Ticket(**values))

    async def page(self, tenant: str = TENANT, **query: Any) -> dict[str, dict[str, Any]]:
        """The answer as the portal reads it, by action id."""
        answer = await self.service.page(tenant, validate(ImprovementActionQuery, query))
        items = answer.model_dump(mode="json", by_alias=True)["items"]
        return {item["id"]: item for item in items}


# --- what an action shows ------------------------------------------------------------------------


async def test_each_action_shows_its_scores_link_and_the_tickets_made_for_it() -> None:
    world = World()
    world.connect(incident={"1": "Open"})
    older = world.ticket("AdminMFAV2", age_s=60, number="INC0010001")
    newer = world.ticket("AdminMFAV2", type="change_request", number="CHG0030001", state="-5")
    world.ticket(None, number="INC0010009")  # no action: on no action's list
    world.ticket("AdminMFAV2", tenant=OTHER, number="INC0099999")  # another tenant's

    items = await world.page()

    assert list(items) == ["AdminMFAV2", "DLPEnabled", "scid_2000", "PWAgePolicyNew"]  # Graph's order
    mfa = items["AdminMFAV2"]
    assert {k: v for k, v in mfa.items() if k != "tickets"} == {
        "id": "AdminMFAV2",
        "title": "Require MFA for administrative roles",
        "category": "Identity",
        "maxScore": 10.0,
        "currentScore": 5.0,
        "actionUrl": "https://portal.azure.com/#view/ca",
        "deprecated": False,
    }
    assert mfa["tickets"] == [
        {
            "id": newer.ticket_id,
            "type": "change_request",
            "number": "CHG0030001",
            "state": "-5",
            "stateName": "New",
            "url": f"{INSTANCE}/nav_to.do?uri=change_request.do%3Fsys_id%3D{'a' * 32}",
            "status": "created",
            "deletedInServicenow": False,
        },
        {
            "id": older.ticket_id,
            "type": "incident",
            "number": "INC0010001",
            "state": "1",
            "stateName": "Open",  # the tenant's own name for the state
            "url": f"{INSTANCE}/nav_to.do?uri=incident.do%3Fsys_id%3D{'a' * 32}",
            "status": "created",
            "deletedInServicenow": False,
        },
    ]
    assert items["DLPEnabled"]["tickets"] == []
    # Graph gave no link: the Secure Score page of the action, as the ticket's description has it.
    assert items["DLPEnabled"]["actionUrl"].startswith("https://security.microsoft.com/securescore")
    assert items["DLPEnabled"]["actionUrl"].endswith("actionId=DLPEnabled")
    # Secure Score does not score every profile (a deprecated one, here).
    assert (items["PWAgePolicyNew"]["currentScore"], items["PWAgePolicyNew"]["deprecated"]) == (None, True)
    assert items["scid_2000"]["category"] == "Devices"


async def test_tickets_without_a_record_show_without_a_link_and_without_a_connection() -> None:
    world = World()  # the tenant removed its connection: tickets made before still show
    creating = world.ticket("DLPEnabled", status="creating", sys_id="", number="", state="")
    world.ticket("DLPEnabled", age_s=5, status="failed", sys_id="", number="", state="", failure_reason="x")

    [first, second] = (await world.page())["DLPEnabled"]["tickets"]

    assert first == {
        "id": creating.ticket_id,
        "type": "incident",
        "number": "",
        "state": "",
        "stateName": "",
        "url": "",
        "status": "creating",
        "deletedInServicenow": False,
    }
    assert (second["status"], second["url"]) == ("failed", "")


async def test_the_tenant_connection_is_not_read_when_no_action_has_a_ticket() -> None:
    world = World()
    world.connect()
    reads: list[str] = []
    original = world.connections.get

    async def counted(tenant_id: str) -> Connection | None:
        reads.append(tenant_id)
        return await original(tenant_id)

    world.connections.get = counted  # type: ignore[method-assign]
    await world.page()
    assert reads == []
    world.ticket("AdminMFAV2")
    await world.page()
    assert reads == [TENANT]


# --- filters -------------------------------------------------------------------------------------


async def test_category_and_has_ticket_filter_the_actions() -> None:
    world = World()
    world.ticket("AdminMFAV2")
    world.ticket("DLPEnabled", status="failed", sys_id="", number="", state="")  # no record, ever
    world.ticket("scid_2000", status="creating", sys_id="", number="", state="")

    assert list(await world.page(category="Identity")) == ["AdminMFAV2"]
    assert list(await world.page(category="Devices")) == ["scid_2000"]
    assert list(await world.page(hasTicket="true")) == ["AdminMFAV2", "scid_2000"]
    # A failed ticket made no record: its action still needs one (and shows the failed ticket).
    without = await world.page(hasTicket="false")
    assert list(without) == ["DLPEnabled", "PWAgePolicyNew"]
    assert [t["status"] for t in without["DLPEnabled"]["tickets"]] == ["failed"]
    assert list(await world.page(category="Data", hasTicket="true")) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"category": "Device"}, "category"),
        ({"category": "identity"}, "category"),
        ({"hasTicket": "maybe"}, "hasTicket"),
        ({"hasTicket": ""}, "hasTicket"),
        ({"top": "5"}, "top"),
    ],
)
def test_bad_filters_are_400_at_their_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(BadRequest) as raised:
        validate(ImprovementActionQuery, query)
    assert [f["field"] for f in raised.value.fields] == [field]


# --- the cache -----------------------------------------------------------------------------------


async def test_graph_is_read_once_per_tenant_until_the_cache_expires() -> None:
    world = World(ttl=timedelta(minutes=5))
    await world.page()
    assert (world.graph.list_calls, world.graph.score_calls) == (1, 1)

    world.clock.advance(minutes=4, seconds=59)
    world.graph.scores["AdminMFAV2"] = 10.0
    assert (await world.page())["AdminMFAV2"]["currentScore"] == 5.0  # a hit: Graph not read
    assert (world.graph.list_calls, world.graph.score_calls) == (1, 1)

    await world.page(OTHER)  # another tenant: its own read
    assert world.graph.list_calls == 2

    world.clock.advance(seconds=1)  # five minutes after the read: expired
    assert (await world.page())["AdminMFAV2"]["currentScore"] == 10.0
    assert (world.graph.list_calls, world.graph.score_calls) == (3, 3)


async def test_tickets_are_read_on_every_request_even_from_the_cache() -> None:
    world = World()
    assert (await world.page())["AdminMFAV2"]["tickets"] == []
    world.ticket("AdminMFAV2")
    assert len((await world.page())["AdminMFAV2"]["tickets"]) == 1
    assert (world.graph.list_calls, world.tickets.action_reads) == (1, 2)


async def test_a_zero_ttl_reads_graph_every_time() -> None:
    world = World(ttl=timedelta(0))
    await world.page()
    await world.page()
    assert (world.graph.list_calls, world.graph.score_calls) == (2, 2)


async def test_concurrent_misses_share_one_graph_read() -> None:
    world = World()
    world.graph.gate = asyncio.Event()
    pages = [asyncio.ensure_future(world.page()) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert world.graph.list_calls == 1  # the others wait for the same read
    world.graph.gate.set()
    answers = await asyncio.gather(*pages)
    assert all(list(answer) == list(answers[0]) for answer in answers)
    assert (world.graph.list_calls, world.graph.score_calls) == (1, 1)


async def test_a_caller_that_goes_away_does_not_cancel_the_read_others_wait_for() -> None:
    world = World()
    world.graph.gate = asyncio.Event()
    first = asyncio.ensure_future(world.page())
    second = asyncio.ensure_future(world.page())
    await asyncio.sleep(0.01)
    first.cancel()
    world.graph.gate.set()
    assert len(await second) == 4
    assert first.cancelled()
    await world.page()  # and the read was kept
    assert world.graph.list_calls == 1


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept() -> None:
    world = World()
    world.graph.gate = asyncio.Event()
    world.graph.failure = UpstreamUnavailable("Microsoft Graph is rate limiting us.", retry_after=120)
    pages = [asyncio.ensure_future(world.page()) for _ in range(3)]
    await asyncio.sleep(0.01)
    world.graph.gate.set()
    results = await asyncio.gather(*pages, return_exceptions=True)
    assert all(isinstance(r, UpstreamUnavailable) and r.retry_after == 120 for r in results)
    assert world.graph.list_calls == 1

    world.graph.gate = None
    assert len(await world.page()) == 4  # the next request reads Graph again
    assert world.graph.list_calls == 2


async def test_the_cache_keeps_a_bounded_number_of_tenants_oldest_out_first() -> None:
    world = World(max_cached_tenants=2)
    for tenant in ("t1", "t2", "t3"):
        await world.page(tenant)
    assert world.graph.list_calls == 3
    await world.page("t3")
    await world.page("t2")
    assert world.graph.list_calls == 3
    await world.page("t1")  # the oldest read was dropped for t3
    assert world.graph.list_calls == 4


async def test_without_graph_the_listing_is_503_dependency_not_configured() -> None:
    world = World()
    world.service = ImprovementActionsService(
        actions=UnconfiguredImprovementActions(),
        tickets=world.tickets,
        connections=world.connections,
        clock=world.clock,
    )
    with pytest.raises(DependencyNotConfigured, match="GRAPH_CLIENT_ID"):
        await world.page()
