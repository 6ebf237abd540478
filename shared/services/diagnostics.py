"""The connection test ("Test connection"): what a working ServiceNow connection needs, as a
checklist whose failed items say what to do, in the words of README's Troubleshooting.

Nothing is created in the customer's instance: the checks are GETs (one record at most) and one
token refresh. An upstream failure is a failed check, never an error answer; the test answers 409
only when there is no connection to test. A refresh refused because the grant is dead flips the
connection to `reauthorization_required`, as every refresh does (`AccessTokens`).

Which check needs which: everything needs `instance_reachable`; the three reads and
`refresh_token_lifetime` need `oauth_application` (an access token refreshed now); `clock_skew`
needs only the `Date` header of the first answer. A check whose need failed is `skipped`.

ServiceNow answers a refused client secret and a dead refresh token alike (401 `access_denied`).
They are told apart by the grant's access token: revoking a grant ends its access tokens with it,
so a refused refresh beside an access token the Table API still accepts is the client credentials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.clock import SYSTEM_CLOCK, Clock
from shared.diagnostics_models import CheckId, DiagnosticCheck, DiagnosticsResult
from shared.errors import (
    AppError,
    ConnectionNotReady,
    ReauthorizationRequired,
    TokenRefused,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.ports import ConnectionStore, InstanceProbe, ProbeAnswer, TokenRefresher
from shared.records import REFRESH_TOKEN_WARNING, Connection, TokenSet, usable_connection

logger = logging.getLogger(__name__)

# Longer than any access token lives: asking for one that outlives it makes the refresh happen now.
FORCE_REFRESH = timedelta(days=366)
SKEW_LIMIT = timedelta(minutes=5)
# An access token this close to its end is refreshed before use, so it cannot tell us anything.
_ALIVE_MARGIN = timedelta(minutes=5)

TITLES: dict[CheckId, str] = {
    "instance_reachable": "The instance answers",
    "oauth_application": "OAuth client and grant (a token refresh now)",
    "read_incidents": "Read incidents",
    "read_change_requests": "Read change requests",
    "read_state_choices": "Read state names (sys_choice)",
    "clock_skew": "The instance's clock",
    "refresh_token_lifetime": "Refresh token lifetime",
}

AUTHORIZE = (
    "authorize again (POST /api/provisioning/authorize, or Re-authorize in the portal) signed in to "
    "ServiceNow as the integration user, and click Allow"
)
FIX_UNREACHABLE = (
    "Check the instance URL (instanceUrl in the provisioning status); that the instance is up (a "
    "developer instance hibernates when unused); and that its IP Address Access Control allows the "
    "function app's outbound addresses (Troubleshooting: IP filtering on the instance)."
)
FIX_CLIENT_SECRET = (
    "ServiceNow no longer accepts our client secret: it was changed, or the entry deactivated, in "
    "System OAuth > Application Registry. Save the entry's current Client Secret "
    f"(PUT /api/provisioning with clientSecret), then {AUTHORIZE}."
)
FIX_REVOKED = (
    "The grant was revoked (System OAuth > Manage Tokens), or the ServiceNow user who clicked Allow was "
    f"locked out, deactivated or lost roles: {AUTHORIZE}."
)
FIX_EITHER = (
    "ServiceNow answers both causes alike. If the client secret was changed in System OAuth > "
    "Application Registry, save the current one (PUT /api/provisioning with clientSecret) and "
    f"authorize; otherwise the grant was revoked or its user locked out: {AUTHORIZE}."
)
FIX_TRY_LATER = (
    "Try again in a few minutes. If it persists, check that the instance is up and that its IP Address "
    "Access Control allows the function app's outbound addresses."
)
FIX_TOKEN_REFUSED = (
    "ServiceNow refused an access token it had just issued: check in User Administration > Users that "
    "the integration user is active, not locked out, and allowed to use web services."
)


@dataclass(frozen=True)
class _Read:
    check: CheckId
    table: str
    what: str
    role: str


READS = (
    _Read(
        "read_incidents",
        "incident",
        "incidents",
        "the itil role (or a role whose ACLs allow reading incident)",
    ),
    _Read(
        "read_change_requests",
        "change_request",
        "change requests",
        "the itil role (or a role whose ACLs allow reading change_request)",
    ),
    _Read(
        "read_state_choices",
        "sys_choice",
        "choice lists",
        "a role whose ACLs allow reading sys_choice; without it the portal shows ServiceNow's documented "
        "state names, not the instance's own",
    ),
)


class DiagnosticsService:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        tokens: TokenRefresher,
        probe: InstanceProbe,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._connections = connections
        self._tokens = tokens
        self._probe = probe
        self._clock = clock

    async def run(self, tenant_id: str) -> DiagnosticsResult:
        """Every check, in order (module docstring). ConnectionNotReady / ReauthorizationRequired
        when the tenant is not connected, as every ServiceNow operation."""
        connection = await self._ready(tenant_id)
        reach, skew = await self._reach(connection)
        if reach.status == "failed":
            rest = [_skipped(check, "the instance did not answer") for check in TITLES if check != reach.id]
            return self._result([reach, *rest])
        oauth, tokens = await self._oauth(connection)
        if tokens is None:
            why = "there is no access token (the OAuth check failed)"
            reads = [_skipped(read.check, why) for read in READS]
            lifetime = _skipped("refresh_token_lifetime", why)
        else:
            reads = [await self._read(connection, read) for read in READS]
            lifetime = lifetime_check(tokens.refresh_token_expires_at, self._clock.now())
        return self._result([reach, oauth, *reads, clock_check(skew), lifetime])

    async def _ready(self, tenant_id: str) -> Connection:
        return usable_connection(await self._connections.get(tenant_id))

    def _result(self, checks: list[DiagnosticCheck]) -> DiagnosticsResult:
        failed = [check.id for check in checks if check.status == "failed"]
        logger.info("Connection test: %d check(s) failed %s", len(failed), failed)
        return DiagnosticsResult(checks=checks, checked_at=self._clock.now())

    async def _reach(self, connection: Connection) -> tuple[DiagnosticCheck, timedelta | None]:
        """The check, and how far the instance's clock is ahead of ours (None: no `Date`)."""
        sent = self._clock.now()
        try:
            answer = await self._probe.reach(connection)
        except UpstreamError as exc:
            detail = f"{connection.instance_url} did not answer. {exc.message}"
            return _failed("instance_reachable", detail, FIX_UNREACHABLE), None
        received = self._clock.now()
        skew = None if answer.date is None else answer.date - (sent + (received - sent) / 2)
        detail = f"{connection.instance_url} answered (HTTP {answer.status} to a request without a token)."
        return _passed("instance_reachable", detail), skew

    async def _oauth(self, connection: Connection) -> tuple[DiagnosticCheck, TokenSet | None]:
        check: CheckId = "oauth_application"
        try:
            tokens = await self._tokens.refresh_if_expiring(connection, FORCE_REFRESH)
        except ReauthorizationRequired:
            return await self._refused_refresh(connection), None
        except ConnectionNotReady as exc:
            fix = f"Save the client secret again (PUT /api/provisioning with clientSecret), then {AUTHORIZE}."
            return _failed(check, exc.message, fix), None
        except UpstreamError as exc:
            fix = FIX_TRY_LATER if isinstance(exc, UpstreamUnavailable) else FIX_TOKEN_REFUSED
            return _failed(check, f"The token refresh failed. {exc.message}", fix), None
        detail = (
            f"ServiceNow issued a new access token now, valid until {_when(tokens.access_token_expires_at)}."
        )
        return _passed(check, detail), tokens

    async def _refused_refresh(self, connection: Connection) -> DiagnosticCheck:
        head = "ServiceNow refused the token refresh (401 access_denied); the connection is now reauthorization_required."
        now = self._clock.now()
        ends = connection.refresh_token_expires_at
        if ends is not None and ends <= now:
            detail = f"{head} The refresh token expired on {_when(ends)} (they live 100 days)."
            return _failed("oauth_application", detail, f"Nothing else is wrong: {AUTHORIZE}.")
        alive = await self._grant_alive(connection, now)
        if alive is True:
            detail = f"{head} The grant's access token still works, so the client secret was refused."
            return _failed("oauth_application", detail, FIX_CLIENT_SECRET)
        if alive is False:
            detail = f"{head} The grant's access token is refused too: the grant is dead."
            return _failed("oauth_application", detail, FIX_REVOKED)
        detail = f"{head} The client secret was refused, or the grant is revoked or expired."
        return _failed("oauth_application", detail, FIX_EITHER)

    async def _grant_alive(self, connection: Connection, now: datetime) -> bool | None:
        """Whether the Table API still accepts the grant's current access token; None: no token
        valid long enough to ask with, or no clear answer."""
        expires = connection.access_token_expires_at
        if expires is None or expires - _ALIVE_MARGIN <= now:
            return None
        try:
            await self._probe.read_one(connection, "sys_choice")
        except ReauthorizationRequired:  # 401 to the token, and the refresh after it refused too
            return False
        except AppError:
            return None
        return True

    async def _read(self, connection: Connection, read: _Read) -> DiagnosticCheck:
        try:
            answer = await self._probe.read_one(connection, read.table)
        except TokenRefused as exc:
            return _failed(read.check, exc.message, FIX_TOKEN_REFUSED)
        except ReauthorizationRequired:
            return _failed(read.check, "The grant died during the test.", FIX_REVOKED)
        except UpstreamUnavailable as exc:
            return _failed(read.check, f"ServiceNow did not answer. {exc.message}", FIX_TRY_LATER)
        except AppError as exc:
            return _failed(read.check, exc.message, FIX_TRY_LATER)
        return read_verdict(read, answer)


def read_verdict(read: _Read, answer: ProbeAnswer) -> DiagnosticCheck:
    """A 403 is a missing role or ACL; an empty 200 (or v1's 404) is a table without records yet."""
    said = f": {answer.said}" if answer.said else ""
    if answer.status == 200 and answer.records:
        return _passed(read.check, f"The integration user can read {read.what}.")
    if answer.status in (200, 404):
        detail = f"The integration user may read {read.what}; no records yet (or none its row ACLs show)."
        return _passed(read.check, detail)
    if answer.status == 403:
        detail = f"ServiceNow refused to read {read.table} (HTTP 403{said})."
        fix = (
            f"The integration user lacks the role or ACL to read {read.what} ({read.table}): give it "
            f"{read.role}. Then test again."
        )
        return _failed(read.check, detail, fix)
    detail = f"ServiceNow answered the read of {read.table} with HTTP {answer.status}{said}."
    if answer.status == 400:
        fix = f"Check that the instance has the {read.table} table (its plugin active) and answers the Table API."
        return _failed(read.check, detail, fix)
    return _failed(read.check, detail, FIX_TRY_LATER)


def clock_check(skew: timedelta | None) -> DiagnosticCheck:
    """`skew`: how far the instance's clock is ahead of ours (negative: behind); None: unknown."""
    why = (
        "ServiceNow judges token lifetimes by its clock and we by ours: this far apart, tokens end "
        "earlier or later than we expect, and the sync's 2-minute look-back on sys_updated_on can miss "
        "updates. Ask the instance's owner (ServiceNow support) to correct its time; ours is kept on UTC."
    )
    if skew is None:
        detail = "The instance's answer had no readable Date header, so its clock cannot be compared."
        return _failed("clock_skew", detail, f"Check that no proxy in front of the instance drops it. {why}")
    side = "ahead of" if skew > timedelta(0) else "behind"
    if abs(skew) <= SKEW_LIMIT:
        return _passed("clock_skew", f"The instance's clock is within {_span(abs(skew))} of ours.")
    detail = f"The instance's clock is {_span(abs(skew))} {side} ours (more than {_span(SKEW_LIMIT)})."
    return _failed("clock_skew", detail, why)


def lifetime_check(ends: datetime | None, now: datetime) -> DiagnosticCheck:
    """Failed when the refresh token ends within 14 days, or when its end is not known."""
    fix = (
        f"Before it ends, {AUTHORIZE}. ServiceNow does not extend a refresh token when it is used; when "
        "it ends, ticket creation and the sync stop until an admin authorizes again."
    )
    if ends is None:
        return _failed("refresh_token_lifetime", "When the refresh token ends is not known.", fix)
    left = ends - now
    if left <= timedelta(0):
        return _failed("refresh_token_lifetime", f"The refresh token ended on {_when(ends)}.", fix)
    detail = f"{left.days} day(s) left: the refresh token ends on {_when(ends)}."
    if left < REFRESH_TOKEN_WARNING:
        return _failed("refresh_token_lifetime", f"Only {detail}", fix)
    return _passed("refresh_token_lifetime", detail)


def _passed(check: CheckId, detail: str) -> DiagnosticCheck:
    return DiagnosticCheck(id=check, title=TITLES[check], status="passed", detail=detail)


def _failed(check: CheckId, detail: str, fix: str) -> DiagnosticCheck:
    return DiagnosticCheck(id=check, title=TITLES[check], status="failed", detail=detail, fix=fix)


def _skipped(check: CheckId, why: str) -> DiagnosticCheck:
    return DiagnosticCheck(id=check, title=TITLES[check], status="skipped", detail=f"Skipped: {why}.")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _span(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 7200:
        return f"{seconds // 60} minutes"
    return f"{seconds // 3600} hours"
