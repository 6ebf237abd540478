"""The hook's request path: rate limit, size, signature (before the body is parsed), body rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from unittest import mock

import pytest

from shared.errors import BadRequest, PayloadTooLarge, TooManyRequests, Unauthenticated, error_headers
from shared.push_models import MAX_PUSH_BODY_BYTES, PushHintMessage
from shared.services import push_hints
from shared.services.push_hints import REFUSED, HookRateLimiter, PushReceiver, ReplayGuard, signature
from tests.fakes.clock import FakeClock
from tests.fakes.push import InMemoryPushHooks, InMemoryPushKeys
from tests.fakes.sync import RecordingQueue

TENANT = "11111111-1111-1111-1111-111111111111"
HOOK = "h" * 43
SYS_ID = "9d385017c611228701d22104cc95c371"
HINT = {"table": "incident", "sys_id": SYS_ID, "sys_mod_count": 3, "sys_updated_on": "2030-01-15 11:59:58"}


class World:
    def __init__(self, *, limiter: HookRateLimiter | None = None) -> None:
        self.clock = FakeClock()
        self.hooks = InMemoryPushHooks()
        self.keys = InMemoryPushKeys()
        self.queue = RecordingQueue()
        self.receiver = PushReceiver(
            hooks=self.hooks,
            keys=self.keys,
            queue=self.queue,
            limiter=limiter or HookRateLimiter(),
            clock=self.clock,
        )
        self.key = b""

    async def enable(self) -> None:
        version, self.key = await self.keys.new_key(TENANT)
        await self.hooks.replace_hook(TENANT, HOOK, version)

    def now(self) -> str:
        return str(int(self.clock.now().timestamp()))

    async def push(
        self,
        body: Any,
        *,
        hook: str = HOOK,
        timestamp: str | None = None,
        sig: str | None = None,
        key: bytes | None = None,
    ) -> int:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        stamp = timestamp if timestamp is not None else self.now()
        sent = sig if sig is not None else signature(key or self.key, stamp, raw)
        return await self.receiver.receive(hook, stamp, sent, raw)

    def messages(self) -> list[PushHintMessage]:
        return [PushHintMessage.model_validate_json(body) for body in self.queue.bodies]


@pytest.fixture
async def world() -> World:
    world = World()
    await world.enable()
    return world


async def test_a_signed_hint_is_queued_for_its_tenant(world: World) -> None:
    assert await world.push(HINT) == 1
    [message] = world.messages()
    assert message.tenant_id == TENANT
    assert [h.sys_id for h in message.hints] == [SYS_ID]
    assert message.received_at == world.clock.now()


async def test_the_signature_is_base64_hmac_sha256_of_timestamp_dot_body(world: World) -> None:
    body = b'{"table":"incident"}'
    expected = base64.b64encode(hmac.new(world.key, b"1736933400." + body, hashlib.sha256).digest()).decode()
    assert signature(world.key, "1736933400", body) == expected


@pytest.mark.parametrize(
    "tamper",
    [
        {"sig": ""},  # missing
        {"sig": base64.b64encode(b"x" * 32).decode()},  # wrong
        {"sig": "not base64!"},
        {"key": b"k" * 32},  # signed with another key
        {"hook": "u" * 43},  # unknown hook
        {"hook": "../etc"},  # not even a hook id
        {"timestamp": ""},  # missing timestamp
        {"timestamp": "abc"},
    ],
)
async def test_every_refusal_is_the_same_401_and_queues_nothing(world: World, tamper: dict[str, Any]) -> None:
    with pytest.raises(Unauthenticated) as refused:
        await world.push(HINT, **tamper)
    assert refused.value.message == REFUSED
    assert world.queue.bodies == []


@pytest.mark.parametrize("skew", [-301, 301, -3600])
async def test_a_timestamp_more_than_5_minutes_off_is_refused(world: World, skew: int) -> None:
    stale = str(int(world.clock.now().timestamp()) + skew)
    with pytest.raises(Unauthenticated):
        await world.push(HINT, timestamp=stale)
    assert world.queue.bodies == []


@pytest.mark.parametrize("skew", [-300, 300])
async def test_a_timestamp_within_5_minutes_is_accepted(world: World, skew: int) -> None:
    assert await world.push(HINT, timestamp=str(int(world.clock.now().timestamp()) + skew)) == 1


async def test_a_call_sent_again_is_a_replay_refused_like_a_forgery(world: World) -> None:
    stamp, raw = world.now(), json.dumps(HINT).encode()
    sent = signature(world.key, stamp, raw)
    assert await world.receiver.receive(HOOK, stamp, sent, raw) == 1
    world.clock.advance(minutes=4)  # still inside the timestamp window
    with pytest.raises(Unauthenticated) as refused:
        await world.receiver.receive(HOOK, stamp, sent, raw)
    assert refused.value.message == REFUSED
    assert len(world.queue.bodies) == 1
    assert await world.push(HINT) == 1  # the same hint newly signed is another call


async def test_a_replay_spelled_with_other_spare_bits_is_refused_too(world: World) -> None:
    stamp, raw = world.now(), json.dumps(HINT).encode()
    sent = signature(world.key, stamp, raw)  # 44 characters: the 43rd carries 2 spare bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    base = alphabet.index(sent[42]) & ~3
    siblings = [
        sent[:42] + alphabet[base + n] + sent[43:] for n in range(4) if alphabet[base + n] != sent[42]
    ]
    assert await world.receiver.receive(HOOK, stamp, sent, raw) == 1
    for sibling in siblings:
        with pytest.raises(Unauthenticated):
            await world.receiver.receive(HOOK, stamp, sibling, raw)
    assert len(world.queue.bodies) == 1


def test_the_replay_guard_forgets_after_the_window_and_stays_bounded() -> None:
    guard = ReplayGuard(max_seen=2)
    assert guard.first_time("h", "a", 0.0)
    assert not guard.first_time("h", "a", 599.0)
    assert guard.first_time("h", "a", 600.0)  # 2 x 5 minutes on: no timestamp that old is taken
    assert guard.first_time("other", "a", 600.0)  # per hook
    assert guard.first_time("h", "b", 601.0)
    assert guard.first_time("h", "a", 602.0)  # the oldest went first, past the bound


async def test_the_signature_is_compared_in_constant_time(world: World) -> None:
    with mock.patch("shared.services.push_hints.hmac.compare_digest", wraps=hmac.compare_digest) as compare:
        await world.push(HINT)
        with pytest.raises(Unauthenticated):
            await world.push(HINT, sig=base64.b64encode(b"y" * 32).decode())
    assert compare.call_count == 2


async def test_an_unknown_hook_costs_one_hmac_too(world: World) -> None:
    with (
        mock.patch("shared.services.push_hints.hmac.compare_digest", wraps=hmac.compare_digest) as compare,
        pytest.raises(Unauthenticated),
    ):
        await world.push(HINT, hook="u" * 43)
    assert compare.call_count == 1


async def test_an_unsigned_body_is_never_parsed(world: World) -> None:
    with mock.patch.object(push_hints, "parse_hints") as parse, pytest.raises(Unauthenticated):
        await world.push(b"{not json", sig="")
    parse.assert_not_called()


async def test_an_array_of_hints_is_one_message(world: World) -> None:
    other = {**HINT, "table": "change_request", "sys_id": "a" * 32, "sys_mod_count": "7"}
    assert await world.push([HINT, other]) == 2
    [message] = world.messages()
    assert [(h.table, h.sys_mod_count) for h in message.hints] == [("incident", 3), ("change_request", 7)]


@pytest.mark.parametrize(
    "body",
    [
        [],
        [HINT] * 101,
        {**HINT, "table": "sys_user"},
        {**HINT, "sys_id": "ABC"},
        {**HINT, "sys_id": "9D385017C611228701D22104CC95C371"},
        {**HINT, "extra": "x"},
        {k: v for k, v in HINT.items() if k != "sys_mod_count"},
        {**HINT, "sys_mod_count": -1},
        {**HINT, "sys_updated_on": "yesterday"},
        "incident",
        42,
        None,
        b"{not json",
    ],
)
async def test_an_authenticated_body_that_is_not_hints_is_400(world: World, body: Any) -> None:
    with pytest.raises(BadRequest) as bad:
        await world.push(body)
    assert type(bad.value) is BadRequest
    assert world.queue.bodies == []


async def test_exactly_100_hints_are_accepted(world: World) -> None:
    hints = [{**HINT, "sys_id": f"{n:032x}"} for n in range(100)]
    assert await world.push(hints) == 100


async def test_a_body_over_the_bound_is_413_before_any_lookup(world: World) -> None:
    with pytest.raises(PayloadTooLarge):
        await world.push(b" " * (MAX_PUSH_BODY_BYTES + 1))
    assert world.hooks.lookups == 0


async def test_over_the_rate_limit_is_429_with_retry_after() -> None:
    now = [100.0]
    world = World(limiter=HookRateLimiter(rate=1.0, burst=2, clock=lambda: now[0]))
    await world.enable()
    versions = ({**HINT, "sys_mod_count": n} for n in range(4, 10))  # each call its own (no replay)
    await world.push(next(versions))
    await world.push(next(versions))
    with pytest.raises(TooManyRequests) as limited:
        await world.push(next(versions))
    assert error_headers(limited.value) == {"Retry-After": "1"}
    now[0] += 1.0
    assert await world.push(next(versions)) == 1


async def test_unknown_hooks_are_rate_limited_like_known_ones() -> None:
    limiter = HookRateLimiter(rate=1.0, burst=1, clock=lambda: 0.0)
    world = World(limiter=limiter)
    await world.enable()
    for hook in (HOOK, "u" * 43):
        with pytest.raises(Unauthenticated if hook != HOOK else BadRequest):
            await world.push(b"[]", hook=hook)
        with pytest.raises(TooManyRequests):
            await world.push(b"[]", hook=hook)


def test_the_limiter_keeps_a_bounded_number_of_hooks() -> None:
    limiter = HookRateLimiter(rate=1.0, burst=1, max_hooks=3, clock=lambda: 0.0)
    for n in range(10):
        limiter.take(f"hook-{n}")
    assert len(limiter._buckets) == 3
