"""Secure Score's daily check at scale: 50 tenants x 1,000 tickets, half made for improvement
actions, write-back on, against the Graph budget.

One process runs Azurite and the Entra/Graph stand-in. Per tenant: 1,000 ticket rows written in
transactions of 100 (every other one made for one of the stand-in's 21 improvement actions, states
spread over the incident states) and a connected connection row with the write-back on. Day 1:
the production check (`RemediationCheck` with the real Graph adapter and stores) for every tenant
at once. Day 2: 10% of each tenant's tickets change state (merged into their rows, as the sync
writes them), and the check runs again.

Printed per day: Graph requests per tenant counted on the wire (`bench/wire.py`; msal fetches its
tokens through its own HTTP stack, from Entra, not Graph: not counted), split by kind (the
stand-in's counts: scores, profile pages, PATCHes); Table Storage requests per tenant; the most
Graph requests of one tenant within a minute; wall time. Bounds, per tenant and day: Graph
requests <= 1 (scores) + the profile pages + one PATCH per comment that changed (worked out from
the seeded tickets: per writable action, its newest ticket's state), those PATCHes exactly, never
over 150 Graph requests in a minute. Exit 1 past a bound. Bounded: `--tenants` (at most 50),
`--tickets` (at most 1,000) and a `--deadline` in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient
from pydantic import SecretStr

from bench.wire import WireCount
from localdev.azurite import Azurite
from localdev.entra import EntraHandle, start_entra
from localdev.entra.state import load_actions
from localdev.tls import ensure_local_tls
from shared.graph import GraphClient
from shared.models import ConnectionStatus
from shared.records import Connection, Ticket, new_ticket_id
from shared.secure_score import writable_control
from shared.services.remediation_check import RemediationCheck, RemediationOutcome
from shared.stores.connections import ConnectionRepository
from shared.stores.remediation_rows import RemediationRowRepository
from shared.stores.tables import TableStore, to_entity

GRAPH_CLIENT = ("bench-graph-client", "bench-graph-secret-0123456789")
MAX_TENANTS, MAX_TICKETS = 50, 1000
GRAPH_PER_MINUTE = 150  # Graph's Secure Score limit per app and tenant
STATES = ("1", "2", "3", "6", "7", "8")  # incident states, open and closed
BATCH = 100
AZURITE_IDLE_S = 2.0  # reuse a Table Storage connection idle at most this long (see bench/sync.py)
GRAPH_KINDS = ("graph_scores", "graph_list", "graph_get", "graph_patch")


@dataclass
class Seeded:
    """One tenant's tickets as seeded: (ticket id, action id or None, state), oldest first."""

    tickets: list[tuple[str, str | None, str]] = field(default_factory=list)

    def newest_states(self) -> dict[str, tuple[str, str]]:
        """Per writable action: its newest ticket and that ticket's state."""
        newest: dict[str, tuple[str, str]] = {}
        for ticket_id, action_id, state in self.tickets:  # oldest first: the last one wins
            if action_id is not None and writable_control(action_id):
                newest[action_id] = (ticket_id, state)
        return newest


@dataclass
class World:
    store: TableStore
    entra: EntraHandle
    wire: WireCount
    check: RemediationCheck
    tenants: dict[str, Seeded] = field(default_factory=dict)
    sent: dict[str, list[float]] = field(default_factory=dict)  # tenant -> when each Graph request left


def _ticket(tenant_id: str, ticket_id: str, action_id: str | None, state: str, now: datetime) -> Ticket:
    return Ticket(
        tenant_id=tenant_id, ticket_id=ticket_id, type="incident", sys_id=uuid.uuid4().hex,
        number=f"INC{random.randrange(10**7):07d}", instance_url="https://bench.service-now.com",
        name="Bench ticket", description="Made by the benchmark.", priority=3, due_date=date(2030, 1, 1),
        recommendation_source="microsoft" if action_id else "user", recommendation_category="Identity",
        improvement_action_id=action_id, created_by="bench", created_by_name="Bench",
        created_at=now, state=state, state_updated_at=now,
    )  # fmt: skip


async def _seed(world: World, tenant_id: str, tickets: int, actions: list[str], rng: random.Random) -> None:
    start = datetime.now(UTC) - timedelta(days=30)
    seeded, rows = Seeded(), []
    for n in range(tickets):
        made = start + timedelta(minutes=n)
        ticket_id = new_ticket_id(made)
        action_id = actions[(n // 2) % len(actions)] if n % 2 == 0 else None
        state = rng.choice(STATES)
        seeded.tickets.append((ticket_id, action_id, state))
        rows.append(to_entity(_ticket(tenant_id, ticket_id, action_id, state, made), tenant_id, ticket_id))
    table = await world.store.table("tickets")
    for first in range(0, len(rows), BATCH):
        await table.submit_transaction([("upsert", row) for row in rows[first : first + BATCH]])
    await ConnectionRepository(world.store).put(
        Connection(
            tenant_id=tenant_id, instance="bench", instance_url="https://bench.service-now.com", client_id="c",
            status=ConnectionStatus.CONNECTED, secure_score_write_back=True, updated_at=datetime.now(UTC),
        )
    )  # fmt: skip
    world.tenants[tenant_id] = seeded


async def _change_states(world: World, share: float, rng: random.Random) -> dict[str, int]:
    """Move `share` of each tenant's tickets to another state; per tenant, the comments that change."""
    table = await world.store.table("tickets")
    expected: dict[str, int] = {}
    for tenant_id, seeded in world.tenants.items():
        before = seeded.newest_states()
        step = max(1, round(1 / share))
        merges = []
        for n in range(0, len(seeded.tickets), step):
            ticket_id, action_id, state = seeded.tickets[n]
            moved = rng.choice([s for s in STATES if s != state])
            seeded.tickets[n] = (ticket_id, action_id, moved)
            merges.append({"PartitionKey": tenant_id, "RowKey": ticket_id, "State": moved,
                           "StateUpdatedAt": datetime.now(UTC)})  # fmt: skip
        for first in range(0, len(merges), BATCH):
            operations: list[Any] = [
                ("update", m, {"mode": UpdateMode.MERGE}) for m in merges[first : first + BATCH]
            ]
            await table.submit_transaction(operations)
        after = seeded.newest_states()
        expected[tenant_id] = sum(1 for action, newest in after.items() if before.get(action) != newest)
    return expected


async def _day(world: World, name: str, expected: dict[str, int]) -> int:
    """Every tenant's check at once (each given its connection row, as the sync run hands it over);
    prints the day's figures, returns the bounds passed."""
    rows = [await ConnectionRepository(world.store).get(tenant_id) for tenant_id in world.tenants]
    counts_before = Counter(world.entra.state.tenant_counts)
    wire_before = world.wire.snapshot()
    world.sent.clear()
    started = time.perf_counter()
    outcomes = list(await asyncio.gather(*(world.check.check_tenant(row) for row in rows if row is not None)))
    wall = time.perf_counter() - started
    spent = world.wire.since(wire_before)
    kinds = Counter(world.entra.state.tenant_counts)
    kinds.subtract(counts_before)
    return _report(world, name, outcomes, expected, spent, kinds, wall)


def _report(
    world: World,
    name: str,
    outcomes: list[RemediationOutcome],
    expected: dict[str, int],
    spent: Counter[str],
    kinds: Counter[tuple[str, str]],
    wall: float,
) -> int:
    tenants = len(world.tenants)
    pages = math.ceil(len(world.entra.state.actions) / world.entra.state.page_size)
    failed, per_tenant = 0, []
    for outcome in outcomes:
        tenant = outcome.tenant_id
        graph = sum(kinds[(tenant, kind)] for kind in GRAPH_KINDS)
        per_tenant.append(graph)
        bound = 1 + pages + expected[tenant]
        if graph > bound or outcome.patched != expected[tenant] or outcome.failed or outcome.skipped:
            failed += 1
            print(f"secure_score: {name}: tenant {tenant}: {graph} Graph requests (bound {bound}), "
                  f"{outcome.patched} PATCHes (expected {expected[tenant]}), {outcome.failed} failed, {outcome.skipped}")  # fmt: skip
    busiest = max(_most_in_a_minute(times) for times in world.sent.values()) if world.sent else 0
    by_kind = {kind: sum(n for (_, k), n in kinds.items() if k == kind) / tenants for kind in GRAPH_KINDS}
    print(
        f"secure_score: {name}: Graph requests per tenant per day on the wire: {spent['Graph'] / tenants:.2f} "
        f"(max {max(per_tenant)}; scores {by_kind['graph_scores']:.2f}, profile pages {by_kind['graph_list']:.2f}, "
        f"profile reads {by_kind['graph_get']:.2f}, PATCHes {by_kind['graph_patch']:.2f}; bound per tenant "
        f"1 + {pages} pages + the changed comments, {sum(expected.values()) / tenants:.2f} on average)"
    )
    print(
        f"secure_score: {name}: Table requests per tenant: {spent['Table'] / tenants:.2f}; most Graph "
        f"requests of one tenant within a minute: {busiest} (bound {GRAPH_PER_MINUTE}); wall time {wall:.2f} s"
    )
    if sum(per_tenant) != spent["Graph"]:
        failed += 1
        print(
            f"secure_score: {name}: the wire ({spent['Graph']}) and the stand-in ({sum(per_tenant)}) disagree"
        )
    if busiest > GRAPH_PER_MINUTE:
        failed += 1
    return failed


def _most_in_a_minute(times: list[float]) -> int:
    window: deque[float] = deque()
    most = 0
    for at in sorted(times):
        window.append(at)
        while at - window[0] >= 60:
            window.popleft()
        most = max(most, len(window))
    return most


async def run(tenants: int, tickets: int, changed: float) -> int:
    azurite = Azurite()
    endpoints = await azurite.start()
    workdir = tempfile.TemporaryDirectory()
    tls = ensure_local_tls(Path(workdir.name) / "tls")
    entra = await start_entra(tls=tls, clients={GRAPH_CLIENT[0]: GRAPH_CLIENT[1]})
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=AZURITE_IDLE_S))
    service = TableServiceClient.from_connection_string(
        endpoints.connection_string, transport=AioHttpTransport(session=session, session_owner=False)
    )
    store = TableStore(service, table_prefix=f"bench{uuid.uuid4().hex[:8]}")
    wire = WireCount({"Table": f"http://{endpoints.host}:{endpoints.table_port}", "Graph": entra.url})
    sent: dict[str, list[float]] = {}

    async def note(request: httpx.Request) -> None:
        token = entra.state.tokens.get(request.headers.get("Authorization", "")[7:])
        if token is not None:
            sent.setdefault(token.tenant_id, []).append(time.monotonic())

    http = httpx.AsyncClient(verify=tls.client_context(), timeout=30, event_hooks={"request": [note]})
    graph = GraphClient(
        client_id=GRAPH_CLIENT[0], client_secret=SecretStr(GRAPH_CLIENT[1]), authority_host=entra.url,
        base_url=entra.url, local_dev=True, ca_bundle=str(tls.ca_path), http=http,
    )  # fmt: skip
    connections = ConnectionRepository(store)
    check = RemediationCheck(
        tickets=RemediationRowRepository(store), actions=graph, writer=graph, connections=connections
    )
    world = World(store=store, entra=entra, wire=wire, check=check, sent=sent)
    try:
        with wire.counting():
            return await _measure(world, tenants, tickets, changed)
    finally:
        await graph.aclose()
        await store.aclose()
        await session.close()
        await entra.aclose()
        await azurite.stop()
        workdir.cleanup()


async def _measure(world: World, tenants: int, tickets: int, changed: float) -> int:
    rng = random.Random(7)
    actions = [action["id"] for action in load_actions()]
    started = time.perf_counter()
    await asyncio.gather(*(_seed(world, str(uuid.uuid4()), tickets, actions, rng) for _ in range(tenants)))
    print(
        f"secure_score: set-up of {tenants} tenants x {tickets} tickets took {time.perf_counter() - started:.1f} s"
    )
    first = {tenant: len(seeded.newest_states()) for tenant, seeded in world.tenants.items()}
    failed = await _day(world, "day 1", first)
    second = await _change_states(world, changed, rng)
    failed += await _day(world, f"day 2 ({changed:.0%} of the states changed)", second)
    if failed:
        print(f"secure_score: FAIL: {failed} bound(s) passed")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--tickets", type=int, default=1000, help="per tenant, half made for actions")
    parser.add_argument("--changed", type=float, default=0.10, help="share of states changed on day 2")
    parser.add_argument("--deadline", type=float, default=240.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    tenants, tickets = min(args.tenants, MAX_TENANTS), min(args.tickets, MAX_TICKETS)
    try:
        return asyncio.run(asyncio.wait_for(run(tenants, tickets, args.changed), timeout=args.deadline))
    except TimeoutError:
        print(f"secure_score: FAIL: did not finish within {args.deadline:.0f} s")
        return 1


if __name__ == "__main__":
    sys.exit(main())
