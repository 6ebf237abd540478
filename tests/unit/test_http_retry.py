"""The one Retry-After reader and the one HTTP retry loop, and the clients that use them (Graph,
the Key Vault store's error mapping). Time is a FakeClock: every wait is recorded, none is real."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.utils import CaseInsensitiveDict
from pydantic import SecretStr

from shared.errors import UpstreamUnavailable
from shared.graph import GraphClient
from shared.http_retry import (
    LONGEST_REPORTED_RETRY_AFTER_S,
    RetryPolicy,
    reported_retry_after,
    retry_after_seconds,
    send_with_retries,
)
from shared.stores.secrets import KeyVaultSecretStore
from tests.fakes.clock import START, FakeClock

URL = "https://upstream.example/things"
STEADY = RetryPolicy(attempts=4, backoff_s=1.0, max_backoff_s=3.0, max_retry_after_s=30.0, jitter=0.0)

Handler = Callable[[httpx.Request], httpx.Response]


def _header(value: str) -> dict[str, str]:
    return {"Retry-After": value}


# --- the parser --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),  # surrounding whitespace is not part of the value
        ("1.5", 1.5),  # not RFC, but sent (our stand-ins send "0.01"): taken as meant
        ("99999999999", 99999999999.0),  # huge is still an instruction: nothing is capped here
        ("9" * 400, math.inf),  # beyond a float's range
    ],
)
def test_delta_seconds(value: str, seconds: float) -> None:
    assert retry_after_seconds(_header(value), FakeClock()) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "Tue, 15 Jan 2030 12:02:00 GMT",  # IMF-fixdate
        "Tuesday, 15-Jan-30 12:02:00 GMT",  # obsolete RFC 850 form, two-digit year
        "Tue Jan 15 12:02:00 2030",  # obsolete asctime form, no zone
        "Tue, 15 Jan 2030 12:02:00 -0000",  # "-0000": no zone information
        "Tue, 15 Jan 2030 12:02:00",  # naive
        "Tue, 15 Jan 2030 13:02:00 +0100",  # a numeric zone is respected
    ],
)
def test_an_http_date_is_seconds_from_the_clocks_now(value: str) -> None:
    assert START.isoformat() == "2030-01-15T12:00:00+00:00"
    assert retry_after_seconds(_header(value), FakeClock()) == 120.0


def test_a_date_already_past_is_zero() -> None:
    assert retry_after_seconds(_header("Tue, 15 Jan 2030 11:00:00 GMT"), FakeClock()) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "-5",  # a negative delay: not "now", the sender is broken; our own backoff applies
        "+5",
        "1e3",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "0x10",
        "soon",
        "5, 10",  # the header sent twice
        "Thu, 32 Jan 2030 12:00:00 GMT",
        "Tue, 15 Jan 2030 25:00:00 GMT",
        "Tue, 15 Jan 99999 12:00:00 GMT",
        "Tue, 15 Jan 2030 12:00:00 +9999",
    ],
)
def test_garbage_is_no_header(value: str) -> None:
    assert retry_after_seconds(_header(value), FakeClock()) is None


def test_no_header_is_none_and_names_are_case_insensitive() -> None:
    assert retry_after_seconds({}, FakeClock()) is None
    assert retry_after_seconds(httpx.Headers({"retry-after": "5"}), FakeClock()) == 5.0
    assert retry_after_seconds(CaseInsensitiveDict({"RETRY-AFTER": "5"}), FakeClock()) == 5.0


@pytest.mark.parametrize(
    ("seconds", "reported"),
    [(0.0, 1), (0.2, 1), (1.5, 2), (120.0, 120), (1e12, LONGEST_REPORTED_RETRY_AFTER_S), (math.inf, 86_400)],
)
def test_what_we_pass_on_is_whole_seconds_never_sooner_and_at_most_a_day(
    seconds: float, reported: int
) -> None:
    assert reported_retry_after(seconds) == reported


# --- the retry loop -----------------------------------------------------------------------------------


class Upstream:
    """Answers with the handlers given, in order, and keeps what it was sent."""

    def __init__(self, *answers: Handler) -> None:
        self._answers: Iterator[Handler] = iter(answers)
        self.requests: list[httpx.Request] = []

    @property
    def sent(self) -> int:
        return len(self.requests)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return next(self._answers)(request)


def _status(status: int, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, headers=headers)


def _raises(error: type[httpx.RequestError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("injected", request=request)

    return handler


async def _send(upstream: Upstream, policy: RetryPolicy, clock: FakeClock, **options: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        return await send_with_retries(
            lambda: http.get(URL),
            policy,
            failures=(httpx.TransportError,),
            upstream="Upstream",
            what="read things",
            clock=clock,
            **options,
        )


async def _failure(
    upstream: Upstream, policy: RetryPolicy, clock: FakeClock, **options: Any
) -> UpstreamUnavailable:
    with pytest.raises(UpstreamUnavailable) as raised:
        await _send(upstream, policy, clock, **options)
    return raised.value


async def test_retry_after_is_honoured_through_the_clock_as_seconds_or_a_date() -> None:
    clock = FakeClock()
    upstream = Upstream(
        _status(429, _header("3")),
        _status(503, _header("Tue, 15 Jan 2030 12:00:10 GMT")),  # 7 s after the first wait
        _status(200),
    )
    assert (await _send(upstream, STEADY, clock)).status_code == 200
    assert clock.slept == [3.0, 7.0]
    assert clock.now() == START.replace(second=10)


async def test_without_retry_after_the_backoff_doubles_up_to_its_cap() -> None:
    clock = FakeClock()
    upstream = Upstream(*[_status(500)] * 4, _status(200))
    policy = RetryPolicy(attempts=5, backoff_s=1.0, max_backoff_s=3.0, jitter=0.0)
    assert (await _send(upstream, policy, clock)).status_code == 200
    assert clock.slept == [1.0, 2.0, 3.0, 3.0]


async def test_jitter_only_shortens_the_backoff() -> None:
    clock = FakeClock()
    upstream = Upstream(*[_status(502)] * 3, _status(200))
    await _send(upstream, RetryPolicy(attempts=4, backoff_s=1.0, max_backoff_s=8.0, jitter=0.5), clock)
    assert [0.5 <= wait / step <= 1.0 for wait, step in zip(clock.slept, [1, 2, 4], strict=True)] == [
        True
    ] * 3


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
async def test_an_unreadable_retry_after_falls_back_to_the_backoff(value: str) -> None:
    clock = FakeClock()
    upstream = Upstream(_status(429, _header(value)), _status(200))
    await _send(upstream, STEADY, clock)
    assert clock.slept == [1.0]  # not 0: a broken header is no licence to hammer the upstream


async def test_a_status_the_policy_does_not_retry_is_returned_at_once() -> None:
    clock = FakeClock()
    upstream = Upstream(_status(500))
    policy = RetryPolicy(statuses=frozenset({429}))
    assert (await _send(upstream, policy, clock)).status_code == 500
    assert (upstream.sent, clock.slept) == (1, [])


async def test_a_retry_after_longer_than_the_policy_waits_is_passed_on_not_slept() -> None:
    clock = FakeClock()
    upstream = Upstream(_status(429, _header("120")))
    error = await _failure(upstream, STEADY, clock)
    assert (error.retry_after, error.hinted, upstream.sent, clock.slept) == (120, True, 1, [])


@pytest.mark.parametrize("value", ["9" * 400, "1000000000000"])
async def test_an_absurd_retry_after_is_passed_on_capped(value: str) -> None:
    error = await _failure(Upstream(_status(503, _header(value))), STEADY, FakeClock())
    assert (error.retry_after, error.hinted) == (LONGEST_REPORTED_RETRY_AFTER_S, True)


async def test_the_last_attempt_passes_on_its_retry_after() -> None:
    clock = FakeClock()
    upstream = Upstream(*[_status(429, _header("2.5"))] * 4)
    error = await _failure(upstream, STEADY, clock)
    assert (error.retry_after, error.hinted, upstream.sent) == (3, True, 4)
    assert clock.slept == [2.5, 2.5, 2.5]
    assert error.message == "Upstream is unavailable or rate limiting us (read things: HTTP 429)."


async def test_giving_up_without_a_hint_reports_the_policys_own_wait() -> None:
    error = await _failure(Upstream(*[_status(503)] * 4), STEADY, FakeClock())
    assert (error.retry_after, error.hinted) == (3, False)  # max_backoff_s, rounded up
    policy = RetryPolicy(attempts=1, unhinted_retry_after_s=30.0)
    error = await _failure(Upstream(_status(503)), policy, FakeClock())
    assert (error.retry_after, error.hinted) == (30, False)


async def test_transport_failures_are_retried_then_unavailable() -> None:
    clock = FakeClock()
    upstream = Upstream(*[_raises(httpx.ConnectError)] * 4)
    error = await _failure(upstream, STEADY, clock)
    assert error.message == "Upstream did not answer (read things)."
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert (error.hinted, upstream.sent, clock.slept) == (False, 4, [1.0, 2.0, 3.0])


async def test_one_attempt_that_may_have_been_processed_makes_the_failure_ambiguous() -> None:
    def maybe_processed(outcome: httpx.Response | Exception) -> bool:
        return isinstance(outcome, httpx.ReadTimeout)

    upstream = Upstream(_raises(httpx.ReadTimeout), _status(429), _status(429))
    policy = RetryPolicy(attempts=3, jitter=0.0)
    error = await _failure(upstream, policy, FakeClock(), maybe_processed=maybe_processed)
    assert error.ambiguous
    upstream = Upstream(_status(429), _raises(httpx.ConnectError), _status(503))
    assert not (await _failure(upstream, policy, FakeClock(), maybe_processed=maybe_processed)).ambiguous
    # Without a verdict from the caller nothing is ambiguous (reads).
    assert not (
        await _failure(Upstream(_raises(httpx.ReadTimeout)), RetryPolicy(attempts=1), FakeClock())
    ).ambiguous


async def test_an_exception_the_caller_did_not_name_is_not_retried() -> None:
    clock = FakeClock()
    upstream = Upstream(_raises(httpx.DecodingError))  # not a TransportError
    with pytest.raises(httpx.DecodingError):
        await _send(upstream, STEADY, clock)
    assert (upstream.sent, clock.slept) == (1, [])


async def test_no_attempts_still_sends_once() -> None:
    upstream = Upstream(_status(200))
    assert (await _send(upstream, RetryPolicy(attempts=0), FakeClock())).status_code == 200


# --- the clients -------------------------------------------------------------------------------------


class _Graph(GraphClient):
    """GraphClient with msal's token acquisition replaced by a counter."""

    tokens_issued = 0
    dropped = 0

    async def _token(self, tenant_id: str) -> str:
        return f"token-{self.tokens_issued}"

    async def _drop_token(self, tenant_id: str) -> None:
        self.dropped += 1
        self.tokens_issued += 1


def _graph(upstream: Upstream, clock: FakeClock, **options: Any) -> _Graph:
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    return _Graph(client_id="id", client_secret=SecretStr("s"), http=http, clock=clock, **options)


ACTION = {"id": "AdminMFAV2", "title": "Require MFA for administrative roles"}


async def test_graph_waits_through_its_clock_and_retries_a_rejected_token_once() -> None:
    clock = FakeClock()
    upstream = Upstream(
        _status(429, _header("2")), _status(401), lambda request: httpx.Response(200, json=ACTION)
    )
    graph = _graph(upstream, clock)
    try:
        action = await graph.get_improvement_action("contoso.onmicrosoft.com", "AdminMFAV2")
    finally:
        await graph.aclose()
    assert action.id == "AdminMFAV2"
    assert (clock.slept, graph.dropped) == ([2.0], 1)
    tokens = [request.headers["Authorization"] for request in upstream.requests]
    assert tokens == ["Bearer token-0", "Bearer token-0", "Bearer token-1"]


async def test_graph_passes_a_long_retry_after_on_as_hinted() -> None:
    graph = _graph(Upstream(_status(503, _header("120"))), FakeClock())
    try:
        with pytest.raises(UpstreamUnavailable) as raised:
            await graph.get_improvement_action("contoso.onmicrosoft.com", "AdminMFAV2")
    finally:
        await graph.aclose()
    assert (raised.value.retry_after, raised.value.hinted) == (120, True)


async def test_graph_gives_up_after_its_retries_with_its_own_retry_after() -> None:
    clock = FakeClock()
    graph = _graph(Upstream(*[_status(502)] * 3), clock, max_retries=2, backoff=0.5)
    try:
        with pytest.raises(UpstreamUnavailable) as raised:
            await graph.get_improvement_action("contoso.onmicrosoft.com", "AdminMFAV2")
    finally:
        await graph.aclose()
    assert (raised.value.retry_after, raised.value.hinted) == (30, False)
    assert len(clock.slept) == 2


class _ThrottledVault:
    """A SecretClient whose reads end with azure-core's last answer, a 429."""

    def __init__(self, retry_after: str | None) -> None:
        headers = CaseInsensitiveDict({"Retry-After": retry_after} if retry_after is not None else {})
        self._response = SimpleNamespace(
            status_code=429, reason="Too Many Requests", headers=headers, text=lambda encoding=None: ""
        )

    async def get_secret(self, name: str) -> Any:
        raise HttpResponseError(response=self._response)


@pytest.mark.parametrize(
    ("retry_after", "reported"),
    [
        ("12", 12),
        ("1.5", 2),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 1),  # a date already past: come back as soon as we may
        (None, 30),
        ("soon", 30),
        ("inf", 30),
        ("9" * 400, LONGEST_REPORTED_RETRY_AFTER_S),  # used to raise OverflowError
    ],
)
async def test_key_vault_throttling_carries_its_retry_after(retry_after: str | None, reported: int) -> None:
    store = KeyVaultSecretStore(_ThrottledVault(retry_after))  # type: ignore[arg-type]
    with pytest.raises(UpstreamUnavailable) as raised:
        await store.get_client_secret("contoso")
    assert raised.value.retry_after == reported
