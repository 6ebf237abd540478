"""`make run` as a developer uses it: serves /api/health and the portal, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from localdev.local_settings import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parents() -> dict[int, int]:
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def descendants_of(pid: int) -> set[int]:
    tree = parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in tree.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_serves_health_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "make-run.log").open("w")
    env = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    # A session of its own, like a terminal: Ctrl-C reaches the whole foreground process group.
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"], cwd=REPO_ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, (tmp_path / "make-run.log").read_text()
                time.sleep(0.3)
        assert response is not None, "the host did not answer in time"
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        portal = httpx.get(f"http://127.0.0.1:{port}/api/portal", timeout=5)
        assert portal.status_code == 200
        assert "text/html" in portal.headers["content-type"]
        deadline = time.monotonic() + 10
        while "Portal ready:" not in (tmp_path / "make-run.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"Portal ready: http://127.0.0.1:{port}/api/portal" in (tmp_path / "make-run.log").read_text()
        started = descendants_of(process.pid)
        assert len(started) >= 2, "make's python and Azurite should be running"

        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in started if alive(pid)], "a process outlived Ctrl-C"
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, "the port is still served"
        assert "Stopping" in (tmp_path / "make-run.log").read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
