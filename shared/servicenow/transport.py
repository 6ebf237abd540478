"""HTTP to ServiceNow instances: timeouts, retries with backoff that honour Retry-After, and the
mapping of transport failures into our exception tree.

Only calls that are safe to repeat are retried: reads, refresh and revoke. Creates are sent once
here (the ticketing service decides about another one) and the authorization-code exchange too:
a code is single-use, so a second try could only fail.

Every `UpstreamUnavailable` raised here says whether ServiceNow may have carried the request out
(`ambiguous`). It certainly did not when the request never left (connect error, connect or pool
timeout), when the instance turned it away before processing (429; 503 with Retry-After, which
its rate limiting and maintenance send). Anything else (a read or write timeout after sending, a
dropped connection, 500/502/504, a 503 without Retry-After) is ambiguous: a create may have made
its record, possibly only later (ServiceNow's transaction quota lets it run for 60 s).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from shared.errors import UpstreamUnavailable

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
# Transport failures that happen before a byte of the request is sent.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    # A Retry-After longer than this is not waited for here: the caller is told to come back later.
    max_retry_after_s: float = 30.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        hinted = retry_after_seconds(response)
        if hinted is not None:
            return hinted
        backoff = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return float(backoff * random.uniform(0.5, 1.0))  # noqa: S311 (jitter, not cryptography)


def retry_after_seconds(response: httpx.Response | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone at all: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def maybe_processed(response: httpx.Response) -> bool:
    """Whether ServiceNow may have carried out a request it answered with a retryable status.

    429 and a 503 with Retry-After (rate limiting, maintenance) are refusals before processing;
    500, 502, 504 and a bare 503 may come after the work was done (or while it is still running).
    """
    if response.status_code == 429:
        return False
    return not (response.status_code == 503 and retry_after_seconds(response) is not None)


def new_http_client(*, timeout: httpx.Timeout = DEFAULT_TIMEOUT, **options: Any) -> httpx.AsyncClient:
    """The one client for every ServiceNow instance (pooled connections, explicit timeouts).

    It keeps no cookies: ServiceNow answers with a session cookie (JSESSIONID) that would otherwise
    ride along on the next call to that host, possibly another tenant's, under another token.
    """
    return httpx.AsyncClient(
        timeout=timeout,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"Accept": "application/json", "User-Agent": "m365-servicenow-connector/1.0"},
        follow_redirects=False,
        **options,
    )


Send = Callable[[], Awaitable[httpx.Response]]


async def send_with_retries(
    send: Send, policy: RetryPolicy, *, what: str, retry: bool = True
) -> httpx.Response:
    """Send; on 429/5xx or a transport failure wait and send again, up to the policy's attempts.

    Returns the last response when it is not retryable (the caller maps 4xx itself).

    Raises:
        UpstreamUnavailable: ServiceNow stayed unavailable, or asked us to wait longer than we will.
            `ambiguous` is True when any attempt may have been carried out (module docstring).
    """
    attempts = policy.attempts if retry else 1
    response: httpx.Response | None = None
    ambiguous = False
    for attempt in range(1, attempts + 1):
        response = None
        try:
            response = await send()
        except httpx.HTTPError as exc:
            # Transport failures, and a body that could not be decoded: the request went out.
            ambiguous = ambiguous or not isinstance(exc, NOT_SENT)
            logger.warning(
                "ServiceNow %s: %s (attempt %d of %d)", what, type(exc).__name__, attempt, attempts
            )
            if attempt == attempts:
                raise UpstreamUnavailable(
                    f"ServiceNow did not answer ({what}).",
                    retry_after=int(policy.max_backoff_s),
                    ambiguous=ambiguous,
                ) from exc
        else:
            if response.status_code not in RETRYABLE_STATUSES:
                return response
            ambiguous = ambiguous or maybe_processed(response)
            logger.warning(
                "ServiceNow %s: HTTP %d (attempt %d of %d)", what, response.status_code, attempt, attempts
            )
            if attempt == attempts:
                break
        delay = policy.delay(attempt, response)
        if delay > policy.max_retry_after_s:
            break
        await asyncio.sleep(delay)
    hinted = retry_after_seconds(response)
    status = f"HTTP {response.status_code}" if response is not None else "no answer"
    raise UpstreamUnavailable(
        f"ServiceNow is unavailable or rate limiting us ({what}: {status}).",
        retry_after=math.ceil(hinted) if hinted is not None else int(policy.max_backoff_s),
        hinted=hinted is not None,
        ambiguous=ambiguous,
    )
