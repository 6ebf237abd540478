"""Azurite (the Storage emulator from npm), started in memory on free or given ports.

Used by `make run` and by the test suite's session fixture. The npm package is pinned in
package.json (3.35.0: the last release that runs on Node 20) and installed by the Makefile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from localdev.local_settings import REPO_ROOT

ACCOUNT = "devstoreaccount1"
# The well-known development key that every Azurite and the old Storage Emulator accept.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://[^:]+:(\d+)")
STARTUP_TIMEOUT_S = 60.0


class AzuriteNotInstalled(RuntimeError):
    pass


@dataclass(frozen=True)
class AzuriteEndpoints:
    host: str
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        base = f"http://{self.host}"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )


class Azurite:
    """One Azurite process. `start()` returns once all three services listen."""

    def __init__(
        self, *, host: str = "127.0.0.1", blob_port: int = 0, queue_port: int = 0, table_port: int = 0
    ) -> None:
        self._host = host
        self._ports = {"Blob": blob_port, "Queue": queue_port, "Table": table_port}
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.endpoints: AzuriteEndpoints | None = None

    @staticmethod
    def executable(root: Path = REPO_ROOT) -> Path:
        path = root / "node_modules" / ".bin" / "azurite"
        if not path.exists():
            raise AzuriteNotInstalled(f"{path} is missing: run `npm ci` (the Makefile does it for you)")
        return path

    async def start(self) -> AzuriteEndpoints:
        args = [
            str(self.executable()), "--inMemoryPersistence", "--silent", "--disableTelemetry",
            "--skipApiVersionCheck", "--loose",
            "--blobHost", self._host, "--blobPort", str(self._ports["Blob"]),
            "--queueHost", self._host, "--queuePort", str(self._ports["Queue"]),
            "--tableHost", self._host, "--tablePort", str(self._ports["Table"]),
        ]  # fmt: skip
        self._process = await asyncio.create_subprocess_exec(
            *args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop Azurite ourselves
            cwd=os.fspath(REPO_ROOT),
        )
        try:
            ports = await asyncio.wait_for(self._read_ports(), STARTUP_TIMEOUT_S)
        except BaseException:
            await self.stop()
            raise
        self._drain = asyncio.create_task(_drain(self._process))
        self.endpoints = AzuriteEndpoints(self._host, ports["Blob"], ports["Queue"], ports["Table"])
        return self.endpoints

    async def _read_ports(self) -> dict[str, int]:
        assert self._process is not None
        assert self._process.stdout is not None
        ports: dict[str, int] = {}
        output: list[str] = []
        while len(ports) < 3:
            line = (await self._process.stdout.readline()).decode(errors="replace")
            if not line:
                raise RuntimeError("Azurite exited during start-up:\n" + "".join(output[-20:]))
            output.append(line)
            if match := _LISTENING.search(line):
                ports[match.group(1)] = int(match.group(2))
        return ports

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain


async def _drain(process: asyncio.subprocess.Process) -> None:
    # Azurite is started --silent, but a full pipe would still block it: keep reading.
    assert process.stdout is not None
    while await process.stdout.readline():
        pass
