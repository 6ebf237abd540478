"""Creates through POST /api/tickets against their floor: what a create physically needs, done directly.

One process runs Azurite, the Key Vault and Entra/Graph stand-ins, a ServiceNow simulator and the
function app on the local host; a tenant is connected through the real OAuth flow. Then the same
number of creates, at the same concurrency, go (1) through our API and (2) as the floor: the
idempotency claim written, the simulator's own `POST /api/now/table/incident`, the ticket row
written, with the same SDK client and the same entities (two durable writes are what make a create
idempotent and listed). (3) The bare POST alone is printed for reference. Every figure comes from
the same run on the same machine, so the ratios mean something where absolute numbers do not.

Requests are counted on the wire per service (`bench/wire.py`) during our creates.

Bounds (exit 1 past one): our p50 <= 1.3 x the floor's, our throughput >= 0.7 x the floor's,
<= 3 Table Storage requests per create, no Key Vault request (the token is in memory), no failure.
`--no-bounds` judges failures only (for tiny runs, where timings are noise).

Bounded: `--requests` per side (default 200, at most 2,000) and a `--deadline` in seconds per side.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import httpx

from bench.local_stack import SERVICENOW_CLIENT, local_stack
from bench.wire import per_operation

REPO_ROOT = Path(__file__).resolve().parent.parent
TENANT = "5b1c0d4e-0000-4000-8000-00000000be01"
ADMIN = "5b1c0d4e-0000-4000-8000-00000000ad01"
MAX_REQUESTS = 2000
P50_BOUND = 1.3  # ours over the floor's, at the same concurrency
THROUGHPUT_BOUND = 0.7
TABLE_REQUESTS_BOUND = 3  # per warm create


def percentile(values: list[float], p: float) -> float:
    """The `p`th percentile of `values` (nearest rank); 0 for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


@dataclass(frozen=True)
class Figures:
    label: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    failures: int

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def line(self) -> str:
        return (
            f"create_tickets: {self.label:<22} {self.requests} requests, {self.throughput:7.1f} req/s, "
            f"p50 {self.percentile(50):6.1f} ms, p95 {self.percentile(95):6.1f} ms, failures {self.failures}"
        )


async def measure(
    label: str, requests: int, concurrency: int, deadline: float, send: Callable[[int], Awaitable[bool]]
) -> Figures:
    latencies: list[float] = []
    failures = 0
    counter = iter(range(requests))
    stop_at = time.perf_counter() + deadline

    async def worker() -> None:
        nonlocal failures
        for index in counter:
            if time.perf_counter() > stop_at:
                return
            started = time.perf_counter()
            ok = await send(index)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += 0 if ok else 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Figures(label, len(latencies), time.perf_counter() - started, latencies, failures)


class _Form(HTMLParser):
    """The simulator's consent page: one form, hidden inputs and allow/deny buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.action = values.get("action", "")
        elif tag == "input" and values.get("type") == "hidden":
            self.fields[values.get("name", "")] = values.get("value", "")


async def connect(api: httpx.AsyncClient, headers: dict[str, str], simulator_url: str, client: Any) -> None:
    """PUT /api/provisioning, click Allow on the consent page, deliver the callback."""
    client_id, client_secret = client
    configured = await api.put(
        "/api/provisioning",
        json={"instance": simulator_url, "clientId": client_id, "clientSecret": client_secret},
        headers=headers,
    )
    configured.raise_for_status()
    authorize_url = configured.json()["authorizeUrl"]
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(authorize_url)
        form = _Form()
        form.feed(page.text)
        answer = await browser.post(
            urljoin(authorize_url, form.action), data={**form.fields, "action": "allow"}
        )
        callback = await api.get(answer.headers["Location"])
    if "servicenow=connected" not in callback.headers.get("Location", ""):
        raise RuntimeError(f"connecting the bench tenant failed: {callback.headers.get('Location')}")


@dataclass(frozen=True)
class Outcome:
    ours: Figures
    floor: Figures
    bare_post: Figures
    wire: Counter[str]  # requests on the wire during our creates, by service


def _ticket_body(index: int, due: str) -> dict[str, Any]:
    return {
        "type": "incident", "name": f"Bench ticket {index}", "description": "Created by the benchmark.",
        "priority": 3, "dueDate": due, "recommendationSource": "user", "recommendationCategory": "Data",
    }  # fmt: skip


def _record_fields(index: int, due: str) -> dict[str, str]:
    return {
        "short_description": f"Direct {index}", "description": "Created by the benchmark.",
        "impact": "2", "urgency": "2", "due_date": f"{due} 23:59:59",
        "correlation_id": f"bench-direct-{index}", "correlation_display": "bench",
    }  # fmt: skip


class Floor:
    """What a create physically needs, done directly: the claim written, the simulator's POST, the
    ticket row written; the same entities our repositories write, through the same SDK client."""

    def __init__(self, connection_string: str, simulator_url: str, token: str, concurrency: int) -> None:
        from azure.data.tables.aio import TableServiceClient

        self._service = TableServiceClient.from_connection_string(connection_string)
        self._claims = self._service.get_table_client("benchfloorclaims")
        self._tickets = self._service.get_table_client("benchfloortickets")
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.AsyncClient(base_url=simulator_url, timeout=30, limits=limits)
        self._bearer = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def __aenter__(self) -> Floor:
        await self._service.create_table("benchfloorclaims")
        await self._service.create_table("benchfloortickets")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()
        await self._service.close()

    async def post_only(self, index: int, due: str) -> bool:
        response = await self._http.post(
            "/api/now/table/incident", json=_record_fields(index, due), headers=self._bearer
        )
        return response.status_code == 201

    async def create(self, index: int, due: str) -> bool:
        from shared.records import IdempotencyRecord, Ticket, new_ticket_id
        from shared.stores.tables import to_entity

        now = datetime.now(UTC)
        ticket_id, key_hash = new_ticket_id(now), f"{index:064x}"
        claim = IdempotencyRecord(
            tenant_id=TENANT, key_hash=key_hash, fingerprint="f" * 64, ticket_id=ticket_id, status="in_progress",
            created_by=ADMIN, created_by_name="Bench Admin", created_at=now, lease_until=now, posted_at=now,
        )  # fmt: skip
        await self._claims.create_entity(to_entity(claim, TENANT, key_hash))
        response = await self._http.post(
            "/api/now/table/incident", json=_record_fields(index, due), headers=self._bearer
        )
        record = response.json()["result"]
        ticket = Ticket(
            tenant_id=TENANT, ticket_id=ticket_id, type="incident", sys_id=record["sys_id"], number=record["number"],
            instance_url=str(self._http.base_url), name=f"Bench ticket {index}", description="Created by the benchmark.",
            priority=3, due_date=date.fromisoformat(due), recommendation_source="user", recommendation_category="Data",
            created_by=ADMIN, created_by_name="Bench Admin", created_at=now, state=record["state"], state_updated_at=now,
        )  # fmt: skip
        await self._tickets.create_entity(to_entity(ticket, TENANT, ticket_id))
        return response.status_code == 201


async def run(requests: int, concurrency: int, deadline: float) -> Outcome:
    from shared.identity import PRINCIPAL_HEADER, encode_principal

    async with local_stack() as stack:
        simulator, wire, url = stack.simulator, stack.wire, stack.url
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        due = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as api:
            admin = {
                PRINCIPAL_HEADER: encode_principal(TENANT, ADMIN, ["Connector.Admin"], name="Bench Admin")
            }
            await connect(api, admin, simulator.url, SERVICENOW_CLIENT)

            # The load comes through aiohttp's client, lighter than httpx: in this one process the
            # client's own work is charged to our figure, which the floor (no hop) never pays.
            connector = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(base_url=url, connector=connector) as client:

                async def ours(index: int) -> bool:
                    headers = {**admin, "Idempotency-Key": f"bench-{index}"}
                    body = _ticket_body(index, due)
                    async with client.post("/api/tickets", json=body, headers=headers) as response:
                        await response.read()
                        return response.status == 201

                await ours(-1)  # warm up: token into memory, tables created, connections open
                with wire.counting():
                    our_figures = await measure("POST /api/tickets", requests, concurrency, deadline, ours)

        async with httpx.AsyncClient() as control:
            grants = (await control.get(f"{simulator.url}/__sim/tokens")).json()
        grant_list = grants["grants"] if isinstance(grants, dict) else grants
        token = grant_list[0]["access_tokens"][-1]["access_token"]
        async with Floor(stack.connection_string, simulator.url, token, concurrency) as floor:
            await floor.create(-1, due)
            floor_figures = await measure(
                "floor (claim+POST+row)", requests, concurrency, deadline, lambda i: floor.create(i, due)
            )
            await floor.post_only(-1, due)
            bare = await measure(
                "simulator POST alone", requests, concurrency, deadline, lambda i: floor.post_only(i, due)
            )
        return Outcome(our_figures, floor_figures, bare, wire.counts)


def verdict(outcome: Outcome, concurrency: int) -> list[str]:
    """The bounds a create must keep; each broken one as a line."""
    ours, floor, wire = outcome.ours, outcome.floor, outcome.wire
    done = max(ours.requests, 1)
    broken = []
    if ours.failures or floor.failures or outcome.bare_post.failures:
        broken.append("some requests failed")
    if ours.percentile(50) > P50_BOUND * floor.percentile(50):
        broken.append(f"p50 over {P50_BOUND} x the floor's")
    if ours.throughput < THROUGHPUT_BOUND * floor.throughput:
        broken.append(f"throughput under {THROUGHPUT_BOUND} x the floor's")
    if wire["Table"] > TABLE_REQUESTS_BOUND * done:
        broken.append(f"over {TABLE_REQUESTS_BOUND} Table Storage requests per create")
    if wire["Key Vault"]:
        broken.append("Key Vault was read with a token in memory")
    return broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help=f"per side, at most {MAX_REQUESTS}")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds per side")
    parser.add_argument("--no-bounds", action="store_true", help="print the figures, judge only failures")
    args = parser.parse_args(argv)
    requests, concurrency = max(1, min(args.requests, MAX_REQUESTS)), max(1, args.concurrency)
    outcome = asyncio.run(run(requests, concurrency, args.deadline))
    ours, floor = outcome.ours, outcome.floor
    for figures in (ours, floor, outcome.bare_post):
        print(figures.line())
    print(
        f"create_tickets: ours against the floor: p50 x{ours.percentile(50) / max(floor.percentile(50), 1e-9):.2f} "
        f"(bound {P50_BOUND}), throughput x{ours.throughput / max(floor.throughput, 1e-9):.2f} "
        f"(bound >= {THROUGHPUT_BOUND}) at concurrency {concurrency}"
    )
    print(f"create_tickets: requests per create on the wire: {per_operation(outcome.wire, ours.requests)}")
    print("create_tickets: floor per create: ServiceNow 1, Table 2 (the claim, then the ticket row)")
    broken = verdict(outcome, concurrency)
    if args.no_bounds:
        broken = [line for line in broken if "failed" in line]
    for line in broken:
        print(f"create_tickets: FAIL: {line}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
