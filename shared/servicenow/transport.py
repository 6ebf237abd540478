"""HTTP to ServiceNow instances: timeouts, retries with backoff that honour Retry-After (the loop
itself is `shared.http_retry`'s), and the verdict on whether a failed request may have been
carried out.

Only calls that are safe to repeat are retried: reads, refresh and revoke. Creates are sent once
here (the ticketing service decides about another one) and the authorization-code exchange too:
a code is single-use, so a second try could only fail.

Every `UpstreamUnavailable` raised here says whether ServiceNow may have carried the request out
(`ambiguous`). It certainly did not when the request never left (connect error, connect or pool
timeout), when the instance turned it away before processing (429; 503 with Retry-After, which
its rate limiting and maintenance send). Anything else (a read or write timeout after sending, a
dropped connection, 500/502/504, a 503 without a Retry-After we can read) is ambiguous: a create
may have made its record, possibly only later (ServiceNow's transaction quota lets it run 60 s).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from shared import http_retry
from shared.clock import SYSTEM_CLOCK, Clock
from shared.http_retry import RetryPolicy as RetryPolicy
from shared.monitoring.http import SERVICENOW, traced

DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
# Transport failures that happen before a byte of the request is sent.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def maybe_processed(outcome: httpx.Response | Exception) -> bool:
    """Whether ServiceNow may have carried out a request that failed this way (module docstring).

    A request that never left was not; after it left, only a refusal before processing says it
    was not: 429, and a 503 with Retry-After (rate limiting, maintenance). 500, 502, 504 and a bare
    503 may come after the work was done (or while it is still running), and so may a timeout, a
    dropped connection or an answer we could not decode.
    """
    if isinstance(outcome, Exception):
        return not isinstance(outcome, NOT_SENT)
    if outcome.status_code == 429:
        return False
    refused = outcome.status_code == 503 and http_retry.retry_after_seconds(outcome.headers) is not None
    return not refused


def new_http_client(
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
    **options: Any,
) -> httpx.AsyncClient:
    """The one client for every ServiceNow instance (pooled connections, explicit timeouts).

    It keeps no cookies: ServiceNow answers with a session cookie (JSESSIONID) that would otherwise
    ride along on the next call to that host, possibly another tenant's, under another token.
    Every request goes through `TracedTransport` (a span, and the answer counted, when telemetry
    is on); the pool limits and TLS options belong to the transport it wraps.
    """
    tls = {name: options.pop(name) for name in ("verify", "cert") if name in options}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    return httpx.AsyncClient(
        timeout=timeout,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        transport=traced(SERVICENOW, transport, limits=limits, **tls),
        headers={"Accept": "application/json", "User-Agent": "m365-servicenow-connector/1.0"},
        follow_redirects=False,
        **options,
    )


Send = Callable[[], Awaitable[httpx.Response]]


async def send_with_retries(
    send: Send,
    policy: RetryPolicy,
    *,
    what: str,
    retry: bool = True,
    clock: Clock = SYSTEM_CLOCK,
) -> httpx.Response:
    """Send; on 429/5xx or a transport failure wait and send again, up to the policy's attempts.

    Returns the last response when it is not retryable (the caller maps 4xx itself).

    Raises:
        UpstreamUnavailable: ServiceNow stayed unavailable, or asked us to wait longer than we will.
            `ambiguous` is True when any attempt may have been carried out (module docstring).
    """
    return await http_retry.send_with_retries(
        send,
        policy if retry else dataclasses.replace(policy, attempts=1),
        # Transport failures, and an answer that could not be decoded.
        failures=(httpx.HTTPError,),
        upstream="ServiceNow",
        what=what,
        clock=clock,
        maybe_processed=maybe_processed,
    )
