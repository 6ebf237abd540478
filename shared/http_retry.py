"""Retrying HTTP calls to the services we depend on, and reading their `Retry-After`.

`retry_after_seconds` is the one reader of the header. It takes what RFC 9110 section 10.2.3
allows and a little more that real servers and our stand-ins send:

- delta-seconds, surrounding spaces ignored, a decimal fraction accepted ("1.5"), however large
  (a number beyond a float's range comes back as infinity: nothing is capped here);
- an HTTP date in any of the three forms (IMF-fixdate, RFC 850, asctime) or with a numeric zone;
  one without a zone, or with "-0000", is GMT; a date already past is 0 seconds.

Anything else (a sign, an exponent, "nan", "inf", a date that does not exist, a list of values)
is garbage and reads as no header at all: the caller falls back to its own backoff rather than
retrying at once, and the ServiceNow transport does not take a 503 with a broken header for a
refusal before processing.

`send_with_retries` sends a request again on a retryable status or a transport failure, waiting
what the answer's Retry-After says or an exponential backoff with jitter, always through a
`Clock`. A Retry-After longer than the policy waits for is handed to the caller instead
(`UpstreamUnavailable`, `hinted=True`). What an attempt says about a request having been carried
out is the caller's business (`maybe_processed`); it is collected into `ambiguous`. The loop knows
no HTTP library: the caller names the exceptions that are transport failures, and an answer is
anything with a status code and headers (an `httpx.Response`, an azure-core response).
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Protocol, TypeVar

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import UpstreamUnavailable

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# What we pass on as our own Retry-After at most: a day. Longer hints (or absurd ones) would only
# park a tenant or a caller for longer than any maintenance window, and could overflow a datetime.
LONGEST_REPORTED_RETRY_AFTER_S = 86_400
_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?")


class Answer(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


AnswerT = TypeVar("AnswerT", bound=Answer)


def retry_after_seconds(headers: Mapping[str, str], clock: Clock = SYSTEM_CLOCK) -> float | None:
    """The Retry-After header in seconds from `clock.now()`; None when absent or garbage."""
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone at all: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())


def reported_retry_after(seconds: float) -> int:
    """Whole seconds for an `UpstreamUnavailable`: never sooner than asked, at most a day."""
    return max(1, math.ceil(min(seconds, LONGEST_REPORTED_RETRY_AFTER_S)))


@dataclass(frozen=True)
class RetryPolicy:
    """Which answers are retried, how often, and how long we wait between attempts."""

    attempts: int = 4  # sends in all, the first included
    backoff_s: float = 0.5  # the first wait without a Retry-After; doubled each time
    max_backoff_s: float = 8.0
    # A Retry-After longer than this is not waited for here: the caller is told to come back later.
    max_retry_after_s: float = 30.0
    statuses: frozenset[int] = RETRYABLE_STATUSES
    # Each backoff is cut by a random share of up to this, so that clients do not retry in step.
    jitter: float = 0.5
    # The Retry-After we report when giving up without the upstream's own; None: `max_backoff_s`.
    unhinted_retry_after_s: float | None = None

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt `attempt` (1 for the first) when no Retry-After came."""
        backoff = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return backoff * random.uniform(1.0 - self.jitter, 1.0)  # noqa: S311 (jitter, not cryptography)

    def unhinted_retry_after(self) -> int:
        fallback = self.unhinted_retry_after_s
        return reported_retry_after(self.max_backoff_s if fallback is None else fallback)


def _not_processed(outcome: object) -> bool:
    return False


async def send_with_retries(
    send: Callable[[], Awaitable[AnswerT]],
    policy: RetryPolicy,
    *,
    failures: tuple[type[Exception], ...],
    upstream: str,
    what: str,
    clock: Clock = SYSTEM_CLOCK,
    maybe_processed: Callable[[AnswerT | Exception], bool] = _not_processed,
) -> AnswerT:
    """Send; on a status in `policy.statuses` or one of `failures` raised, wait and send again.

    Returns the first response whose status is not retried (the caller maps it).

    Raises:
        UpstreamUnavailable: every attempt failed, or the upstream asked us to wait longer than
            `policy.max_retry_after_s`. `ambiguous` is True when `maybe_processed` said so of any
            attempt; `hinted` when `retry_after` is the upstream's own.
    """
    attempts = max(1, policy.attempts)
    ambiguous = False
    for attempt in range(1, attempts + 1):
        response: AnswerT | None = None
        try:
            response = await send()
        except failures as exc:
            ambiguous = ambiguous or maybe_processed(exc)
            _log_failure(upstream, what, type(exc).__name__, attempt, attempts)
            if attempt == attempts:
                raise UpstreamUnavailable(
                    f"{upstream} did not answer ({what}).",
                    retry_after=policy.unhinted_retry_after(),
                    ambiguous=ambiguous,
                ) from exc
        else:
            if response.status_code not in policy.statuses:
                return response
            ambiguous = ambiguous or maybe_processed(response)
            _log_failure(upstream, what, f"HTTP {response.status_code}", attempt, attempts)
        hinted = retry_after_seconds(response.headers, clock) if response is not None else None
        delay = hinted if hinted is not None else policy.backoff(attempt)
        if attempt == attempts or delay > policy.max_retry_after_s:
            raise _gave_up(upstream, what, response, hinted, policy, ambiguous=ambiguous)
        await clock.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _gave_up(
    upstream: str,
    what: str,
    response: Answer | None,
    hinted: float | None,
    policy: RetryPolicy,
    *,
    ambiguous: bool,
) -> UpstreamUnavailable:
    status = f"HTTP {response.status_code}" if response is not None else "no answer"
    return UpstreamUnavailable(
        f"{upstream} is unavailable or rate limiting us ({what}: {status}).",
        retry_after=reported_retry_after(hinted) if hinted is not None else policy.unhinted_retry_after(),
        hinted=hinted is not None,
        ambiguous=ambiguous,
    )


def _log_failure(upstream: str, what: str, failure: str, attempt: int, attempts: int) -> None:
    logger.warning("%s %s: %s (attempt %d of %d)", upstream, what, failure, attempt, attempts)
