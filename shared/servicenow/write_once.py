"""Sending a request ServiceNow must not carry out twice (a work note: each accepted PATCH adds an
entry to the record's journal).

It is sent again only after an attempt ServiceNow certainly did not carry out, by the transport's
one verdict (`transport.maybe_processed`): it never left (a connect error), or the instance turned
it away before processing (429; 503 with Retry-After). After any other failure it is not sent
again: the caller gets `UpstreamUnavailable` with `ambiguous` set.
"""

from __future__ import annotations

import httpx

from shared.clock import Clock
from shared.errors import UpstreamUnavailable
from shared.servicenow.transport import RetryPolicy, Send, send_with_retries


async def send_unless_processed(
    send: Send, policy: RetryPolicy, *, what: str, clock: Clock
) -> httpx.Response:
    """Send; after a failure that certainly was not carried out, wait and send again, up to the
    policy's attempts. Returns the first answer that is not a retryable failure.

    Raises:
        UpstreamUnavailable: an attempt may have been carried out (`ambiguous`: not sent again),
            every attempt was refused, or ServiceNow asked us to wait longer than we will.
    """
    attempts = max(1, policy.attempts)
    for attempt in range(1, attempts + 1):
        try:
            return await send_with_retries(send, policy, what=what, retry=False, clock=clock)
        except UpstreamUnavailable as exc:
            too_long = exc.hinted and exc.retry_after > policy.max_retry_after_s
            if exc.ambiguous or too_long or attempt == attempts:
                raise
            await clock.sleep(exc.retry_after if exc.hinted else policy.backoff(attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")
