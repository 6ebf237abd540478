"""Cold start: the first request of a fresh worker process, phase by phase, against the same request warm.

Flex Consumption starts new workers to scale out and after idling; the first request on one pays for
everything the process has not done yet. The parent starts Azurite, the Key Vault and Entra/Graph
stand-ins and the ServiceNow simulator once and connects one tenant through the real OAuth flow
(`bench.create_tickets.connect`). Each sample is then a NEW interpreter (`python -m
bench.cold_start_child post|get`), so module caches and connections are really cold. It times, in order:

- python start: from the parent's spawn to the child's first line (the platform's on Azure);
- `import azure.functions` (the Python worker has it loaded before the app), then `import function_app`;
- composition: the container's adapters built one at a time, as the first request would build them
  (settings; Table, Key Vault, ServiceNow HTTP, Graph and queue clients; then the services);
- the local host started (not on Azure, so neither counted nor bounded). It is imported after
  composition, so the SDK modules it shares are not pre-loaded for the app, and it serves HTTP
  triggers only: on Azure the host, not the worker, polls the queues;
- the first request (`POST /api/tickets` or `GET /api/tickets`) through `localdev.host.LocalHost`;
  inside it the first access token (a Key Vault read, a refresh only if expired), the first
  connection-row read (Table Storage) and the first ServiceNow call are timed by wrapping those
  calls from here (production code is untouched); then `--warm` requests of the same kind.
  Requests on the wire per service are counted for the cold request and the warm ones.

Cold total = import function_app + composition + first request: what the first caller waits for
beyond the platform's own start. One more child runs under `-X importtime` to say how much of each
phase is imports, and of which packages. The OS file cache and the bytecode caches are warm here (on
Azure the package is read from a mounted share), and the Key Vault stand-in takes any bearer token
(on Azure the first Key Vault call first fetches a managed-identity token): the figures are a floor.

Bounds (exit 1 past one): per request kind, the median cold total <= 5 s on this machine; no warm
request makes a Key Vault request (the token is in memory); every request answers 2xx.
Bounded: `--samples` cold processes per request kind (default 5, at most 20), `--warm` requests
per process (default 20, at most 200), `--deadline` seconds for all the children (default 300).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

from bench.cold_start_child import CALLS, COMPOSITION, IMPORTS, PHASE_MARK, RESULT_MARK

KINDS = ("post", "get")
MAX_SAMPLES = 20
MAX_WARM = 200
COLD_TOTAL_BOUND_MS = 5000.0
DEV_ONLY = ("rich", "click", "pygments")  # dev dependencies (schemathesis) httpx imports if present


# --- the stand-ins once, one tenant connected, then the children one at a time ------------------------


async def _connect_tenant(simulator_url: str) -> None:
    """One tenant connected through the real OAuth flow, on a local host in this process."""
    import httpx

    from bench.create_tickets import ADMIN, TENANT, connect
    from bench.local_stack import SERVICENOW_CLIENT, local_host
    from shared.identity import PRINCIPAL_HEADER, encode_principal

    async with local_host() as url, httpx.AsyncClient(base_url=url, timeout=30) as api:
        admin = {PRINCIPAL_HEADER: encode_principal(TENANT, ADMIN, ["Connector.Admin"], name="Bench Admin")}
        await connect(api, admin, simulator_url, SERVICENOW_CLIENT)


async def _spawn(
    kind: str, warm: int, services: dict[str, str], seconds: float, *, importtime: bool = False
) -> tuple[dict[str, Any], str] | None:
    """One cold child: its report and its stderr; None if it ran past `seconds` (then it is killed)."""
    import asyncio

    from bench.create_tickets import REPO_ROOT

    if seconds <= 0:
        return None
    flags = ["-X", "importtime"] if importtime else []
    process = await asyncio.create_subprocess_exec(
        sys.executable, *flags, "-m", "bench.cold_start_child", kind, "--warm", str(warm),
        "--services", json.dumps(services), "--spawned-at", repr(time.time()),
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    reports = [line[len(RESULT_MARK) :] for line in stdout.splitlines() if line.startswith(RESULT_MARK)]
    if process.returncode or not reports:
        raise RuntimeError(
            f"a cold {kind} child failed ({process.returncode}):\n{stdout[-2000:]}{stderr[-3000:]}"
        )
    return json.loads(reports[-1]), stderr


async def measure(samples: int, warm: int, deadline: float) -> tuple[list[dict[str, Any]], str]:
    """`samples` cold children per request kind, then one under `-X importtime` (its stderr)."""
    from contextlib import AsyncExitStack

    from bench.local_stack import local_services

    async with AsyncExitStack() as stack:
        services = (await stack.enter_async_context(local_services())).endpoints
        await _connect_tenant(services["ServiceNow"])
        stop_at = time.perf_counter() + deadline
        reports = []
        for kind in [kind for _ in range(samples) for kind in KINDS]:
            child = await _spawn(kind, warm, services, stop_at - time.perf_counter())
            if child is None:
                break  # the deadline: `verdict` says how many samples are missing
            reports.append(child[0])
        importtime = await _spawn(
            "post", 1, services, max(stop_at - time.perf_counter(), 0.0), importtime=True
        )
        return reports, importtime[1] if importtime else ""


# --- figures and bounds --------------------------------------------------------------------------------


def _line(label: str, values: list[float], extra: str = "") -> str:
    from statistics import median

    figures = f"{median(values):8.1f} / {max(values):8.1f} ms" if values else "       - /        - ms"
    return f"cold_start: {label:<58} {figures}{extra}"


def _cold_total(report: dict[str, Any]) -> float:
    composition = sum(report["phases"][f"composition: {label}"] for label, _ in COMPOSITION)
    return float(report["phases"]["import function_app"] + composition + report["first_ms"])


def process_lines(reports: list[dict[str, Any]]) -> list[str]:
    """The phases every child goes through, whatever its request."""
    from statistics import median

    labels = ["python start", *IMPORTS, *(f"composition: {label}" for label, _ in COMPOSITION)]
    lines = []
    for label in labels:
        modules = median(report["modules"].get(label, 0) for report in reports)
        extra = f"  (+{modules:.0f} modules)" if modules else ""
        lines.append(_line(label, [report["phases"][label] for report in reports], extra))
    compositions = [sum(r["phases"][f"composition: {label}"] for label, _ in COMPOSITION) for r in reports]
    lines.append(_line("composition total", compositions))
    lines.append(
        _line("local host started (not on Azure, not counted)", [r["local_host_ms"] for r in reports])
    )
    return lines


def request_lines(kind: str, reports: list[dict[str, Any]]) -> list[str]:
    """One request kind: the first request and the calls in it, cold total, warm requests, the wire."""
    from statistics import median

    from bench.wire import per_operation

    name = kind.upper()
    first, totals = [r["first_ms"] for r in reports], [_cold_total(r) for r in reports]
    lines = [_line(f"{name} first request (container built)", first)]
    for label in CALLS:
        firsts = [r["calls"][label]["first"] for r in reports if r["calls"][label]["first"] is not None]
        warms = [ms for r in reports for ms in r["calls"][label]["warm"]]
        if firsts:
            lines.append(_line(f"{name}   {label}", firsts, f"  (warm {median(warms):.1f})" if warms else ""))
    rest = [r["first_ms"] - sum(c["first"] or 0 for c in r["calls"].values()) for r in reports]
    lines.append(_line(f"{name}   the rest (other table calls, routing, JSON)", rest))
    warm = [ms for r in reports for ms in r["warm_ms"]]
    cold_wire, warm_wire = Counter[str](), Counter[str]()
    for report in reports:
        cold_wire.update(report["cold_wire"])
        warm_wire.update(report["warm_wire"])
    bound = f"  (bound {COLD_TOTAL_BOUND_MS:.0f})"
    return [
        *lines,
        _line(f"{name} cold total (import function_app + composition + first)", totals, bound),
        _line(f"{name} warm request (median of {len(warm)})", warm),
        f"cold_start: {name} cold/warm: first request x{median(first) / median(warm):.1f}, "
        f"cold total x{median(totals) / median(warm):.1f}",
        f"cold_start: {name} on the wire, cold request: {per_operation(cold_wire, len(reports))}",
        f"cold_start: {name} on the wire, per warm request: {per_operation(warm_wire, len(warm))}",
        f"cold_start: {name} Key Vault requests in {len(warm)} warm requests: {warm_wire['Key Vault']} (bound 0)",
    ]


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "azure" and len(parts) > 1 else parts[0]


def import_lines(stderr: str) -> list[str]:
    """Import time per phase (top-level cumulative) and the packages with most self time in it."""
    phase, totals, packages = "python start", Counter[str](), dict[str, Counter[str]]()
    for line in stderr.splitlines():
        if line.startswith(PHASE_MARK):
            phase = line[len(PHASE_MARK) :].strip()
        elif line.startswith("import time:") and "cumulative" not in line:
            head, cumulative, name = line.split("|", 2)
            packages.setdefault(phase, Counter())[_package(name.strip())] += int(head.split(":")[1])
            if name.startswith(" ") and not name.startswith("  "):
                totals[phase] += int(cumulative)
    lines = [
        f"cold_start: imports in {phase}: {total / 1000:.0f} ms; most self time (ms): "
        + ", ".join(f"{package} {us / 1000:.0f}" for package, us in packages[phase].most_common(5))
        for phase, total in totals.items()
        if phase != "python start"
    ]
    dev_only = sum(packages.get("composition", Counter())[name] for name in DEV_ONLY)
    if dev_only:
        lines.append(
            f"cold_start: of composition's imports, {dev_only / 1000:.0f} ms are {', '.join(DEV_ONLY)}, which "
            "httpx imports for its CLI when installed: the dev venv has them, production does not"
        )
    return lines


def verdict(reports: list[dict[str, Any]], samples: int) -> list[str]:
    from statistics import median

    broken = []
    for kind in KINDS:
        mine = [report for report in reports if report["kind"] == kind]
        if len(mine) < samples:
            broken.append(
                f"{len(mine)} of {samples} cold {kind.upper()} samples finished inside the deadline"
            )
        if mine and median(_cold_total(r) for r in mine) > COLD_TOTAL_BOUND_MS:
            broken.append(f"the {kind.upper()} cold total's median is over {COLD_TOTAL_BOUND_MS:.0f} ms")
    if any(report["warm_wire"].get("Key Vault") for report in reports):
        broken.append("a warm request made a Key Vault request (the token should be in memory)")
    statuses = sorted({status for report in reports for status in report["bad_statuses"]})
    if statuses:
        broken.append(f"some requests failed: HTTP {statuses}")
    return broken


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=5, help=f"per request kind, at most {MAX_SAMPLES}")
    parser.add_argument("--warm", type=int, default=20, help=f"per process, at most {MAX_WARM}")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds for all the children")
    args = parser.parse_args(argv)
    import asyncio

    samples, warm = max(1, min(args.samples, MAX_SAMPLES)), max(1, min(args.warm, MAX_WARM))
    reports, importtime = asyncio.run(measure(samples, warm, args.deadline))
    print(f"cold_start: {samples} fresh processes per request, {warm} warm requests each; median / max")
    lines = process_lines(reports) if reports else []
    for kind in KINDS:
        mine = [report for report in reports if report["kind"] == kind]
        lines += request_lines(kind, mine) if mine else []
    for line in [*lines, *import_lines(importtime)]:
        print(line)
    broken = verdict(reports, samples)
    for line in broken:
        print(f"cold_start: FAIL: {line}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
