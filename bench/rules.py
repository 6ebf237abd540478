"""Rules at their daily evaluation: requests per tenant per evaluation, counted on the wire.

One process runs Azurite, the Key Vault and Entra/Graph stand-ins, a ServiceNow simulator and the
function app on the local host; each tenant is connected through the real OAuth flow (each its
own grant on the one simulator) and given one rule through `PUT /api/rules/{id}` that matches every
action of the stand-in with points to gain (about half of its 21). Then the production daily
Secure Score check (`container.remediation_check`, which calls the rules after its read) runs for
every tenant at once, twice: the first evaluation creates the tickets, the second (the same day)
must create none.

Printed per evaluation: requests per tenant on the wire by service (`bench/wire.py`), tickets
created, wall time (Queue and Key Vault requests include the local host's queue polling and the
first read of each tenant's tokens: neither is the rules'). Bounds (exit 1 past one): Graph requests per tenant = the check's read (1
scores + the profile pages), none more for the rules; ServiceNow requests per tenant = the tickets
created (one POST each: the token is in memory); the second evaluation creates nothing and sends
ServiceNow nothing. `--no-bounds` judges nothing but that it ran. Bounded: `--tenants` (at most
20) and a `--deadline` in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
import uuid
from collections import Counter
from typing import Any

import httpx

from bench.create_tickets import connect
from bench.local_stack import SERVICENOW_CLIENT, local_stack
from bench.wire import WireCount

MAX_TENANTS = 20
RULE = {
    "name": "Everything with points to gain",
    "match": {"includeDeprecated": False},
    "ticket": {"type": "incident", "priority": 3, "dueInDays": 30},
    "maxPerRun": 25,
}


async def _evaluate(container: Any, tenants: list[str], wire: WireCount) -> tuple[Counter[str], int, float]:
    """The daily check of every tenant at once; the requests it sent and the rule tickets it made."""
    rows = [await container.connections.get(tenant) for tenant in tenants]
    before = wire.snapshot()
    started = time.perf_counter()
    await asyncio.gather(*(container.remediation_check.check_tenant(row) for row in rows))
    wall = time.perf_counter() - started
    made = 0
    for tenant in tenants:
        rule = await container.rules.get(tenant, "bench")
        made += len(rule.last_run.created) if rule.last_run else 0
    return wire.since(before), made, wall


def _report(name: str, spent: Counter[str], made: int, tenants: int, pages: int, wall: float) -> list[str]:
    per = {
        service: spent[service] / tenants
        for service in ("Graph", "ServiceNow", "Table", "Queue", "Key Vault")
    }
    print(
        f"rules: {name}: requests per tenant per evaluation on the wire: Graph {per['Graph']:.2f} (the check's "
        f"read: 1 + {pages} pages), ServiceNow {per['ServiceNow']:.2f}, Table {per['Table']:.2f}, Queue "
        f"{per['Queue']:.2f}, Key Vault {per['Key Vault']:.2f}; tickets created per tenant {made / tenants:.2f}; "
        f"wall time {wall:.2f} s"
    )
    problems = []
    if spent["Graph"] != tenants * (1 + pages):
        problems.append(f"{name}: {spent['Graph']} Graph requests, expected {tenants * (1 + pages)}")
    if spent["ServiceNow"] != made:
        problems.append(f"{name}: {spent['ServiceNow']} ServiceNow requests for {made} tickets")
    return problems


async def run(tenants: int, bounds: bool) -> int:
    from shared.bootstrap import get_container
    from shared.identity import PRINCIPAL_HEADER, encode_principal

    async with local_stack() as stack:
        ids = [str(uuid.uuid4()) for _ in range(tenants)]
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as api:
            for tenant in ids:
                admin = {
                    PRINCIPAL_HEADER: encode_principal(
                        tenant, tenant, ["Connector.Admin"], name="Bench Admin"
                    )
                }
                await connect(api, admin, stack.simulator.url, SERVICENOW_CLIENT)
                (await api.put("/api/rules/bench", json=RULE, headers=admin)).raise_for_status()
        container = get_container()
        pages = math.ceil(len(stack.entra.state.actions) / stack.entra.state.page_size)
        problems: list[str] = []
        with stack.wire.counting():
            for name in ("first evaluation", "second evaluation, the same day"):
                spent, made, wall = await _evaluate(container, ids, stack.wire)
                problems += _report(name, spent, made, tenants, pages, wall)
        if made or spent["ServiceNow"]:
            problems.append("the second evaluation created tickets")
    for problem in problems:
        print(f"rules: FAIL: {problem}")
    return 1 if problems and bounds else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--no-bounds", action="store_true", help="judge only that it ran")
    parser.add_argument("--deadline", type=float, default=240.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(
            asyncio.wait_for(run(min(args.tenants, MAX_TENANTS), not args.no_bounds), timeout=args.deadline)
        )
    except TimeoutError:
        print(f"rules: FAIL: did not finish within {args.deadline:.0f} s")
        return 1


if __name__ == "__main__":
    sys.exit(main())
