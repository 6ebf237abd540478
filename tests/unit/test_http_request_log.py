"""The one log line of every HTTP request (functions/_http.py): method, route template, status,
duration, tenant and request id; INFO, WARNING for a 5xx, ERROR with the traceback for a bug."""

from __future__ import annotations

import logging
import re

import azure.functions as func
import pytest

from functions._http import anonymous, endpoint, json_response, route_template
from localdev.host import LocalContext
from shared.errors import NotFound, UpstreamUnavailable
from shared.identity import Caller, Role, encode_principal

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
USER = "00000000-0000-0000-0000-0000000000aa"
APP_URL = "http://127.0.0.1:7071"
LINE = re.compile(
    r"^(?P<method>\S+) (?P<route>\S+) (?P<status>\d{3}) "
    r"\(Duration=(?P<ms>\d+)ms, tenant=(?P<tenant>\S+), requestId=(?P<request>[^)]+)\)(?P<error>.*)$"
)
pytestmark = pytest.mark.usefixtures("app_env")


@endpoint(Role.READ)
async def ticket(req: func.HttpRequest, caller: Caller) -> func.HttpResponse:
    outcome = req.route_params["id"]
    if outcome == "missing":
        raise NotFound("No such ticket.")
    if outcome == "down":
        raise UpstreamUnavailable("ServiceNow is down.", retry_after=5)
    if outcome == "bug":
        raise RuntimeError("a bug")
    return json_response({"id": outcome})


@anonymous
async def files(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(status_code=204)


def get(ticket_id: str, *, principal: bool = True, path: str | None = None) -> func.HttpRequest:
    headers = {"Host": "127.0.0.1:7071"}
    if principal:
        headers["X-MS-CLIENT-PRINCIPAL"] = encode_principal(TENANT, USER, [Role.READ.value])
    return func.HttpRequest(
        "GET",
        f"{APP_URL}{path or f'/api/tickets/{ticket_id}'}",
        headers=headers,
        route_params={"id": ticket_id},
        body=b"",
    )


async def logged(caplog: pytest.LogCaptureFixture, req: func.HttpRequest) -> tuple[int, logging.LogRecord]:
    with caplog.at_level(logging.INFO, logger="functions._http"):
        response = await ticket(req, LocalContext("inv-42", "tickets_get"))
    [record] = [r for r in caplog.records if r.name == "functions._http"]
    return response.status_code, record


async def test_a_request_is_one_info_line_with_its_route_template_not_its_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status, record = await logged(caplog, get("caller-chosen-id-1234"))
    assert status == 200
    assert record.levelno == logging.INFO
    line = LINE.match(record.getMessage())
    assert line is not None, record.getMessage()
    assert line.group("method", "route", "status", "tenant", "request", "error") == (
        "GET",
        "api/tickets/{id}",
        "200",
        TENANT,
        "inv-42",
        "",
    )
    assert "caller-chosen-id-1234" not in record.getMessage()


async def test_a_4xx_is_info_and_says_the_error(caplog: pytest.LogCaptureFixture) -> None:
    status, record = await logged(caplog, get("missing"))
    assert (status, record.levelno) == (404, logging.INFO)
    line = LINE.match(record.getMessage())
    assert line is not None
    assert line.group("status", "error") == ("404", " not_found: No such ticket.")


async def test_an_unknown_caller_has_no_tenant(caplog: pytest.LogCaptureFixture) -> None:
    status, record = await logged(caplog, get("x", principal=False))
    assert status == 401
    line = LINE.match(record.getMessage())
    assert line is not None
    assert line.group("tenant") == "-"
    assert line.group("error").startswith(" unauthenticated: ")


async def test_a_5xx_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    status, record = await logged(caplog, get("down"))
    assert (status, record.levelno) == (503, logging.WARNING)
    assert record.getMessage().endswith(" upstream_unavailable: ServiceNow is down.")


async def test_a_bug_is_one_error_line_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    status, record = await logged(caplog, get("bug"))
    assert (status, record.levelno) == (500, logging.ERROR)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert LINE.match(record.getMessage()) is not None


async def test_an_anonymous_request_is_logged_too(caplog: pytest.LogCaptureFixture) -> None:
    req = func.HttpRequest("GET", f"{APP_URL}/api/files/a/b%20c", route_params={"path": "a/b c"}, body=b"")
    with caplog.at_level(logging.INFO, logger="functions._http"):
        await files(req, LocalContext("inv-7", "files"))
    [record] = [r for r in caplog.records if r.name == "functions._http"]
    assert record.getMessage().startswith("GET api/files/{path} 204 (Duration=")


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        ("/api/tickets", {}, "api/tickets"),
        ("/api/tickets/abc", {"id": "abc"}, "api/tickets/{id}"),
        ("/api/tickets/tickets", {"id": "tickets"}, "api/tickets/{id}"),  # a value like a literal
        ("/api/tickets/a%2Fb%20c", {"id": "a/b c"}, "api/tickets/{id}"),
        ("/api/a/b/c", {"path": "a/b/c"}, "api/{path}"),
        ("/api/tickets/abc", {"id": "other"}, None),  # the path does not show the value
    ],
)
def test_route_template(url: str, params: dict[str, str], expected: str | None) -> None:
    req = func.HttpRequest("GET", f"{APP_URL}{url}", route_params=params, body=b"")
    assert route_template(req) == expected


async def test_a_route_the_path_does_not_show_is_logged_by_function_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status, record = await logged(caplog, get("abc", path="/api/elsewhere"))
    assert status == 200
    assert record.getMessage().startswith("GET tickets_get 200 ")
