"""Push from ServiceNow: how long a state change in ServiceNow takes to show in
`GET /api/tickets/{id}`, over 100 changes (goal: every one within 5 seconds).

One process runs Azurite, the Key Vault and Entra/Graph stand-ins, a ServiceNow simulator and the
function app on the local host (host.json's queue polling, `maxPollingInterval` 2 s, as
`make run`). A tenant is connected through the real OAuth flow, push is turned on through
`POST /api/provisioning/push/rotate`, and the simulator plays the Business Rule with the hook URL
and key it answered. `--tickets` incidents are created through the API. Then `--changes` state
changes are made in the simulator, `--concurrency` at a time (each on its own ticket), and each
one's time runs from the change until `GET /api/tickets/{id}` shows the new state (polled every
50 ms). The sync timer never fires: only the push can bring the news.

Printed: median, p95 and worst latency, and the requests on the wire per change (ServiceNow reads,
Table Storage, Queue Storage). Bound (exit 1 past it): worst <= 5 s, and every change seen within
`--deadline` seconds. `--no-bounds` judges only the changes never seen (for tiny runs).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from bench.create_tickets import connect, percentile
from bench.local_stack import SERVICENOW_CLIENT, local_stack
from bench.wire import per_operation

TENANT = "5b1c0d4e-0000-4000-8000-00000000be02"
ADMIN = "5b1c0d4e-0000-4000-8000-00000000ad02"
WORST_BOUND_S = 5.0
MAX_CHANGES = 1000
POLL_S = 0.05
STATES = ("2", "3")  # In Progress and On Hold, alternately: every change is a real write


@dataclass(frozen=True)
class Outcome:
    latencies_s: list[float]
    missed: int
    wire: Counter[str]


async def _wait_state(
    api: httpx.AsyncClient, headers: dict[str, str], ticket_id: str, state: str, deadline: float
) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < deadline:
        answer = await api.get(f"/api/tickets/{ticket_id}", headers=headers)
        if answer.status_code == 200 and answer.json()["state"] == state:
            return time.perf_counter() - started
        await asyncio.sleep(POLL_S)
    return None


async def _changes(
    api: httpx.AsyncClient, headers: dict[str, str], simulator: Any, tickets: list[dict[str, Any]], changes: int,
    concurrency: int, deadline: float,
) -> tuple[list[float], int]:  # fmt: skip
    latencies: list[float] = []
    missed = 0
    work = iter(range(changes))
    lanes = [tickets[lane::concurrency] for lane in range(concurrency)]

    async def lane(own: list[dict[str, Any]]) -> None:
        nonlocal missed
        for index in work:
            ticket = own[index % len(own)]
            state = STATES[1] if ticket.get("state") == STATES[0] else STATES[0]
            ticket["state"] = state
            simulator.state.records.update("incident", ticket["sysId"], {"state": state}, user="itil")
            took = await _wait_state(api, headers, ticket["id"], state, deadline)
            if took is None:
                missed += 1
            else:
                latencies.append(took)

    await asyncio.gather(*(lane(own) for own in lanes if own))
    return latencies, missed


async def run(tickets: int, changes: int, concurrency: int, deadline: float) -> Outcome:
    from localdev.servicenow.push import PushConfig
    from shared.identity import PRINCIPAL_HEADER, encode_principal

    async with local_stack() as stack:
        simulator, wire = stack.simulator, stack.wire
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as api:
            admin = {
                PRINCIPAL_HEADER: encode_principal(TENANT, ADMIN, ["Connector.Admin"], name="Bench Admin")
            }
            await connect(api, admin, simulator.url, SERVICENOW_CLIENT)
            rotated = (
                (await api.post("/api/provisioning/push/rotate", headers=admin)).raise_for_status().json()
            )
            simulator.state.push.configure(
                PushConfig.from_json({"url": rotated["hookUrl"], "key": rotated["key"]})
            )
            made = [await _create(api, admin, n) for n in range(tickets)]
            await simulator.state.push.drain()
            await asyncio.sleep(3.0)  # the creates' own pushes handled before the clock starts
            with wire.counting():
                latencies, missed = await _changes(
                    api, admin, simulator, made, changes, concurrency, deadline
                )
        return Outcome(latencies, missed, wire.counts)


async def _create(api: httpx.AsyncClient, headers: dict[str, str], index: int) -> dict[str, Any]:
    body = {
        "type": "incident", "name": f"Push bench {index}", "description": "Created by the push benchmark.",
        "priority": 3, "dueDate": "2031-01-01", "recommendationSource": "user", "recommendationCategory": "Data",
    }  # fmt: skip
    answer = await api.post(
        "/api/tickets", json=body, headers={**headers, "Idempotency-Key": f"push-{index}"}
    )
    answer.raise_for_status()
    return dict(answer.json())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=100, help=f"at most {MAX_CHANGES}")
    parser.add_argument("--tickets", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=5, help="changes in flight at once")
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds a change may take to show")
    parser.add_argument(
        "--no-bounds", action="store_true", help="print the figures, judge only missed changes"
    )
    args = parser.parse_args(argv)
    changes = max(1, min(args.changes, MAX_CHANGES))
    tickets = max(1, args.tickets)
    concurrency = max(1, min(args.concurrency, tickets))
    outcome = asyncio.run(run(tickets, changes, concurrency, args.deadline))
    seen = outcome.latencies_s
    if seen:
        print(
            f"push_latency: {len(seen)} changes seen, median {statistics.median(seen):.2f} s, "
            f"p95 {percentile(seen, 95):.2f} s, worst {max(seen):.2f} s (bound {WORST_BOUND_S} s)"
        )
    print(f"push_latency: missed (not seen within {args.deadline} s): {outcome.missed}")
    print(
        f"push_latency: requests per change on the wire: {per_operation(outcome.wire, max(len(seen), 1))} "
        "(Table counts the benchmark's own polling GETs too)"
    )
    broken = []
    if outcome.missed:
        broken.append(f"{outcome.missed} change(s) never shown")
    if not args.no_bounds and seen and max(seen) > WORST_BOUND_S:
        broken.append(f"worst latency over {WORST_BOUND_S} s")
    for line in broken:
        print(f"push_latency: FAIL: {line}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
