"""The ServiceNow record of a held claim: found by correlation id, or made by one of a few
single-shot creates (steps 2 and 3 of the protocol `ticket_creation` describes).

A create is sent only while no earlier one of the claim may still commit (it is older than the
settle window) and only right after a lookup that found nothing, unless nothing was ever sent
for the claim.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

from shared.clock import Clock
from shared.errors import UpstreamRejected, UpstreamUnavailable
from shared.ports import ServiceNowRecord, ServiceNowRecords
from shared.records import Connection
from shared.services.idempotency_claims import HeldClaim
from shared.services.ticket_policy import TicketingPolicy

logger = logging.getLogger(__name__)

RECORD_FIELDS = ["sys_id", "number", "state", "priority", "sys_updated_on", "correlation_id"]


class RecordSpec(Protocol):
    """What a record is made of: a `TicketContent`, or the `ticket-creates` message that carries one."""

    @property
    def ticket_id(self) -> str: ...

    @property
    def table(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, str]: ...


class RecordMaker:
    def __init__(self, *, servicenow: ServiceNowRecords, policy: TicketingPolicy, clock: Clock) -> None:
        self._servicenow = servicenow
        self._policy = policy
        self._clock = clock

    async def find_or_create(
        self,
        held: HeldClaim,
        connection: Connection,
        content: RecordSpec,
        *,
        look_first: bool,
        deadline: datetime,
    ) -> ServiceNowRecord:
        """The record of `content`, found or made; waits end before `deadline`.

        Raises:
            UpstreamUnavailable: no attempt made it, or one may have made it and ServiceNow does
                not have it yet (ambiguous, retry_after: until no create can still commit).
            UpstreamRejected: ServiceNow refused the record, or the lookup of it.
            IdempotencyKeyInProgress: another request took the claim over.
        """
        failure: UpstreamUnavailable | None = None
        look = look_first
        for attempt in range(1, self._policy.create_attempts + 1):
            found = await self._look_until_settled(held, connection, content, look=look, wait_until=deadline)
            if found is not None:
                return found
            look = True
            try:
                return await self._post(held, connection, content)
            except UpstreamUnavailable as exc:
                failure = exc
            made = held.post_failed(failure)
            self._log_failure(content, attempt, failure, made)
            if not made:
                await self._back_off(failure, attempt, deadline)  # raises after the last attempt
        # The last create may have made the record: look once more, but wait for nothing now.
        assert failure is not None
        found = await self._look_until_settled(held, connection, content, look=True, wait_until=None)
        if found is None:
            raise failure
        return found

    async def _look_until_settled(
        self,
        held: HeldClaim,
        connection: Connection,
        content: RecordSpec,
        *,
        look: bool,
        wait_until: datetime | None,
    ) -> ServiceNowRecord | None:
        """The record if ServiceNow has it (looked up if `look`, and after every wait); None when
        it has not, and no earlier create of the claim can still commit, so a create may go.

        While one can, it is waited out if that is short and ends before `wait_until`; otherwise
        the caller gets 503 with Retry-After = the time left.
        """
        while True:
            if look:
                found = await self.find(connection, content)
                if found is not None:
                    return found
            look = True
            settling = held.settle_left()
            if settling <= 0:
                return None
            if (
                wait_until is None
                or settling > self._policy.max_retry_wait_s
                or self._clock.now() + timedelta(seconds=settling) >= wait_until
            ):
                raise UpstreamUnavailable(
                    "ServiceNow did not confirm creating the ticket and has no record of it "
                    "yet. Retry with the same Idempotency-Key after the Retry-After time.",
                    retry_after=math.ceil(settling),
                    ambiguous=True,
                )
            await self._clock.sleep(settling)

    async def find(self, connection: Connection, content: RecordSpec) -> ServiceNowRecord | None:
        query = f"correlation_id={content.ticket_id}^ORDERBYsys_created_on"
        found = await self._servicenow.find_one(connection, content.table, query, RECORD_FIELDS)
        if found is not None:
            logger.info(
                "Found the %s record of ticket %s by correlation id", content.table, content.ticket_id
            )
        return found

    async def _post(self, held: HeldClaim, connection: Connection, content: RecordSpec) -> ServiceNowRecord:
        """One create, sent once (the claim's lease renewed immediately before it leaves)."""
        try:
            return await self._servicenow.create(
                connection, content.table, dict(content.fields), before_post=held.before_post
            )
        except UpstreamRejected:
            held.post_refused()
            raise

    async def _back_off(self, failure: UpstreamUnavailable, attempt: int, deadline: datetime) -> None:
        """Wait before the next attempt, after one ServiceNow certainly did not process. Raises
        `failure` when that was the last attempt or the wait is too long for this request."""
        if attempt >= self._policy.create_attempts:
            raise failure
        wait = failure.retry_after if failure.hinted else self._policy.backoff_s * 2 ** (attempt - 1)
        if wait > self._policy.max_retry_wait_s or self._clock.now() + timedelta(seconds=wait) >= deadline:
            raise failure
        await self._clock.sleep(wait)

    def _log_failure(
        self, content: RecordSpec, attempt: int, failure: UpstreamUnavailable, made: bool
    ) -> None:
        logger.warning(
            "Creating ticket %s: attempt %d of %d failed (%s; %s)",
            content.ticket_id,
            attempt,
            self._policy.create_attempts,
            failure.message,
            "may have been processed" if made else "not processed",
        )
