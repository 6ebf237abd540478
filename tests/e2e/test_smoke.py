"""`scripts/smoke.py`, run as azd's postdeploy hook runs it (a subprocess), against the local host
against hosts it must fail (one that answers every route anonymously, one that is down), and
against one that is still starting."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from shared.identity import PRINCIPAL_HEADER
from tests.e2e import api
from tests.e2e.conftest import REPO_ROOT, Stack

pytestmark = pytest.mark.e2e
SCRIPT = REPO_ROOT / "scripts" / "smoke.py"
PROTECTED = ("/api/provisioning", "/api/tickets", "/api/operator/connections")


async def smoke(*args: str) -> tuple[int, list[str]]:
    """Run the script without blocking the loop that serves the local host."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, output.decode().splitlines()


async def test_the_local_host_passes_every_check(stack: Stack) -> None:
    tenant = stack.new_tenant()
    await api.connect(stack, tenant, stack.simulator)
    principal = stack.as_admin(tenant)[PRINCIPAL_HEADER]
    code, lines = await smoke(stack.url, "--principal-header", principal, "--wait", "5")
    assert code == 0, lines
    assert lines[0] == "PASS health: 200 ok"
    assert lines[1].startswith("PASS openapi: ")
    assert lines[2:5] == [f"PASS anonymous {route}: 401" for route in PROTECTED]
    assert lines[5] == "PASS provisioning status: 200 connected"
    assert lines[-1] == f"smoke test passed ({stack.url})"


async def test_without_credentials_the_status_check_is_skipped(stack: Stack) -> None:
    code, lines = await smoke(stack.url, "--wait", "5")
    assert code == 0, lines
    assert "SKIP provisioning status: no --token given" in lines


async def test_a_rejected_token_fails_and_is_never_printed(stack: Stack) -> None:
    token = "eyJhbGciOiJub25lIn0.not-a-real-token-0123456789"
    code, lines = await smoke(stack.url, "--token", token, "--wait", "5")
    assert code == 1, lines
    assert "FAIL provisioning status: 401 unauthenticated" in lines
    assert not [line for line in lines if token in line]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A tiny host answering every request with `handler`; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def open_door(request: web.Request) -> web.StreamResponse:
    """200 to everything, as an app without authentication would answer."""
    return web.json_response({"status": "ok", "paths": {route: {} for route in PROTECTED}})


async def test_a_host_that_answers_anonymous_callers_fails() -> None:
    async with serving(open_door) as url:
        code, lines = await smoke(url, "--wait", "0")
    assert code == 1, lines
    assert lines[0] == "PASS health: 200 ok"
    for route in PROTECTED:
        assert f"FAIL anonymous {route}: 200: expected 401 for a caller without credentials" in lines
    assert lines[-1].startswith("smoke test FAILED: anonymous /api/provisioning, ")


async def test_a_starting_host_is_waited_for() -> None:
    health_calls: list[str] = []

    async def starting(request: web.Request) -> web.StreamResponse:
        if request.path == "/api/health":
            health_calls.append(request.path)
            if len(health_calls) == 1:
                return web.json_response({"error": {"code": "starting"}}, status=503)
        return await open_door(request)

    async with serving(starting) as url:
        _, lines = await smoke(url, "--wait", "20")
    assert lines[:2] == ["     health: not yet (503); retrying", "PASS health: 200 ok"], lines
    assert len(health_calls) == 2


async def test_a_host_that_is_down_fails() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    code, lines = await smoke(f"http://127.0.0.1:{port}", "--wait", "0", "--timeout", "2")
    assert code == 1, lines
    assert lines[0].startswith("FAIL health: no answer")
    assert len(lines) == 2


async def test_a_base_url_that_is_not_http_is_refused() -> None:
    code, lines = await smoke("file:///etc/passwd")
    assert code == 2, lines
    assert any("base_url must be an http(s) URL" in line for line in lines)
