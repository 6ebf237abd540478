"""The sync at scale: 50 tenants x 1,000 tickets, 10% changed since the last run, against its floor.

One process runs Azurite and one ServiceNow simulator per tenant (each tenant has its own
instance). For every tenant: 500 incidents and 500 change requests are seeded in its instance
(bulk, through the simulator's seeding), our 1,000 ticket rows are written to Azurite in
transactions of 100, and the connection gets a token set (the real OAuth flow) and watermarks as
a previous run would have left them. Then 10% of each tenant's records change in ServiceNow, the
timer's fan-out (`SyncFanout`, the real listing) makes one message per tenant, and the production
sync worker (real adapters: Table API client, AccessTokens, repositories) runs every tenant's
message at once, as the queue trigger would parse it.

The floor, measured right after in the same process at the same concurrency: for every tenant, the
very ServiceNow requests the sync sent (same URLs and parameters, direct httpx, the same token,
the JSON read) and the very transactions of state merges it wrote (the same changed columns, each
with its timeline event row, direct azure-data-tables): what any sync of these changes must do,
and nothing else.

Printed: requests per tenant counted on the wire per service (`bench/wire.py`) against the bounds
(ServiceNow `tables + ceil(changed / 1000)`, Table Storage `ceil(changed / 50) + 2`: the run's
lease and its finish, for the timer's messages, which carry the listed row; a message from
`POST /api/sync` or a requeue reads the row first, one request more), the fan-out's own requests,
and the wall time of the sync, of its floor, and their ratio (bound 1.5, judged when the floor
takes at least `--min-floor` seconds: below that the clock's noise is the measure). Exit 1 when a
bound is passed or a change was not applied. Bounded: `--tenants` (at most 50), `--tickets` (at
most 1,000) and a `--deadline` in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import secrets
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient
from pydantic import SecretStr

from bench.wire import WireCount, per_operation
from localdev.azurite import Azurite
from localdev.servicenow import RunningSimulator, start_simulator
from localdev.servicenow.clock import format_glide
from shared.clock import SYSTEM_CLOCK
from shared.models import ConnectionStatus, SyncRequest, TicketType
from shared.records import (
    CORRELATION_DISPLAY,
    Connection,
    StateChangeResult,
    Ticket,
    TicketStateChange,
    new_ticket_id,
)
from shared.servicenow.oauth import ServiceNowOAuthClient, authorize_url
from shared.servicenow.table_api import ServiceNowTables
from shared.servicenow.transport import new_http_client
from shared.services.access_tokens import AccessTokens
from shared.services.sync_config import SyncConfig
from shared.services.sync_fanout import SyncFanout
from shared.services.sync_run import SyncOutcome, TenantSync
from shared.stores.connections import ConnectionRepository, OAuthStateRepository
from shared.stores.event_rows import polled_event
from shared.stores.queues import StorageQueue
from shared.stores.tables import TableStore, to_entity
from shared.stores.ticket_state_rows import MAX_CHANGES as MAX_BATCH  # state changes a transaction
from shared.stores.tickets import TicketRepository
from shared.ticket_states import TICKET_TABLES
from tests.fakes.secrets import InMemorySecretStore

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-client-secret-0123456789"
REDIRECT_URI = "https://connector.example/api/oauth/callback"
MAX_TENANTS, MAX_TICKETS = 50, 1000
RATIO_BOUND = 1.5
AZURITE_IDLE_S = 2.0  # reuse a Table Storage connection idle at most this long
LAST_RUN_AFTER_SEEDING_S = 600  # the previous run, on the instance's clock
PASSES = 2  # the sync and its floor, each measured this many times, interleaved


def request_bound(tables: int, changed: int, page_size: int = 1000) -> int:
    """The most ServiceNow requests a normal (not reconciling) sync may make."""
    return tables + math.ceil(changed / page_size)


def table_bound(changed: int) -> int:
    """The most Table Storage requests a normal sync of a timer's message may make."""
    return math.ceil(changed / MAX_BATCH) + 2  # the state transactions, the lease and the finish


class CapturingQueue:
    """The `sync-requests` queue, keeping what the fan-out sent (what the worker will be handed)."""

    def __init__(self, inner: StorageQueue) -> None:
        self.inner = inner
        self.name = inner.name
        self.bodies: list[str] = []

    async def send(self, body: str, *, delay_s: int = 0) -> None:
        self.bodies.append(body)
        await self.inner.send(body, delay_s=delay_s)


class RecordingTickets(TicketRepository):
    """The ticket repository, keeping every transaction of state merges the sync wrote, by tenant."""

    def __init__(self, store: TableStore) -> None:
        super().__init__(store)
        self.batches: dict[str, list[list[TicketStateChange]]] = {}

    async def merge_states(self, tenant_id: str, changes: Sequence[TicketStateChange]) -> str | None:
        missing = await super().merge_states(tenant_id, changes)
        if missing is None:
            self.batches.setdefault(tenant_id, []).append(list(changes))
        return missing

    async def apply_state_changes(
        self, tenant_id: str, changes: Sequence[TicketStateChange]
    ) -> StateChangeResult:
        result = await super().apply_state_changes(tenant_id, changes)
        for start in range(0, len(changes), MAX_BATCH):
            self.batches.setdefault(tenant_id, []).append(list(changes[start : start + MAX_BATCH]))
        return result


async def _authorize(http: httpx.AsyncClient, oauth: ServiceNowOAuthClient, instance_url: str) -> Any:
    """Consent (Allow) and exchange the code: the real flow against the instance."""
    verifier = secrets.token_urlsafe(48)
    url = authorize_url(
        instance_url, client_id=CLIENT_ID, redirect_uri=REDIRECT_URI, state="s", verifier=verifier
    )
    form = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    answer = await http.post(f"{instance_url}/oauth_auth.do", data={**form, "action": "allow"})
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    return await oauth.exchange_code(
        instance_url, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET), code=code,
        redirect_uri=REDIRECT_URI, verifier=verifier, state="s",
    )  # fmt: skip


def _ticket(tenant_id: str, ticket_id: str, ticket_type: TicketType, row: dict[str, str], url: str) -> Ticket:
    now = datetime.now(UTC)
    return Ticket(
        tenant_id=tenant_id, ticket_id=ticket_id, type=ticket_type, sys_id=row["sys_id"], number=row["number"],
        instance_url=url, name=row["short_description"], description="", priority=4, due_date=date(2030, 1, 1),
        recommendation_source="microsoft", recommendation_category="Identity", created_by="bench",
        created_by_name="Bench", created_at=now - timedelta(days=1), state=row["state"],
        state_updated_at=now - timedelta(days=1),
    )  # fmt: skip


async def _prepare_tenant(
    tenant_id: str,
    simulator: RunningSimulator,
    tickets: int,
    store: TableStore,
    connections: ConnectionRepository,
    secrets_store: InMemorySecretStore,
    oauth: ServiceNowOAuthClient,
    http: httpx.AsyncClient,
) -> list[tuple[str, str, str]]:
    """Seed the instance and our rows; returns the (table, sys_id, ticket id) of every ticket."""
    per_table = tickets // len(TICKET_TABLES)
    made: list[tuple[str, str, str]] = []
    rows: list[dict[str, Any]] = []
    for table in TICKET_TABLES:
        ids = [new_ticket_id() for _ in range(per_table)]
        seeded = simulator.state.seed(
            table,
            per_table,
            {
                "short_description": "Ticket {n}",
                "correlation_display": CORRELATION_DISPLAY,
                "correlation_id": ids,
            },
        )
        for ticket_id, record in zip(ids, seeded, strict=True):
            made.append((table, record["sys_id"], ticket_id))
            ticket = _ticket(tenant_id, ticket_id, table, record, simulator.url)  # type: ignore[arg-type]
            rows.append(to_entity(ticket, tenant_id, ticket_id))
    table_client = await store.table("tickets")
    for start in range(0, len(rows), MAX_BATCH):
        await table_client.submit_transaction([("upsert", row) for row in rows[start : start + MAX_BATCH]])

    await secrets_store.set_client_secret(tenant_id, SecretStr(CLIENT_SECRET))
    tokens = await _authorize(http, oauth, simulator.url)
    await secrets_store.set_tokens(tenant_id, tokens)
    # As the previous run left it: it ran well after the seeding (the tickets are older than its
    # 2-minute look-back, so none of them is listed again but the ones changed since), reconciled
    # recently, nothing in its look-back window.
    simulator.state.clock.advance(LAST_RUN_AFTER_SEEDING_S)
    last_run = format_glide(simulator.state.clock.now())
    await connections.put(
        Connection(
            tenant_id=tenant_id, instance=simulator.url, instance_url=simulator.url, client_id=CLIENT_ID,
            status=ConnectionStatus.CONNECTED, access_token_expires_at=tokens.access_token_expires_at,
            refresh_token_expires_at=tokens.refresh_token_expires_at,
            watermarks=dict.fromkeys(TICKET_TABLES, last_run),
            last_reconciled_at=datetime.now(UTC), last_sync_at=datetime.now(UTC) - timedelta(minutes=5),
            updated_at=datetime.now(UTC),
        )
    )  # fmt: skip
    simulator.state.clock.advance(2)
    return made


@dataclass
class World:
    """What the bench set up: the stores, the adapters and the tenants with their instances."""

    store: TableStore
    http: httpx.AsyncClient
    queue: StorageQueue
    secrets: InMemorySecretStore
    connections: ConnectionRepository
    tickets: RecordingTickets
    wire: WireCount
    tenant_ids: list[str] = field(default_factory=list)
    simulators: list[RunningSimulator] = field(default_factory=list)
    expected: dict[str, dict[str, str]] = field(default_factory=dict)  # ticket id -> its new state
    sent: dict[str, list[str]] = field(default_factory=dict)  # instance URL -> the URLs the sync asked for
    recording: bool = False


async def _set_up(world: World, tenants: int, tickets: int, changed_share: float) -> int:
    """Seed every tenant, change `changed_share` of its records; the changes per tenant."""
    oauth = ServiceNowOAuthClient(world.http)
    world.tenant_ids = [str(uuid.uuid4()) for _ in range(tenants)]
    world.simulators = list(
        await asyncio.gather(*(start_simulator(clients={CLIENT_ID: CLIENT_SECRET}) for _ in world.tenant_ids))
    )
    for simulator in world.simulators:
        world.wire.add("ServiceNow", simulator.url)
    made = await asyncio.gather(
        *(
            _prepare_tenant(t, s, tickets, world.store, world.connections, world.secrets, oauth, world.http)
            for t, s in zip(world.tenant_ids, world.simulators, strict=True)
        )
    )
    changed = math.ceil(tickets * changed_share)
    for tenant_id, simulator, records in zip(world.tenant_ids, world.simulators, made, strict=True):
        chosen = records[:: max(1, len(records) // changed)][:changed]
        world.expected[tenant_id] = {}
        for table, sys_id, ticket_id in chosen:
            state = "2" if table == "incident" else "-1"
            simulator.state.records.update(table, sys_id, {"state": state}, user="itil")
            world.expected[tenant_id][ticket_id] = state
        simulator.state.requests.clear()
    return changed


async def _fan_out(world: World, *, quiet: bool = False) -> list[SyncRequest]:
    """The timer's fan-out over the connected tenants; its messages, parsed as the queue trigger does."""
    capture = CapturingQueue(world.queue)
    fanout = SyncFanout(
        connections=world.connections,
        queue=capture,
        states=OAuthStateRepository(world.store),
        config=SyncConfig(),
        clock=SYSTEM_CLOCK,
    )
    before = world.wire.snapshot()
    queued = await fanout.enqueue_connected("timer")
    spent = world.wire.since(before)
    if not quiet:
        print(
            f"sync: fan-out: {queued} message(s) queued; on the wire: {per_operation(spent, 1)} in all "
            "(one listing of the connected rows, one send per tenant)"
        )
    return [SyncRequest.model_validate_json(body) for body in capture.bodies]


async def _run_syncs(
    world: World, requests: list[SyncRequest]
) -> tuple[list[SyncOutcome], float, Counter[str]]:
    """Every tenant's message, run by the production worker at once: outcomes, wall time, the wire."""
    access_tokens = AccessTokens(
        secrets=world.secrets, oauth=ServiceNowOAuthClient(world.http), connections=world.connections
    )
    service = TenantSync(
        connections=world.connections,
        tickets=world.tickets,
        tokens=access_tokens,
        records=ServiceNowTables(world.http, access_tokens),
        queue=world.queue,
    )
    by_tenant = {request.tenant_id: request for request in requests}
    before = world.wire.snapshot()
    world.recording = True
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(service.sync_tenant(by_tenant[t]) for t in world.tenant_ids))
    wall = time.perf_counter() - started
    world.recording = False
    return list(outcomes), wall, world.wire.since(before)


async def _floor(world: World) -> tuple[float, Counter[str]]:
    """The same ServiceNow requests and the same state transactions, made directly, all tenants at once."""
    table = await world.store.table("tickets")
    tokens = {t: await world.secrets.get_tokens(t) for t in world.tenant_ids}

    async def one(tenant_id: str, simulator: RunningSimulator) -> None:
        token = tokens[tenant_id]
        assert token is not None
        headers = {
            "Authorization": f"Bearer {token.access_token.get_secret_value()}",
            "Accept": "application/json",
        }
        for url in world.sent.get(simulator.url, []):
            response = await world.http.get(url, headers=headers)
            response.raise_for_status()
            response.json()
        for batch in world.tickets.batches.get(tenant_id, []):
            operations: list[Any] = []
            for change in batch:
                operations.append(("update", _merge(tenant_id, change), {"mode": UpdateMode.MERGE}))
                event = polled_event(tenant_id, change)  # the timeline's row, the same payload
                if event is not None:
                    operations.append(("upsert", event, {"mode": UpdateMode.MERGE}))
            await table.submit_transaction(operations)

    before = world.wire.snapshot()
    started = time.perf_counter()
    await asyncio.gather(*(one(t, s) for t, s in zip(world.tenant_ids, world.simulators, strict=True)))
    return time.perf_counter() - started, world.wire.since(before)


def _merge(tenant_id: str, change: TicketStateChange) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": tenant_id, "RowKey": change.ticket_id, "State": change.state,
        "StateUpdatedAt": change.state_updated_at,
    }  # fmt: skip
    if change.servicenow_updated_on is not None:
        entity["ServicenowUpdatedOn"] = change.servicenow_updated_on
    if change.mod_count is not None:
        entity["ServicenowModCount"] = change.mod_count
    return entity


async def _check(
    world: World, outcomes: list[SyncOutcome], servicenow_bound: int, tickets: int, *, report: bool = True
) -> int:
    """The tenants over the ServiceNow bound or with a change not applied (each printed)."""
    failed = 0
    per_tenant = [sum(s.state.requests.values()) for s in world.simulators]
    for tenant_id, outcome, count in zip(world.tenant_ids, outcomes, per_tenant, strict=True):
        if outcome.skipped or outcome.changed != len(world.expected[tenant_id]) or count > servicenow_bound:
            failed += 1
            print(f"sync: tenant {tenant_id}: {count} requests, {outcome.changed} changes, {outcome.skipped}")
    for tenant_id in world.tenant_ids:
        states = {t.ticket_id: t.state async for t in world.tickets.every_ticket(tenant_id)}
        wrong = [tid for tid, state in world.expected[tenant_id].items() if states.get(tid) != state]
        if wrong:
            failed += 1
            print(f"sync: tenant {tenant_id}: {len(wrong)} changes not applied")
    spread = Counter(per_tenant)
    print_if = print if report else (lambda *args: None)
    print_if(
        f"sync: ServiceNow requests per tenant: max {max(per_tenant)}, distribution {dict(sorted(spread.items()))} "
        f"(bound {servicenow_bound} = {len(TICKET_TABLES)} tables + ceil(changed/1000); a per-ticket poll "
        f"would be {tickets})"
    )
    return failed


def _settle() -> None:
    """The same start for every timed pass: no garbage of the one before it left to collect, and
    what exists now (the set-up's objects) out of the collector's way."""
    gc.collect()
    gc.freeze()


async def run(tenants: int, tickets: int, changed_share: float, min_floor: float) -> int:
    azurite = Azurite()
    endpoints = await azurite.start()
    base = f"http://{endpoints.host}"
    wire = WireCount({"Table": f"{base}:{endpoints.table_port}", "Queue": f"{base}:{endpoints.queue_port}"})
    # Azurite (Node) drops a connection idle for 5 s; the event loop, busy with 50 instances, may
    # not hear of it before reusing the connection (a reset). Idle connections go sooner here.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=AZURITE_IDLE_S))
    service_client = TableServiceClient.from_connection_string(
        endpoints.connection_string, transport=AioHttpTransport(session=session, session_owner=False)
    )
    store = TableStore(service_client, table_prefix=f"bench{uuid.uuid4().hex[:8]}")
    world = World(
        store=store,
        http=new_http_client(timeout=httpx.Timeout(30.0)),
        queue=StorageQueue.from_connection_string(endpoints.connection_string, "bench-sync-requests"),
        secrets=InMemorySecretStore(),
        connections=ConnectionRepository(store),
        tickets=RecordingTickets(store),
        wire=wire,
    )

    async def note(request: httpx.Request) -> None:
        if world.recording:
            world.sent.setdefault(f"{request.url.scheme}://{request.url.netloc.decode()}", []).append(
                str(request.url)
            )

    world.http.event_hooks["request"].append(note)
    try:
        with wire.counting():
            return await _measure(world, tenants, tickets, changed_share, min_floor)
    finally:
        await world.queue.aclose()
        await world.http.aclose()
        await store.aclose()
        await session.close()
        for simulator in world.simulators:
            await simulator.aclose()
        await azurite.stop()


async def _measure(world: World, tenants: int, tickets: int, changed_share: float, min_floor: float) -> int:
    started = time.perf_counter()
    changed = await _set_up(world, tenants, tickets, changed_share)
    print(f"sync: set-up of {tenants} tenants x {tickets} tickets took {time.perf_counter() - started:.1f} s")
    listed = await _fan_out(world)
    failed, walls, floors, spent, floor_spent = 0, [], [], Counter[str](), Counter[str]()
    for attempt in range(PASSES):  # the sync, then its floor; again from the same start
        requests = listed if attempt == 0 else await _start_again(world, listed)
        _settle()
        outcomes, wall, used = await _run_syncs(world, requests)
        bound = request_bound(len(TICKET_TABLES), changed)
        failed += await _check(world, outcomes, bound, tickets, report=attempt == 0)
        _settle()
        floor, floor_used = await _floor(world)
        walls.append(wall)
        floors.append(floor)
        spent, floor_spent = spent + used, floor_spent + floor_used
    failed += _report(spent, floor_spent, tenants * PASSES, changed, walls, floors, min_floor)
    if failed:
        print(f"sync: FAIL: {failed} bound(s) passed or tenant(s) with changes not applied")
        return 1
    return 0


async def _start_again(world: World, listed: list[SyncRequest]) -> list[SyncRequest]:
    """Every connection row as the first pass found it (watermarks, no sync since), listed afresh:
    the next pass lists and writes the very same changes. (Our rows' states need no resetting: a
    normal run writes without reading them.)"""
    for request in listed:
        assert request.row is not None
        await world.connections.put(Connection.model_validate(request.row.properties))
    for simulator in world.simulators:
        simulator.state.requests.clear()
    world.sent.clear()
    world.tickets.batches.clear()
    return await _fan_out(world, quiet=True)


def _report(
    spent: Counter[str],
    floor_spent: Counter[str],
    runs: int,
    changed: int,
    walls: list[float],
    floors: list[float],
    min_floor: float,
) -> int:
    """Print the wire and the wall time against the bounds; the number of bounds passed."""
    failed = 0
    bound = table_bound(changed)
    print(
        f"sync: on the wire per tenant (timer messages, which carry the listed row): {per_operation(spent, runs)}; "
        f"Table bound {bound} = ceil({changed}/{MAX_BATCH}) transactions + the lease + the finish "
        "(a message without the row, from POST /api/sync or a requeue, reads the row first: one more)"
    )
    print(f"sync: the floor on the wire per tenant: {per_operation(floor_spent, runs)}")
    # The best pass of each: the machine is shared, and a pass can only be slowed by others, not sped up.
    wall, floor = min(walls), min(floors)
    ratio = wall / floor if floor > 0 else float("inf")
    judged = floor >= min_floor
    print(
        f"sync: wall time (best of {len(walls)} passes; ours {', '.join(f'{w:.2f}' for w in walls)} s, "
        f"floor {', '.join(f'{f:.2f}' for f in floors)} s): floor {floor:.2f} s, ours {wall:.2f} s, "
        f"ratio {ratio:.2f} (bound {RATIO_BOUND}"
        f"{'' if judged else f'; not judged: the floor is under {min_floor:.1f} s'})"
    )
    if spent["Table"] > bound * runs:
        failed += 1
        print(f"sync: FAIL: {spent['Table'] / runs:.2f} Table Storage requests per tenant, bound {bound}")
    if spent["Queue"]:
        failed += 1
        print(f"sync: FAIL: the workers sent {spent['Queue']} queue message(s)")
    if judged and ratio > RATIO_BOUND:
        failed += 1
        print(f"sync: FAIL: {ratio:.2f} x the floor, bound {RATIO_BOUND}")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--tickets", type=int, default=1000, help="per tenant, half of each type")
    parser.add_argument("--changed", type=float, default=0.10, help="share changed since the last run")
    parser.add_argument(
        "--min-floor", type=float, default=1.0, help="seconds the floor must take to judge the ratio"
    )
    parser.add_argument("--deadline", type=float, default=240.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    tenants, tickets = min(args.tenants, MAX_TENANTS), min(args.tickets, MAX_TICKETS)
    try:
        return asyncio.run(
            asyncio.wait_for(run(tenants, tickets, args.changed, args.min_floor), timeout=args.deadline)
        )
    except TimeoutError:
        print(f"sync: FAIL: did not finish within {args.deadline:.0f} s")
        return 1


if __name__ == "__main__":
    sys.exit(main())
