"""Throughput and latency of POST /api/tickets through the local host, against the simulator's own POST.

One process runs Azurite, the Key Vault and Entra/Graph stand-ins, a ServiceNow simulator and the
function app on the local host; a tenant is connected through the real OAuth flow. Then the same
number of creates, at the same concurrency, go (1) through our API (claim, ServiceNow create, row
write, claim completion) and (2) straight to the simulator's `POST /api/now/table/incident`. The
ratio is our overhead over the bare ServiceNow call. Every figure comes from the same run on the
same machine, so the ratio means something even where the absolute numbers do not.

Bounded: `--requests` per side (default 200, at most 2,000) and a `--deadline` in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
GRAPH_CLIENT = ("bench-graph-client", "bench-graph-secret-0123456789")
TENANT = "5b1c0d4e-0000-4000-8000-00000000be01"
ADMIN = "5b1c0d4e-0000-4000-8000-00000000ad01"
MAX_REQUESTS = 2000


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
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0

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


async def run(requests: int, concurrency: int, deadline: float) -> tuple[Figures, Figures]:
    from localdev.azurite import Azurite
    from localdev.entra import start_entra
    from localdev.host import HostConfig, LocalHost
    from localdev.keyvault import start_keyvault
    from localdev.servicenow import start_simulator
    from localdev.tls import ensure_local_tls
    from shared.bootstrap import Container, get_container, set_container
    from shared.identity import PRINCIPAL_HEADER, encode_principal
    from shared.settings import get_settings

    azurite = Azurite()
    endpoints = await azurite.start()
    workdir = tempfile.TemporaryDirectory()
    tls = ensure_local_tls(Path(workdir.name) / "tls")
    keyvault = await start_keyvault(tls=tls)
    entra = await start_entra(tls=tls, clients={GRAPH_CLIENT[0]: GRAPH_CLIENT[1]})
    servicenow_client = ("bench-client", "bench-client-secret")
    simulator = await start_simulator(clients={servicenow_client[0]: servicenow_client[1]})
    host = None
    try:
        os.environ.update(
            {
                "DataStorage": endpoints.connection_string,
                "AzureWebJobsStorage": endpoints.connection_string,
                "KEY_VAULT_URL": keyvault.url,
                "LOCAL_CA_BUNDLE": str(tls.ca_path),
                "ENTRA_AUTHORITY_HOST": entra.url,
                "GRAPH_BASE_URL": entra.url,
                "GRAPH_CLIENT_ID": GRAPH_CLIENT[0],
                "GRAPH_CLIENT_SECRET": GRAPH_CLIENT[1],
                "PORTAL_URL": "https://portal.example.test/",
                "SYNC_SCHEDULE": "0 0 0 1 1 *",
                "LOCAL_DEV": "true",
            }
        )
        import function_app

        host = LocalHost(function_app.app, HostConfig.load(REPO_ROOT / "host.json"))
        url = await host.start(port=0)
        os.environ["OAUTH_REDIRECT_URI"] = f"{url}/api/oauth/callback"
        get_settings.cache_clear()
        set_container(Container())
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as api:
            admin = {
                PRINCIPAL_HEADER: encode_principal(TENANT, ADMIN, ["Connector.Admin"], name="Bench Admin")
            }
            await connect(api, admin, simulator.url, servicenow_client)
            due = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()

            async def ours(index: int) -> bool:
                body = {
                    "type": "incident", "name": f"Bench ticket {index}", "description": "Created by the benchmark.",
                    "priority": 3, "dueDate": due, "recommendationSource": "user", "recommendationCategory": "Data",
                }  # fmt: skip
                headers = {**admin, "Idempotency-Key": f"bench-{index}"}
                response = await api.post("/api/tickets", json=body, headers=headers)
                return response.status_code == 201

            await ours(-1)  # warm up: token into memory, tables created, connections open
            our_figures = await measure("POST /api/tickets", requests, concurrency, deadline, ours)

        grants = (await httpx.AsyncClient().get(f"{simulator.url}/__sim/tokens")).json()
        grant_list = grants["grants"] if isinstance(grants, dict) else grants
        token = grant_list[0]["access_tokens"][-1]["access_token"]
        async with httpx.AsyncClient(base_url=simulator.url, timeout=30, limits=limits) as direct:
            bearer = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

            async def theirs(index: int) -> bool:
                fields = {
                    "short_description": f"Direct {index}", "description": "Created by the benchmark.",
                    "impact": "2", "urgency": "2", "due_date": f"{due} 23:59:59",
                    "correlation_id": f"bench-direct-{index}", "correlation_display": "bench",
                }  # fmt: skip
                response = await direct.post("/api/now/table/incident", json=fields, headers=bearer)
                return response.status_code == 201

            await theirs(-1)
            sim_figures = await measure("simulator POST incident", requests, concurrency, deadline, theirs)
        return our_figures, sim_figures
    finally:
        if host is not None:
            await host.stop()
        await get_container().aclose()
        set_container(None)
        await simulator.aclose()
        await entra.aclose()
        await keyvault.aclose()
        await azurite.stop()
        workdir.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help=f"per side, at most {MAX_REQUESTS}")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds per side")
    args = parser.parse_args(argv)
    requests = max(1, min(args.requests, MAX_REQUESTS))
    ours, simulator = asyncio.run(run(requests, max(1, args.concurrency), args.deadline))
    print(ours.line())
    print(simulator.line())
    if ours.throughput and simulator.percentile(50):
        print(
            f"create_tickets: overhead: p50 x{ours.percentile(50) / simulator.percentile(50):.2f}, "
            f"p95 x{ours.percentile(95) / max(simulator.percentile(95), 1e-9):.2f}, "
            f"throughput x{simulator.throughput / ours.throughput:.2f} lower "
            f"(concurrency {args.concurrency})"
        )
    if ours.failures or simulator.failures:
        print("create_tickets: FAIL: some requests failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
