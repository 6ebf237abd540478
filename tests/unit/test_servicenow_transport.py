"""The ServiceNow transport's verdict on a failure (could ServiceNow have carried the request out?),
and token revocation that never raises. httpx's MockTransport stands in for the instance and a
FakeClock takes the waits between attempts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
from pydantic import SecretStr

from shared.errors import UpstreamRejected, UpstreamUnavailable
from shared.models import ConnectionStatus
from shared.records import Connection
from shared.servicenow.oauth import ServiceNowOAuthClient
from shared.servicenow.table_api import ServiceNowTables
from shared.servicenow.transport import RetryPolicy, send_with_retries
from tests.fakes.clock import FakeClock

POLICY = RetryPolicy(attempts=2, backoff_s=0.5, max_backoff_s=4.0, max_retry_after_s=5, jitter=0.0)
URL = "https://contoso.service-now.com/api/now/table/incident"

Handler = Callable[[httpx.Request], httpx.Response]


def _raises(error: type[httpx.RequestError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("injected", request=request)

    return handler


def _answers(status: int, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, headers=headers, json={"error": {}, "status": "failure"})


async def _post_once(handler: Handler) -> UpstreamUnavailable:
    clock = FakeClock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(UpstreamUnavailable) as raised:
            await send_with_retries(
                lambda: http.post(URL, json={}), POLICY, what="create incident", retry=False, clock=clock
            )
    assert clock.slept == []  # sent once: nothing to wait for
    return raised.value


@pytest.mark.parametrize(
    ("handler", "ambiguous"),
    [
        # The request never left: certainly not processed.
        (_raises(httpx.ConnectError), False),
        (_raises(httpx.ConnectTimeout), False),
        (_raises(httpx.PoolTimeout), False),
        # Sent, then no (whole) answer: ServiceNow may have processed it, or may still be at it.
        (_raises(httpx.ReadTimeout), True),
        (_raises(httpx.WriteTimeout), True),
        (_raises(httpx.RemoteProtocolError), True),
        (_raises(httpx.ReadError), True),
        (_raises(httpx.DecodingError), True),  # an answer came, but not one we could read
        # Refused before processing: rate limit, maintenance.
        (_answers(429, {"Retry-After": "3"}), False),
        (_answers(429), False),
        (_answers(503, {"Retry-After": "3"}), False),
        (_answers(503, {"Retry-After": "Tue, 15 Jan 2030 12:05:00 GMT"}), False),
        # May come after the work was done.
        (_answers(503), True),
        # A Retry-After we cannot read is no proof of a refusal.
        (_answers(503, {"Retry-After": "soon"}), True),
        (_answers(503, {"Retry-After": "-1"}), True),
        (_answers(503, {"Retry-After": "nan"}), True),
        (_answers(500), True),
        (_answers(502), True),
        (_answers(504), True),
    ],
)
async def test_a_failure_says_whether_servicenow_may_have_processed_the_request(
    handler: Handler, ambiguous: bool
) -> None:
    error = await _post_once(handler)
    assert error.ambiguous is ambiguous


async def test_one_ambiguous_attempt_makes_the_whole_call_ambiguous() -> None:
    answers = iter([_raises(httpx.ReadTimeout), _answers(429, {"Retry-After": "0"})])
    clock = FakeClock()

    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: next(answers)(r))) as http:
        with pytest.raises(UpstreamUnavailable) as raised:
            await send_with_retries(lambda: http.get(URL), POLICY, what="query incident", clock=clock)
    assert raised.value.ambiguous
    assert (raised.value.hinted, raised.value.retry_after) == (True, 1)
    assert clock.slept == [0.5]  # the backoff after the timeout, taken through the clock


async def test_reads_are_retried_honouring_retry_after_through_the_clock() -> None:
    answers = iter([_answers(429, {"Retry-After": "3"}), _answers(500), _answers(200)])
    clock = FakeClock()
    policy = RetryPolicy(attempts=3, backoff_s=0.5, max_retry_after_s=5, jitter=0.0)

    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: next(answers)(r))) as http:
        response = await send_with_retries(lambda: http.get(URL), policy, what="query incident", clock=clock)
    assert response.status_code == 200
    assert clock.slept == [3.0, 1.0]  # Retry-After, then the second step of the backoff


async def test_a_long_retry_after_is_passed_on_with_its_verdict() -> None:
    error = await _post_once(_answers(503, {"Retry-After": "120"}))
    assert (error.retry_after, error.hinted, error.ambiguous) == (120, True, False)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("no route"),
        httpx.InvalidURL("https://contoso.service-now.com/oauth_revoke_token.do?token=SECRET-TOKEN"),
        RuntimeError("https://contoso.service-now.com/oauth_revoke_token.do?token=SECRET-TOKEN"),
    ],
)
async def test_revoke_never_raises_and_logs_no_token(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        oauth = ServiceNowOAuthClient(http, retry=POLICY, clock=FakeClock())
        with caplog.at_level(logging.WARNING):
            await oauth.revoke("https://contoso.service-now.com", SecretStr("SECRET-TOKEN"))
    assert "Could not revoke a ServiceNow token" in caplog.text
    assert "SECRET-TOKEN" not in caplog.text


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "ambiguous"),
        (302, "ambiguous"),
        (408, "ambiguous"),
        (400, "refused"),
        (403, "refused"),
        (404, "refused"),
    ],
)
async def test_a_create_answered_without_a_201_is_refused_only_by_a_client_error(
    status: int, verdict: str
) -> None:
    tables = ServiceNowTables(
        httpx.AsyncClient(transport=httpx.MockTransport(_answers(status))),
        cast(Any, _StaticTokens()),
        retry=POLICY,
        clock=FakeClock(),
    )
    connection = Connection(
        tenant_id="t", instance="contoso", instance_url="https://contoso.service-now.com", client_id="c",
        status=ConnectionStatus.CONNECTED, updated_at=datetime.now(UTC),
    )  # fmt: skip
    if verdict == "refused":
        with pytest.raises(UpstreamRejected):
            await tables.create(connection, "incident", {"short_description": "x"})
    else:
        with pytest.raises(UpstreamUnavailable) as raised:
            await tables.create(connection, "incident", {"short_description": "x"})
        assert raised.value.ambiguous


class _StaticTokens:
    async def access_token(self, connection: Connection) -> SecretStr:
        return SecretStr("static-access-token")

    async def after_rejection(self, connection: Connection, rejected: SecretStr) -> SecretStr:
        return rejected
