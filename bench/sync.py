"""The sync at scale: 50 tenants x 1,000 tickets, 10% changed since the last run.

One process runs Azurite and one ServiceNow simulator per tenant (each tenant has its own
instance). For every tenant: 500 incidents and 500 change requests are seeded in its instance
(bulk, through the simulator's seeding), our 1,000 ticket rows are written to Azurite in
transactions of 100, and the connection gets a token set (the real OAuth flow) and watermarks as
a previous run would have left them. Then 10% of each tenant's records change in ServiceNow and
the production sync worker (real adapters: Table API client, AccessTokens, repositories) syncs
every tenant at once.

Printed: ServiceNow requests per tenant against the bound `tables + ceil(changed / 1000)` (a
per-ticket poll would be 1,000), Table Storage transactions (HTTP requests, counted on the wire),
and wall time. Exit 1 when any tenant exceeds the request bound or a change was not applied.
Bounded: `--tenants` (at most 50), `--tickets` (at most 1,000) and a `--deadline` in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables.aio import TableServiceClient
from pydantic import SecretStr

from localdev.azurite import Azurite
from localdev.servicenow import RunningSimulator, start_simulator
from localdev.servicenow.clock import format_glide
from shared.models import ConnectionStatus, SyncRequest, TicketType
from shared.records import CORRELATION_DISPLAY, Connection, Ticket, new_ticket_id
from shared.servicenow.oauth import ServiceNowOAuthClient, authorize_url
from shared.servicenow.table_api import ServiceNowTables
from shared.servicenow.transport import new_http_client
from shared.services.access_tokens import AccessTokens
from shared.services.sync_run import TenantSync
from shared.stores.connections import ConnectionRepository
from shared.stores.queues import StorageQueue
from shared.stores.tables import TableStore, to_entity
from shared.stores.tickets import MAX_BATCH, TicketRepository
from shared.ticket_states import TICKET_TABLES
from tests.fakes.secrets import InMemorySecretStore

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-client-secret-0123456789"
REDIRECT_URI = "https://connector.example/api/oauth/callback"
MAX_TENANTS, MAX_TICKETS = 50, 1000


def request_bound(tables: int, changed: int, page_size: int = 1000) -> int:
    """The most ServiceNow requests a normal (not reconciling) sync may make."""
    return tables + math.ceil(changed / page_size)


class CountingTransport(AioHttpTransport):  # type: ignore[misc]
    """Every HTTP request to Table Storage is one storage transaction (a batch counts once)."""

    requests = 0

    async def send(self, request: Any, **kwargs: Any) -> Any:
        CountingTransport.requests += 1
        return await super().send(request, **kwargs)


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
    # As the previous run left it: watermarks a second past the seeding, reconciled recently.
    last_run = format_glide(simulator.state.clock.now() + timedelta(seconds=1))
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


async def run(tenants: int, tickets: int, changed_share: float) -> int:
    azurite = Azurite()
    endpoints = await azurite.start()
    simulators: list[RunningSimulator] = []
    service_client = TableServiceClient.from_connection_string(
        endpoints.connection_string, transport=CountingTransport()
    )
    store = TableStore(service_client, table_prefix=f"bench{uuid.uuid4().hex[:8]}")
    http = new_http_client(timeout=httpx.Timeout(30.0))
    queue = StorageQueue.from_connection_string(endpoints.connection_string, "bench-sync-requests")
    try:
        secrets_store = InMemorySecretStore()
        connections = ConnectionRepository(store)
        oauth = ServiceNowOAuthClient(http)
        repository = TicketRepository(store)
        access_tokens = AccessTokens(secrets=secrets_store, oauth=oauth, connections=connections)
        service = TenantSync(
            connections=connections,
            tickets=repository,
            tokens=access_tokens,
            records=ServiceNowTables(http, access_tokens),
            queue=queue,
        )

        started = time.perf_counter()
        tenant_ids = [str(uuid.uuid4()) for _ in range(tenants)]
        simulators = list(
            await asyncio.gather(*(start_simulator(clients={CLIENT_ID: CLIENT_SECRET}) for _ in tenant_ids))
        )
        made = await asyncio.gather(
            *(
                _prepare_tenant(t, s, tickets, store, connections, secrets_store, oauth, http)
                for t, s in zip(tenant_ids, simulators, strict=True)
            )
        )
        changed_per_tenant = math.ceil(tickets * changed_share)
        expected: dict[str, dict[str, str]] = {}
        for tenant_id, simulator, records in zip(tenant_ids, simulators, made, strict=True):
            chosen = records[:: max(1, len(records) // changed_per_tenant)][:changed_per_tenant]
            expected[tenant_id] = {}
            for table, sys_id, ticket_id in chosen:
                state = "2" if table == "incident" else "-1"
                simulator.state.records.update(table, sys_id, {"state": state}, user="itil")
                expected[tenant_id][ticket_id] = state
            simulator.state.requests.clear()
        print(
            f"sync: set-up of {tenants} tenants x {tickets} tickets took {time.perf_counter() - started:.1f} s"
        )

        CountingTransport.requests = 0
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(service.sync_tenant(_request(tenant_id)) for tenant_id in tenant_ids)
        )
        wall = time.perf_counter() - started
        transactions = CountingTransport.requests

        failed = 0
        bound = request_bound(len(TICKET_TABLES), changed_per_tenant)
        per_tenant = [sum(s.state.requests.values()) for s in simulators]
        for tenant_id, outcome, count in zip(tenant_ids, outcomes, per_tenant, strict=True):
            if outcome.skipped or outcome.changed != len(expected[tenant_id]) or count > bound:
                failed += 1
                print(
                    f"sync: tenant {tenant_id}: {count} requests, {outcome.changed} changes, {outcome.skipped}"
                )
        for tenant_id in tenant_ids:
            states = {t.ticket_id: t.state async for t in repository.every_ticket(tenant_id)}
            wrong = [tid for tid, state in expected[tenant_id].items() if states.get(tid) != state]
            if wrong:
                failed += 1
                print(f"sync: tenant {tenant_id}: {len(wrong)} changes not applied")
        spread = Counter(per_tenant)
        print(
            f"sync: ServiceNow requests per tenant: max {max(per_tenant)}, "
            f"distribution {dict(sorted(spread.items()))} (bound {bound} = {len(TICKET_TABLES)} tables + "
            f"ceil({changed_per_tenant}/1000); a per-ticket poll would be {tickets})"
        )
        print(
            f"sync: Table Storage transactions: {transactions} in all, {transactions / tenants:.1f} per tenant "
            f"({changed_per_tenant} changed rows each, batches of at most {MAX_BATCH})"
        )
        print(
            f"sync: wall time {wall:.2f} s for {tenants} tenants ({tenants * changed_per_tenant} state changes)"
        )
        if failed:
            print(f"sync: FAIL: {failed} tenant(s) over the request bound or with changes not applied")
            return 1
        return 0
    finally:
        await queue.aclose()
        await http.aclose()
        await store.aclose()
        for simulator in simulators:
            await simulator.aclose()
        await azurite.stop()


def _request(tenant_id: str) -> SyncRequest:
    return SyncRequest(tenant_id=tenant_id, reason="timer", requested_at=datetime.now(UTC))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--tickets", type=int, default=1000, help="per tenant, half of each type")
    parser.add_argument("--changed", type=float, default=0.10, help="share changed since the last run")
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    tenants, tickets = min(args.tenants, MAX_TENANTS), min(args.tickets, MAX_TICKETS)
    try:
        return asyncio.run(asyncio.wait_for(run(tenants, tickets, args.changed), timeout=args.deadline))
    except TimeoutError:
        print(f"sync: FAIL: did not finish within {args.deadline:.0f} s")
        return 1


if __name__ == "__main__":
    sys.exit(main())
