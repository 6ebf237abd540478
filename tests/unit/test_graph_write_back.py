"""The Graph adapter's PATCH of a Secure Score control on a mock transport: the body Graph needs,
which failures send it again (only those that say it was not carried out), the errors it raises,
the checks made before sending, and the in-memory fake of the port."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from shared.errors import BadRequest, DependencyNotConfigured, NotFound, UpstreamError, UpstreamUnavailable
from shared.graph import GraphClient, UnconfiguredGraph
from shared.secure_score import writable_control
from tests.fakes.clock import FakeClock
from tests.fakes.secure_score import ControlPatch, InMemorySecureScoreWriter, throttled

TENANT = "contoso.onmicrosoft.com"
URL = "https://graph.microsoft.com/v1.0/security/secureScoreControlProfiles/AdminMFAV2"
Answer = Callable[[httpx.Request], httpx.Response]


class _Graph(GraphClient):
    """GraphClient with msal's token acquisition replaced by a counter."""

    tokens_issued = 0

    async def _token(self, tenant_id: str) -> str:
        return f"token-{self.tokens_issued}"

    async def _drop_token(self, tenant_id: str) -> None:
        self.tokens_issued += 1


class Upstream:
    """Answers requests in turn (the last one again once they run out), recording each."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request)


def status(code: int, retry_after: str | None = None, error: str = "Whatever") -> Answer:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return lambda request: httpx.Response(code, headers=headers, json={"error": {"code": error}})


def raises(exc: type[httpx.RequestError]) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)

    return answer


DONE = status(204)


async def update(upstream: Upstream, *, clock: FakeClock | None = None, **call: Any) -> _Graph:
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    graph = _Graph(client_id="id", client_secret=SecretStr("s"), http=http, clock=clock or FakeClock())
    try:
        args = {"control_id": "AdminMFAV2", "comment": "INC0010023 https://x", "state": "ThirdParty", **call}
        await graph.update_control(TENANT, args.pop("control_id"), **args)
    finally:
        await graph.aclose()
    return graph


async def test_the_patch_carries_state_comment_and_vendor_information() -> None:
    upstream = Upstream(DONE)

    await update(upstream, state="Reviewed", comment="INC0010023 https://acme.service-now.com/x")

    [request] = upstream.requests
    assert (request.method, str(request.url)) == ("PATCH", URL)
    assert request.headers["Authorization"] == "Bearer token-0"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "comment": "INC0010023 https://acme.service-now.com/x",
        "state": "Reviewed",
        "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"},
    }


async def test_a_connection_that_never_opened_is_sent_again() -> None:
    upstream = Upstream(raises(httpx.ConnectError), raises(httpx.ConnectTimeout), DONE)

    await update(upstream)

    assert len(upstream.requests) == 3


@pytest.mark.parametrize("refusal", [status(429, "2"), status(429), status(503, "2")])
async def test_a_refusal_before_processing_is_sent_again(refusal: Answer) -> None:
    clock = FakeClock()
    upstream = Upstream(refusal, DONE)

    await update(upstream, clock=clock)

    assert len(upstream.requests) == 2
    assert len(clock.slept) == 1


async def test_a_long_retry_after_is_handed_to_the_caller_after_one_patch() -> None:
    upstream = Upstream(status(429, "120", "TooManyRequests"))

    with pytest.raises(UpstreamUnavailable) as raised:
        await update(upstream)

    assert len(upstream.requests) == 1
    error = raised.value
    assert (error.retry_after, error.hinted, error.ambiguous) == (120, True, False)


async def test_persistent_throttling_gives_up_not_ambiguous() -> None:
    upstream = Upstream(status(429, "1"))

    with pytest.raises(UpstreamUnavailable) as raised:
        await update(upstream)

    assert len(upstream.requests) == 4  # max_retries=3
    assert (raised.value.retry_after, raised.value.ambiguous) == (1, False)


@pytest.mark.parametrize(
    "failure",
    [
        raises(httpx.ReadTimeout),
        raises(httpx.RemoteProtocolError),
        raises(httpx.WriteError),
        status(500),
        status(502),
        status(503),  # no Retry-After: possibly after the work
        status(504),
    ],
)
async def test_a_failure_after_sending_is_ambiguous_and_never_sent_again(failure: Answer) -> None:
    upstream = Upstream(failure, DONE)

    with pytest.raises(UpstreamUnavailable) as raised:
        await update(upstream)

    assert len(upstream.requests) == 1
    assert raised.value.ambiguous is True
    assert "may have been made" in raised.value.message


async def test_a_refused_token_is_replaced_and_the_patch_sent_once_more() -> None:
    upstream = Upstream(status(401, error="InvalidAuthenticationToken"), DONE)

    graph = await update(upstream)

    assert [r.headers["Authorization"] for r in upstream.requests] == ["Bearer token-0", "Bearer token-1"]
    assert graph.tokens_issued == 1


async def test_forbidden_names_the_write_permission() -> None:
    with pytest.raises(UpstreamError, match=r"SecurityEvents\.ReadWrite\.All") as raised:
        await update(Upstream(status(403, error="Forbidden")))
    assert not isinstance(raised.value, UpstreamUnavailable)


async def test_an_unknown_control_is_not_found_and_a_refused_body_an_upstream_error() -> None:
    with pytest.raises(NotFound, match="AdminMFAV2"):
        await update(Upstream(status(404, error="ResourceNotFound")))
    with pytest.raises(UpstreamError, match=r"HTTP 400 \(BadRequest\)"):
        await update(Upstream(status(400, error="BadRequest")))


@pytest.mark.parametrize(
    ("call", "says"),
    [
        ({"control_id": "scid_2000"}, "device control"),
        ({"control_id": "SCID_2010"}, "device control"),
        ({"control_id": ".."}, "not valid"),
        ({"control_id": "a/b"}, "not valid"),
        ({"state": "thirdparty"}, "must be one of"),
        ({"state": "Completed"}, "must be one of"),
    ],
)
async def test_what_graph_would_refuse_is_refused_before_sending(call: dict[str, Any], says: str) -> None:
    upstream = Upstream(DONE)

    with pytest.raises(BadRequest, match=says):
        await update(upstream, **call)

    assert upstream.requests == []


def test_only_device_controls_are_not_writable() -> None:
    assert not writable_control("scid_2000")
    assert not writable_control("Scid_2000")
    assert writable_control("AdminMFAV2")
    assert writable_control("exo_scid_like")


async def test_without_graph_an_update_is_dependency_not_configured() -> None:
    with pytest.raises(DependencyNotConfigured, match="GRAPH_CLIENT_ID"):
        await UnconfiguredGraph().update_control(TENANT, "AdminMFAV2", comment="c", state="Reviewed")


async def test_the_fake_records_updates_and_plays_scripted_failures() -> None:
    writer = InMemorySecureScoreWriter()
    writer.fail_next(throttled(120))

    with pytest.raises(UpstreamUnavailable) as raised:
        await writer.update_control(TENANT, "AdminMFAV2", comment="INC1", state="ThirdParty")
    await writer.update_control(TENANT, "AdminMFAV2", comment="INC1", state="ThirdParty")
    with pytest.raises(BadRequest):
        await writer.update_control(TENANT, "scid_2000", comment="INC2", state="ThirdParty")

    assert (raised.value.retry_after, raised.value.hinted) == (120, True)
    patch = ControlPatch(TENANT, "AdminMFAV2", "INC1", "ThirdParty")
    assert (writer.patches, writer.attempts) == ([patch], [patch, patch])
    assert writer.latest(TENANT, "AdminMFAV2") == patch
    assert writer.latest(TENANT, "scid_2000") is None
