"""The timer's fan-out at scale: 10,000 connected tenants, some sends failing.

Azurite holds the `connections` table and the `sync-requests` queue. N connected rows (one
partition per tenant, so no batch transactions: concurrent upserts) and 2% more in another status
(never queued) are seeded; then the production `SyncFanout.enqueue_connected` (the real
`ConnectionRepository` listing, the real `StorageQueue`) runs through `FlakyQueue`, which fails a
share of first attempts before sending (`--fail`) and a smaller share after sending (`--lost`: the
message is on the queue but the answer is lost, so the retry duplicates it).

Afterwards every message is received (a visibility timeout longer than the count, so none is seen
twice) and counted per tenant. Pass: every connected tenant is there, and exactly once, but a tenant
whose answer was lost, exactly twice (its retry); nothing for another status. Exit 1 on any
difference, or when the fan-out takes longer than `--bound` seconds (default 120: the timer fires
every 5 minutes and the fan-out must end well inside that, under half, leaving the rest for the
housekeeping after it and for a throttled account's backoffs; measured about 30 s for 10,000 on a
shared 2-core machine running Azurite too, where the client's CPU is the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

from azure.data.tables.aio import TableServiceClient
from azure.storage.queue import TextBase64DecodePolicy
from azure.storage.queue.aio import QueueClient

from bench.wire import WireCount, per_operation
from localdev.azurite import Azurite
from shared.clock import SYSTEM_CLOCK
from shared.errors import SyncEnqueueFailed
from shared.models import ConnectionStatus
from shared.records import Connection
from shared.services.sync_config import SyncConfig
from shared.services.sync_fanout import ENQUEUE_CONCURRENCY, SyncFanout
from shared.stores.connections import ConnectionRepository, OAuthStateRepository
from shared.stores.queues import StorageQueue
from shared.stores.tables import TableStore
from tests.fakes.sync import FlakyQueue

SEED_CONCURRENCY = 64


async def _seed(connections: ConnectionRepository, tenants: list[str], status: ConnectionStatus) -> None:
    gate = asyncio.Semaphore(SEED_CONCURRENCY)
    now = datetime.now(UTC)

    async def put(tenant_id: str) -> None:
        async with gate:
            await connections.put(
                Connection(
                    tenant_id=tenant_id, instance="contoso", instance_url="https://contoso.service-now.com",
                    client_id="client", status=status, updated_at=now,
                )
            )  # fmt: skip

    await asyncio.gather(*(put(t) for t in tenants))


async def _receive_all(connection_string: str, queue_name: str) -> Counter[str]:
    """Tenant id -> messages on the queue. Received, not peeked: peeking sees at most 32."""
    client = QueueClient.from_connection_string(
        connection_string, queue_name, message_decode_policy=TextBase64DecodePolicy()
    )
    seen: Counter[str] = Counter()
    try:
        while True:
            batch = [m async for m in client.receive_messages(messages_per_page=32, visibility_timeout=600)]
            if not batch:
                return seen
            seen.update(json.loads(m.content)["tenantId"] for m in batch)
    finally:
        await client.close()


def _check(tenants: list[str], others: list[str], lost: set[str], seen: Counter[str]) -> list[str]:
    problems = [f"tenant {t}: {seen[t]} message(s), expected {2 if t in lost else 1}"
                for t in tenants if seen[t] != (2 if t in lost else 1)]  # fmt: skip
    problems += [f"tenant {t} ({'not connected' if t in others else 'unknown'}) was queued"
                 for t in seen if t in others or t not in tenants]  # fmt: skip
    return problems


async def run(count: int, fail: float, lost_share: float, bound: float) -> int:
    azurite = Azurite()
    endpoints = await azurite.start()
    store = TableStore(
        TableServiceClient.from_connection_string(endpoints.connection_string),
        table_prefix=f"bench{uuid.uuid4().hex[:8]}",
    )
    queue_name = f"bench-fanout-{uuid.uuid4().hex[:8]}"
    queue = StorageQueue.from_connection_string(endpoints.connection_string, queue_name)
    try:
        connections = ConnectionRepository(store)
        tenants = [str(uuid.uuid4()) for _ in range(count)]
        others = [str(uuid.uuid4()) for _ in range(max(1, count // 50))]
        started = time.perf_counter()
        await _seed(connections, tenants, ConnectionStatus.CONNECTED)
        await _seed(connections, others, ConnectionStatus.REAUTHORIZATION_REQUIRED)
        print(
            f"fanout: seeded {count} connected + {len(others)} other rows in {time.perf_counter() - started:.1f} s"
        )

        chance = random.Random(20250301)
        flaky = FlakyQueue(queue)
        flaky.fail_before = {t: 1 for t in tenants if chance.random() < fail}
        flaky.fail_after = {
            t: 1 for t in tenants if t not in flaky.fail_before and chance.random() < lost_share
        }
        lost = set(flaky.fail_after)
        service = SyncFanout(
            connections=connections, queue=flaky, states=OAuthStateRepository(store), config=SyncConfig(),
            clock=SYSTEM_CLOCK,
        )  # fmt: skip
        wire = WireCount(
            {
                "Table": f"http://127.0.0.1:{endpoints.table_port}",
                "Queue": f"http://127.0.0.1:{endpoints.queue_port}",
            }
        )
        started = time.perf_counter()
        try:
            with wire.counting():
                queued = await service.enqueue_connected("timer")
        except SyncEnqueueFailed as error:
            queued, raised = -1, error.message
        else:
            raised = ""
        wall = time.perf_counter() - started

        seen = await _receive_all(endpoints.connection_string, queue_name)
        problems = _check(tenants, others, lost, seen)
        print(
            f"fanout: {count} tenants queued in {wall:.2f} s ({count / wall:.0f} per s, "
            f"{ENQUEUE_CONCURRENCY} sends in flight at most, {flaky.most_in_flight} seen)"
        )
        print(
            f"fanout: on the wire per tenant: {per_operation(wire.counts, count)} (floor: Queue 1, Table 0.001)"
        )
        print(
            f"fanout: injected {len(flaky.fail_before)} failures before sending and {len(lost)} after "
            f"(answer lost); {sum(flaky.attempts.values())} send attempts in all"
        )
        print(
            f"fanout: on the queue {sum(seen.values())} messages for {len(seen)} tenants: "
            f"{sum(1 for t in tenants if seen[t] >= 1)} of {count} present, "
            f"{sum(n - 1 for n in seen.values())} duplicates (expected {len(lost)}: the lost answers' retries)"
        )
        for problem in problems[:20]:
            print(f"fanout: {problem}")
        failed = False
        if raised or queued != count or problems:
            print(f"fanout: FAIL: {len(problems)} tenant(s) wrong, returned {queued} {raised}")
            failed = True
        if wall > bound:
            print(f"fanout: FAIL: {wall:.1f} s is over the bound of {bound:.0f} s")
            failed = True
        return 1 if failed else 0
    finally:
        await queue.aclose()
        await store.aclose()
        await azurite.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument(
        "--fail", type=float, default=0.01, help="share of first sends failing before sending"
    )
    parser.add_argument(
        "--lost", type=float, default=0.002, help="share of first sends failing after sending"
    )
    parser.add_argument("--bound", type=float, default=120.0, help="seconds the fan-out may take")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(
            asyncio.wait_for(run(args.tenants, args.fail, args.lost, args.bound), timeout=args.deadline)
        )
    except TimeoutError:
        print(f"fanout: FAIL: did not finish within {args.deadline:.0f} s")
        return 1


if __name__ == "__main__":
    sys.exit(main())
