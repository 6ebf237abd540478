"""The connection test: each check passed on a healthy connection, and each failure with its fix."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from shared.diagnostics_models import DiagnosticCheck, DiagnosticsResult
from shared.errors import (
    ConnectionNotReady,
    ReauthorizationRequired,
    TokenRefused,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.models import ConnectionStatus
from shared.ports import ProbeAnswer, ServiceNowOAuth
from shared.records import Connection, TokenSet
from shared.services.access_tokens import AccessTokens
from shared.services.diagnostics import (
    FIX_CLIENT_SECRET,
    FIX_EITHER,
    FIX_REVOKED,
    FORCE_REFRESH,
    TITLES,
    DiagnosticsService,
    lifetime_check,
)
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository
from tests.fakes.instance_probe import FakeInstanceProbe
from tests.fakes.oauth import FakeRefreshGrant
from tests.fakes.secrets import InMemorySecretStore
from tests.fakes.sync import FakeTokenRefresher

TENANT = "11111111-1111-1111-1111-111111111111"
INSTANCE = "https://contoso.service-now.com"
ORDER = list(TITLES)


def _tokens(clock: FakeClock, access: str, *, lives: timedelta = timedelta(minutes=30)) -> TokenSet:
    return TokenSet(
        access_token=SecretStr(access),
        refresh_token=SecretStr("refresh"),
        access_token_expires_at=clock.now() + lives,
        refresh_token_expires_at=clock.now() + timedelta(days=90),
    )


class World:
    def __init__(self, *, real_tokens: bool = False) -> None:
        self.clock = FakeClock()
        self.connections = InMemoryConnectionRepository()
        self.secrets = InMemorySecretStore()
        self.oauth = FakeRefreshGrant(self.clock, refresh_lifetime=timedelta(days=90))
        oauth: ServiceNowOAuth = self.oauth
        self.access_tokens = AccessTokens(
            secrets=self.secrets, oauth=oauth, connections=self.connections, clock=self.clock
        )
        self.refresher = FakeTokenRefresher(self.connections, self.clock)
        self.probe = FakeInstanceProbe(self.clock, self.access_tokens if real_tokens else None)
        self.service = DiagnosticsService(
            connections=self.connections,
            tokens=self.access_tokens if real_tokens else self.refresher,
            probe=self.probe,
            clock=self.clock,
        )

    async def connect(
        self, *, status: ConnectionStatus = ConnectionStatus.CONNECTED, access_lives: int = 30
    ) -> Connection:
        now = self.clock.now()
        connection = Connection(
            tenant_id=TENANT,
            instance="contoso",
            instance_url=INSTANCE,
            client_id="client",
            status=status,
            connected_at=now,
            updated_at=now,
            access_token_expires_at=now + timedelta(minutes=access_lives),
            refresh_token_expires_at=now + timedelta(days=90),
        )
        self.connections.rows[TENANT] = connection
        await self.secrets.set_client_secret(TENANT, SecretStr("s3cr3t-for-diagnostics"))
        stored = _tokens(self.clock, "current", lives=timedelta(minutes=access_lives))
        await self.secrets.set_tokens(TENANT, stored.for_grant(connection))
        return connection

    async def run(self) -> dict[str, DiagnosticCheck]:
        result = await self.service.run(TENANT)
        assert [check.id for check in result.checks] == ORDER
        return {check.id: check for check in result.checks}


def _statuses(checks: dict[str, DiagnosticCheck]) -> dict[str, str]:
    return {name: check.status for name, check in checks.items()}


def _only_failed(checks: dict[str, DiagnosticCheck], *failed: str) -> None:
    assert {name for name, check in checks.items() if check.status != "passed"} == set(failed)
    for name in failed:
        assert checks[name].fix


async def test_a_healthy_connection_passes_every_check_with_only_reads_and_one_refresh() -> None:
    world = World()
    await world.connect()
    result = await world.service.run(TENANT)
    assert all(check.status == "passed" and check.fix is None for check in result.checks)
    assert result.checked_at == world.clock.now()
    assert world.refresher.calls == [FORCE_REFRESH]  # a refresh now, whatever the cached token
    assert world.probe.calls == ["reach", "incident", "change_request", "sys_choice"]
    body = result.model_dump(by_alias=True, mode="json")
    assert set(body) == {"checks", "checkedAt"}
    assert set(body["checks"][0]) == {"id", "title", "status", "detail", "fix"}
    DiagnosticsResult.model_validate(body)


async def test_the_real_token_source_is_refreshed_now_not_served_from_its_cache() -> None:
    world = World(real_tokens=True)
    await world.connect()
    checks = await world.run()
    assert set(_statuses(checks).values()) == {"passed"}
    assert len(world.oauth.refreshed) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (None, ConnectionNotReady),
        (ConnectionStatus.PENDING_AUTHORIZATION, ConnectionNotReady),
        (ConnectionStatus.REAUTHORIZATION_REQUIRED, ReauthorizationRequired),
    ],
)
async def test_a_tenant_that_is_not_connected_has_nothing_to_test(
    status: ConnectionStatus | None, error: type[Exception]
) -> None:
    world = World()
    if status is not None:
        await world.connect(status=status)
    with pytest.raises(error):
        await world.service.run(TENANT)
    assert world.probe.calls == []


async def test_an_unreachable_instance_fails_the_first_check_and_skips_the_rest() -> None:
    world = World()
    await world.connect()
    world.probe.reach_error = UpstreamUnavailable(
        "ServiceNow did not answer (reach the instance): ConnectError."
    )
    checks = await world.run()
    assert _statuses(checks) == dict.fromkeys(ORDER, "skipped") | {"instance_reachable": "failed"}
    assert "IP Address Access Control" in (checks["instance_reachable"].fix or "")
    assert all("did not answer" in checks[name].detail for name in ORDER[1:])
    assert world.refresher.calls == []


@pytest.mark.parametrize(
    ("table", "check"),
    [
        ("incident", "read_incidents"),
        ("change_request", "read_change_requests"),
        ("sys_choice", "read_state_choices"),
    ],
)
async def test_a_403_on_a_table_fails_its_read_with_the_role_fix(table: str, check: str) -> None:
    world = World()
    await world.connect()
    world.probe.reads[table] = ProbeAnswer(403, said="Operation Failed")
    checks = await world.run()
    _only_failed(checks, check)
    assert "lacks the role or ACL to read" in (checks[check].fix or "")
    assert "HTTP 403: Operation Failed" in checks[check].detail


async def test_an_empty_table_passes_with_no_records_yet() -> None:
    world = World()
    await world.connect()
    world.probe.reads["change_request"] = ProbeAnswer(200, records=0)
    world.probe.reads["incident"] = ProbeAnswer(404, said="No Record found")  # v1's empty answer
    checks = await world.run()
    _only_failed(checks)
    assert "no records yet" in checks["read_change_requests"].detail
    assert "no records yet" in checks["read_incidents"].detail


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (ProbeAnswer(400, said="Invalid table incident"), "has the incident table"),
        (UpstreamUnavailable("ServiceNow is rate limiting."), "Try again in a few minutes"),
        (TokenRefused(), "integration user is active"),
        (UpstreamError("ServiceNow answered without a result."), "Try again"),
        (ProbeAnswer(500), "Try again"),
    ],
)
async def test_other_read_failures_are_failed_checks_with_a_fix(
    answer: ProbeAnswer | Exception, words: str
) -> None:
    world = World()
    await world.connect()
    world.probe.reads["incident"] = answer
    checks = await world.run()
    _only_failed(checks, "read_incidents")
    assert words in (checks["read_incidents"].fix or "")


@pytest.mark.parametrize(
    ("offset", "status", "words"),
    [
        (timedelta(minutes=7), "failed", "7 minutes ahead of ours"),
        (timedelta(minutes=-7), "failed", "7 minutes behind ours"),
        (timedelta(seconds=40), "passed", "within 40 seconds"),
    ],
)
async def test_clock_skew_past_five_minutes_fails_and_says_why(
    offset: timedelta, status: str, words: str
) -> None:
    world = World()
    await world.connect()
    world.probe.reach_answer = ProbeAnswer(401, date=world.clock.now() + offset)
    checks = await world.run()
    assert checks["clock_skew"].status == status
    assert words in checks["clock_skew"].detail
    if status == "failed":
        assert "token lifetimes" in (checks["clock_skew"].fix or "")
        _only_failed(checks, "clock_skew")


async def test_an_answer_without_a_date_cannot_show_the_clock() -> None:
    world = World()
    await world.connect()
    world.probe.reach_answer = ProbeAnswer(401, date=None)
    checks = await world.run()
    _only_failed(checks, "clock_skew")
    assert "Date header" in checks["clock_skew"].detail


async def test_a_refresh_token_ending_within_14_days_fails_its_check() -> None:
    world = World()
    await world.connect()
    world.refresher.refresh_token_expires_at = world.clock.now() + timedelta(days=10, hours=1)
    checks = await world.run()
    _only_failed(checks, "refresh_token_lifetime")
    assert "Only 10 day(s) left" in checks["refresh_token_lifetime"].detail
    assert "authorize again" in (checks["refresh_token_lifetime"].fix or "")


def test_an_unknown_or_past_refresh_token_end_fails() -> None:
    now = FakeClock().now()
    assert lifetime_check(None, now).status == "failed"
    assert "ended" in lifetime_check(now - timedelta(days=1), now).detail
    assert lifetime_check(now + timedelta(days=30), now).status == "passed"


async def test_a_refused_client_secret_is_told_apart_by_the_still_working_access_token() -> None:
    world = World(real_tokens=True)
    await world.connect()
    world.oauth.refuse = True
    checks = await world.run()
    oauth = checks["oauth_application"]
    assert (oauth.status, oauth.fix) == ("failed", FIX_CLIENT_SECRET)
    assert "client secret was refused" in oauth.detail
    assert world.connections.rows[TENANT].status == ConnectionStatus.REAUTHORIZATION_REQUIRED
    expected = dict.fromkeys(ORDER[2:5], "skipped") | {"refresh_token_lifetime": "skipped"}
    assert (
        _statuses(checks)
        == {"instance_reachable": "passed", "oauth_application": "failed", "clock_skew": "passed"} | expected
    )
    assert world.probe.calls == ["reach", "sys_choice"]  # the one read that asked about the grant


async def test_a_revoked_grant_fails_with_authorize_again_and_flips_the_connection() -> None:
    world = World(real_tokens=True)
    await world.connect()
    world.oauth.refuse = True
    world.probe.token_refused = True  # revoking a grant ends its access tokens too
    checks = await world.run()
    assert (checks["oauth_application"].status, checks["oauth_application"].fix) == ("failed", FIX_REVOKED)
    assert world.connections.rows[TENANT].status == ConnectionStatus.REAUTHORIZATION_REQUIRED


async def test_without_a_live_access_token_both_causes_are_named() -> None:
    world = World(real_tokens=True)
    await world.connect(access_lives=3)  # refreshed before use: it cannot tell us anything
    world.oauth.refuse = True
    checks = await world.run()
    assert checks["oauth_application"].fix == FIX_EITHER
    assert world.probe.calls == ["reach"]


async def test_an_expired_refresh_token_says_so() -> None:
    world = World(real_tokens=True)
    await world.connect()
    world.connections.rows[TENANT] = world.connections.rows[TENANT].model_copy(
        update={"refresh_token_expires_at": world.clock.now() - timedelta(days=1)}
    )
    world.oauth.refuse = True
    checks = await world.run()
    assert "refresh token expired on" in checks["oauth_application"].detail


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (UpstreamUnavailable("ServiceNow did not answer (token refresh)."), "Try again in a few minutes"),
        (
            ConnectionNotReady("No ServiceNow client secret is stored for this tenant."),
            "Save the client secret",
        ),
        (UpstreamError("ServiceNow answered the token refresh with HTTP 500."), "integration user"),
    ],
)
async def test_other_refresh_failures_fail_the_oauth_check_and_skip_what_needs_a_token(
    error: Exception, words: str
) -> None:
    world = World()
    await world.connect()
    world.refresher.fail = error
    checks = await world.run()
    assert checks["oauth_application"].status == "failed"
    assert words in (checks["oauth_application"].fix or "")
    assert [checks[name].status for name in ORDER[2:5]] == ["skipped"] * 3
    assert world.connections.rows[TENANT].status == ConnectionStatus.CONNECTED
