"""The ServiceNow transport's verdict on a failure (could ServiceNow have carried the request out?),
and token revocation that never raises. httpx's MockTransport stands in for the instance."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from shared.errors import UpstreamUnavailable
from shared.servicenow.oauth import ServiceNowOAuth
from shared.servicenow.transport import RetryPolicy, send_with_retries

FAST = RetryPolicy(attempts=2, backoff_s=0.0, max_backoff_s=0.0, max_retry_after_s=5)
URL = "https://contoso.service-now.com/api/now/table/incident"

Handler = Callable[[httpx.Request], httpx.Response]


def _raises(error: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("injected", request=request)

    return handler


def _answers(status: int, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, headers=headers, json={"error": {}, "status": "failure"})


async def _post_once(handler: Handler) -> UpstreamUnavailable:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(UpstreamUnavailable) as raised:
            await send_with_retries(
                lambda: http.post(URL, json={}), FAST, what="create incident", retry=False
            )
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
        # Refused before processing: rate limit, maintenance.
        (_answers(429, {"Retry-After": "3"}), False),
        (_answers(429), False),
        (_answers(503, {"Retry-After": "3"}), False),
        # May come after the work was done.
        (_answers(503), True),
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

    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: next(answers)(r))) as http:
        with pytest.raises(UpstreamUnavailable) as raised:
            await send_with_retries(lambda: http.get(URL), FAST, what="query incident")
    assert raised.value.ambiguous
    assert (raised.value.hinted, raised.value.retry_after) == (True, 1)


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
        oauth = ServiceNowOAuth(http, retry=FAST)
        with caplog.at_level(logging.WARNING):
            await oauth.revoke("https://contoso.service-now.com", SecretStr("SECRET-TOKEN"))
    assert "Could not revoke a ServiceNow token" in caplog.text
    assert "SECRET-TOKEN" not in caplog.text
