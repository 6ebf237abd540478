"""The connector's push Business Rule, played by the simulator (next-features facts A1-A5).

Once told the hook URL and the key (``POST /__sim/push``), after every insert and every real
update of an ``incident`` or ``change_request`` record whose ``correlation_display`` is the
connector's and whose ``correlation_id`` is set, it does what the async rule the connector hands
out does: builds the same compact JSON body, signs ``timestamp + "." + body`` with HMAC-SHA256
under the Base64-decoded key (``CertificateEncryption.generateMac``), and POSTs it with the same
headers, in the background ("fire and forget": no retry, an error is only recorded).

Told to, it misbehaves as the platform may: ``drop`` loses the next N calls, ``duplicate`` sends
the next N twice, ``reorder`` holds each of the next N calls until the call after it has been
sent, ``delay_seconds`` waits (real time) before each call. Every call is recorded, with its
headers, for tests to inspect or replay (``GET /__sim/push``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .clock import Clock

PUSH_TABLES = ("incident", "change_request")
CONNECTOR_DISPLAY = "Microsoft 365 Security Connector"
TIMESTAMP_HEADER = "X-Connector-Timestamp"
SIGNATURE_HEADER = "X-Connector-Signature"
MAX_RECORDED = 1000


class PushConfigError(ValueError):
    pass


@dataclass
class PushConfig:
    url: str
    key: bytes
    correlation_display: str = CONNECTOR_DISPLAY
    delay_seconds: float = 0.0
    drop: int = 0
    duplicate: int = 0
    reorder: int = 0

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> PushConfig:
        url, key = body.get("url"), body.get("key")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise PushConfigError("url must be the hook URL")
        try:
            decoded = base64.b64decode(str(key), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PushConfigError("key must be the Base64 key") from exc
        counts = {name: body.get(name, 0) for name in ("drop", "duplicate", "reorder")}
        if not all(isinstance(n, int) and n >= 0 for n in counts.values()):
            raise PushConfigError("drop, duplicate and reorder must be non-negative integers")
        delay = body.get("delay_seconds", 0)
        if not isinstance(delay, int | float) or delay < 0:
            raise PushConfigError("delay_seconds must be a non-negative number")
        display = body.get("correlation_display", CONNECTOR_DISPLAY)
        return cls(url, decoded, str(display), float(delay), **counts)

    def public(self) -> dict[str, Any]:
        """The settings without the key."""
        return {
            "url": self.url,
            "correlation_display": self.correlation_display,
            "delay_seconds": self.delay_seconds,
            "drop": self.drop,
            "duplicate": self.duplicate,
            "reorder": self.reorder,
        }


@dataclass
class PushCall:
    table: str
    sys_id: str
    body: str
    headers: dict[str, str]
    fate: str = "pending"  # pending, held, dropped, sent, failed
    copies: int = 1  # 2 when it is to be duplicated
    statuses: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "sys_id": self.sys_id,
            "body": self.body,
            "headers": self.headers,
            "fate": self.fate,
            "statuses": self.statuses,
        }


def sign(key: bytes, timestamp: str, body: str) -> str:
    mac = hmac.new(key, f"{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


class BusinessRulePlayer:
    """One instance's push rule: off until configured; calls recorded, sent in the background."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.config: PushConfig | None = None
        self.calls: list[PushCall] = []
        self._held: list[PushCall] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def configure(self, config: PushConfig | None) -> None:
        self.config = config
        self._held.clear()

    def reset(self) -> None:
        self.configure(None)
        self.calls.clear()

    def on_write(self, table: str, record: dict[str, str]) -> None:
        """The rule's trigger: after insert or update (called by the record store)."""
        config = self.config
        if config is None or table not in PUSH_TABLES:
            return
        if record.get("correlation_display") != config.correlation_display or not record.get(
            "correlation_id"
        ):
            return
        call = self._call(config, table, record)
        self.calls.append(call)
        del self.calls[:-MAX_RECORDED]
        self._dispatch(config, call)

    def _call(self, config: PushConfig, table: str, record: dict[str, str]) -> PushCall:
        body = json.dumps(
            {
                "table": table,
                "sys_id": record["sys_id"],
                "sys_mod_count": int(record.get("sys_mod_count") or "0"),
                "sys_updated_on": record.get("sys_updated_on", ""),
            },
            separators=(",", ":"),
        )
        timestamp = str(int(self._clock.timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ServiceNow/1.0",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(config.key, timestamp, body),
        }
        return PushCall(table, record["sys_id"], body, headers)

    def _dispatch(self, config: PushConfig, call: PushCall) -> None:
        if config.drop > 0:
            config.drop -= 1
            call.fate = "dropped"
            return
        if config.duplicate > 0:
            config.duplicate -= 1
            call.copies = 2
        if config.reorder > 0:
            config.reorder -= 1
            call.fate = "held"
            self._held.append(call)
            return
        self._start(config, call)
        while self._held:
            self._start(config, self._held.pop(0), after=call)

    def _start(self, config: PushConfig, call: PushCall, after: PushCall | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._send(config, call, after))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, config: PushConfig, call: PushCall, after: PushCall | None) -> None:
        if config.delay_seconds:
            await asyncio.sleep(config.delay_seconds)
        for _ in range(50):  # a held call goes once the one it was swapped with went
            if after is None or after.fate != "pending":
                break
            await asyncio.sleep(0.01)
        session = self._session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._session = session
        for _ in range(call.copies):
            try:
                async with session.post(config.url, data=call.body.encode(), headers=call.headers) as answer:
                    call.statuses.append(answer.status)
                    call.fate = "sent"
            except (aiohttp.ClientError, TimeoutError):
                call.fate = "failed"  # RESTMessageV2 has no retry: the call is simply lost

    async def drain(self) -> None:
        """Wait for the calls in flight (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
