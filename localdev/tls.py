"""A local certificate authority and one server certificate, shared by the HTTPS stand-ins.

The Key Vault SDK refuses plain HTTP (its challenge policy enforces TLS) and msal talks HTTPS only,
so the stand-ins must serve HTTPS that our clients trust. We generate a throwaway CA on first start,
write it to a directory (default `.localdev/tls/`) and reuse it afterwards, so every stand-in and
every client share one trust root: `LOCAL_CA_BUNDLE` points at `ca.pem`.
"""

from __future__ import annotations

import fcntl
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

DEFAULT_TLS_DIR = Path(".localdev/tls")
SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class LocalTls:
    """Paths of the local CA and the server certificate it signed."""

    directory: Path
    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Both stand-ins may start at the same moment (make run): one generates, the other waits and reuses.
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _usable(tls: LocalTls) -> bool:
    if not all(p.is_file() for p in (tls.ca_path, tls.cert_path, tls.key_path)):
        return False
    try:
        tls.server_context()
        tls.client_context()
    except (ssl.SSLError, OSError):
        return False
    return True


def ensure_local_tls(directory: str | Path = DEFAULT_TLS_DIR) -> LocalTls:
    """Return the CA and server certificate in `directory`, generating them if missing or unreadable."""
    import trustme  # dev-only dependency; imported here so production code never needs it

    path = Path(directory).resolve()
    path.mkdir(parents=True, exist_ok=True)
    tls = LocalTls(path, path / "ca.pem", path / "server.pem", path / "server-key.pem")
    with _locked(path):
        if _usable(tls):
            return tls
        ca = trustme.CA(organization_name="ServiceNow connector local dev")
        leaf = ca.issue_cert(*SERVER_NAMES)
        ca.cert_pem.write_to_path(str(tls.ca_path))
        with tls.cert_path.open("wb") as chain:
            for pem in leaf.cert_chain_pems:
                chain.write(pem.bytes())
        # The key opens with 0600 so that other local users cannot impersonate the stand-ins.
        fd = os.open(tls.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as key:
            key.write(leaf.private_key_pem.bytes())
    return tls


@dataclass
class RunningSite:
    """An aiohttp app served over HTTPS on a local port."""

    runner: web.AppRunner
    url: str

    async def aclose(self) -> None:
        await self.runner.cleanup()


async def serve_https(
    app: web.Application, *, tls: LocalTls, host: str = "127.0.0.1", port: int = 0
) -> RunningSite:
    """Serve `app` with the local certificate; port 0 picks a free port (the tests' default)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls.server_context())
    await site.start()
    bound_port = runner.addresses[0][1]  # the real port when 0 asked the OS to choose
    return RunningSite(runner, f"https://{host}:{bound_port}")
