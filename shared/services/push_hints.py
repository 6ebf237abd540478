"""The hook ServiceNow's Business Rules call: authenticate the call, queue its hints, answer.

The request path never calls ServiceNow and parses only authenticated input. In order:

1. The per-hook rate limit (`HookRateLimiter`), keyed by the path's hook id whether or not it is
   one of ours, so a 429 says nothing about which ids exist.
2. The body's size, bounded before anything reads it.
3. The hook id to its tenant and key version (one cached point read), the key (Key Vault, each
   version cached for good: a version's value never changes), and the signature: Base64 of
   HMAC-SHA256(key, timestamp + "." + raw body), compared in constant time, with the timestamp
   at most `MAX_SKEW` off our clock. An unknown hook, a missing or wrong signature and a stale
   timestamp are one and the same 401, and an unknown hook still costs one HMAC, so neither the
   answer nor its timing tells them apart.
4. A call whose signature this process has accepted before within the timestamp window is a
   replay: the same 401 (`ReplayGuard`; another instance may take one replay once, and a hint
   that is not newer than our row changes nothing).
5. Only then the body is parsed (400 when it is not one hint or an array of at most 100) and one
   message goes on the `push-hints` queue for the worker (`push_worker.py`). 202.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta

from pydantic import ValidationError

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import BadRequest, PayloadTooLarge, TooManyRequests, Unauthenticated
from shared.ports import MessageQueue
from shared.push_models import (
    HOOK_ID_PATTERN,
    MAX_HINTS,
    MAX_PUSH_BODY_BYTES,
    PushBody,
    PushHint,
    PushHintMessage,
)
from shared.push_ports import PushHooks, PushKeys
from shared.untrusted import decode_json

MAX_SKEW = timedelta(minutes=5)
REFUSED = "The push was refused: its hook, signature or timestamp is not valid."
_HOOK_ID = re.compile(HOOK_ID_PATTERN)
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE_MAX = 200  # Base64 of 32 bytes is 44 characters; anything far longer is not one
# Stands in for the key of an unknown hook, so refusing one costs what refusing a bad MAC does.
_DECOY_KEY = hashlib.sha256(b"no such hook").digest()


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    """What the Business Rule sends: Base64 of HMAC-SHA256(key, timestamp + "." + body)."""
    mac = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def signature_valid(key: bytes, timestamp: str | None, sent: str | None, body: bytes) -> bool:
    """Whether `sent` is the signature of `timestamp` and `body` under `key` (constant time)."""
    if not timestamp or not sent or len(sent) > _SIGNATURE_MAX or not _TIMESTAMP.match(timestamp):
        return False
    try:
        sent_mac = base64.b64decode(sent.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = base64.b64decode(signature(key, timestamp, body))
    # Only the canonical spelling: Base64 leaves spare bits in the last character, and a spelling
    # that differs only there would be a new signature to the replay guard.
    canonical = base64.b64encode(sent_mac).decode("ascii") == sent.strip()
    return hmac.compare_digest(expected, sent_mac) and canonical


def timestamp_fresh(timestamp: str | None, now: float) -> bool:
    if not timestamp or not _TIMESTAMP.match(timestamp):
        return False
    return abs(now - int(timestamp)) <= MAX_SKEW.total_seconds()


class HookRateLimiter:
    """A token bucket per hook id, in this process only: each instance allows `rate` calls a
    second with bursts of `burst`, so the app as a whole allows that times its instances. A
    Business Rule fires once per record change; a bulk update of many records is what hits it,
    and the poll catches up whatever a 429 refused. At most `max_hooks` buckets are kept (the
    least recently used go first), so a flood of made-up ids cannot grow memory."""

    def __init__(
        self,
        *,
        rate: float = 20.0,
        burst: int = 200,
        max_hooks: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate, self._burst, self._max = rate, float(burst), max_hooks
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id -> (tokens, at)

    def take(self, hook_id: str) -> None:
        """Raises TooManyRequests (with the seconds until a call is allowed) when over the limit."""
        now = self._clock()
        hook_id = hook_id[:64]  # a made-up id of any length costs one short key
        tokens, at = self._buckets.pop(hook_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1:
            self._remember(hook_id, tokens, now)
            raise TooManyRequests(
                "Too many pushes for this hook; the poll picks up what is refused.",
                retry_after=math.ceil((1 - tokens) / self._rate),
            )
        self._remember(hook_id, tokens - 1, now)

    def _remember(self, hook_id: str, tokens: float, now: float) -> None:
        self._buckets[hook_id] = (tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


class ReplayGuard:
    """The signatures this process accepted within the last `2 x MAX_SKEW` (a signed timestamp is
    taken that far apart at most), so a captured call sent again is refused. Bounded: past
    `max_seen` the oldest are forgotten first (a replay of one of them still changes nothing)."""

    def __init__(self, *, max_seen: int = 100_000) -> None:
        self._max = max_seen
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature -> when it is forgotten

    def first_time(self, hook_id: str, sent: str, now: float) -> bool:
        """Whether this is the first call with `sent` on `hook_id` (at `now`, Unix seconds)."""
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        key = f"{hook_id}:{sent.strip()}"
        if key in self._seen:
            return False
        self._seen[key] = now + 2 * MAX_SKEW.total_seconds()
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return True


class PushReceiver:
    """`POST /api/servicenow/hooks/{hookId}`: verify, queue, done."""

    def __init__(
        self,
        *,
        hooks: PushHooks,
        keys: PushKeys,
        queue: MessageQueue,
        limiter: HookRateLimiter,
        clock: Clock = SYSTEM_CLOCK,
        replays: ReplayGuard | None = None,
    ) -> None:
        self._hooks = hooks
        self._keys = keys
        self._queue = queue
        self._limiter = limiter
        self._clock = clock
        self._replays = replays or ReplayGuard()

    async def receive(self, hook_id: str, timestamp: str | None, sent: str | None, body: bytes) -> int:
        """Queue an authenticated call's hints; how many it carried.

        Raises:
            TooManyRequests: over the hook's rate limit.
            PayloadTooLarge: the body is over `MAX_PUSH_BODY_BYTES`.
            Unauthenticated: unknown hook, missing or wrong signature, stale timestamp, a replay
                (one answer).
            BadRequest: an authenticated body that is not one hint or an array of 1 to 100.
        """
        self._limiter.take(hook_id)
        if len(body) > MAX_PUSH_BODY_BYTES:
            raise PayloadTooLarge(f"A push body is at most {MAX_PUSH_BODY_BYTES} bytes.")
        tenant_id = await self._authenticate(hook_id, timestamp, sent, body)
        hints = parse_hints(body)
        message = PushHintMessage(tenant_id=tenant_id, hints=hints, received_at=self._clock.now())
        await self._queue.send(message.model_dump_json(by_alias=True))
        return len(hints)

    async def _authenticate(self, hook_id: str, timestamp: str | None, sent: str | None, body: bytes) -> str:
        hook = await self._hooks.hook(hook_id) if _HOOK_ID.match(hook_id) else None
        key = await self._keys.key(hook.tenant_id, hook.key_version) if hook is not None else None
        signed = signature_valid(key or _DECOY_KEY, timestamp, sent, body)
        fresh = timestamp_fresh(timestamp, self._clock.now().timestamp())
        if hook is None or key is None or not (signed and fresh):
            raise Unauthenticated(REFUSED)
        if not self._replays.first_time(hook_id, sent or "", self._clock.now().timestamp()):
            raise Unauthenticated(REFUSED)
        return hook.tenant_id


def parse_hints(body: bytes) -> list[PushHint]:
    """The hints of an authenticated body. Raises BadRequest (never quoting a value)."""
    try:
        data = decode_json(body, max_bytes=MAX_PUSH_BODY_BYTES)
    except ValueError as exc:
        raise BadRequest("The push body is not valid JSON.") from exc
    if isinstance(data, list) and len(data) > MAX_HINTS:
        raise BadRequest(f"A push carries at most {MAX_HINTS} records.")
    try:
        return PushBody.model_validate(data).hints()
    except ValidationError:
        raise BadRequest(
            "A push is one object or an array of 1 to 100 objects with exactly table (incident or "
            "change_request), sys_id (32 hex), sys_mod_count and sys_updated_on (YYYY-MM-DD HH:MM:SS)."
        ) from None
