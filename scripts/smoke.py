"""Smoke test of a deployed (or local) app: is it up, does it describe itself, does it refuse strangers.

    python scripts/smoke.py https://<app>.azurewebsites.net [--token TOKEN]

One line per check (`PASS`, `FAIL` or `SKIP`, its name, what was seen), then exit 0 when every
check passed and 1 otherwise. Standard library only, so azd's `postdeploy` hook runs it with any
Python 3.11. The checks:

- `health`: `GET /api/health` is 200 `{"status": "ok"}`. A fresh deployment may still be starting,
  so connection errors and 5xx are retried for `--wait` seconds first.
- `openapi`: `GET /api/openapi.json` is JSON with paths, the protected routes below among them.
- `anonymous <route>`: a protected route refuses a caller without credentials: 401 (or Easy Auth's
  redirect to its sign-in page, when the app is set to `RedirectToLoginPage`); never 2xx or 5xx.
- `provisioning status`: with a bearer token (`--token`, or `SMOKE_TOKEN` in the environment; a
  token for `api://<AUTH_CLIENT_ID>`), `GET /api/provisioning` is 200 with a known `status` (a
  tenant that never connected answers `not_configured`). Skipped without a token.

`--principal-header` sends `X-MS-CLIENT-PRINCIPAL` instead of a token: only a local host
(`LOCAL_DEV=true`) trusts it. The token is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PROTECTED = ("/api/provisioning", "/api/tickets", "/api/operator/connections")
CONNECTION_STATUSES = frozenset(
    {"not_configured", "pending_authorization", "connected", "reauthorization_required"}
)
MAX_BODY = 4 * 1024 * 1024
RETRY_S = 2.0  # between tries of a starting app's health


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Result:
    name: str
    passed: bool | None  # None: skipped
    detail: str

    def line(self) -> str:
        label = "SKIP" if self.passed is None else "PASS" if self.passed else "FAIL"
        return f"{label} {self.name}: {self.detail}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer to judge, not to follow


class Client:
    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        """The answer, whatever its status. Raises OSError when no answer came."""
        # The scheme is http(s): `_arguments` refuses any other base URL.
        url = self.base_url + path
        request = urllib.request.Request(url, headers=headers or {}, method="GET")  # noqa: S310
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return Answer(response.status, dict(response.headers), response.read(MAX_BODY))
        except urllib.error.HTTPError as error:
            with error:
                return Answer(error.code, dict(error.headers), error.read(MAX_BODY))


def check_health(client: Client, wait: float, clock: Callable[[], float] = time.monotonic) -> Result:
    deadline = clock() + wait
    while True:
        answer, problem = _health(client)
        if (answer is not None and answer.status < 500) or clock() >= deadline:
            break
        print(f"     health: not yet ({problem}); retrying", flush=True)
        time.sleep(min(RETRY_S, max(0.0, deadline - clock())))
    if answer is None:
        return Result("health", False, f"no answer ({problem})")
    if answer.status == 200 and _json_field(answer, "status") == "ok":
        return Result("health", True, "200 ok")
    return Result("health", False, f"{answer.status} {_excerpt(answer)}")


def _health(client: Client) -> tuple[Answer | None, str]:
    try:
        answer = client.get("/api/health")
    except OSError as error:
        return None, f"{type(error).__name__}: {error}"
    return answer, str(answer.status)


def check_openapi(client: Client) -> Result:
    answer = client.get("/api/openapi.json")
    if answer.status != 200:
        return Result("openapi", False, f"{answer.status} {_excerpt(answer)}")
    try:
        paths = answer.json().get("paths")
    except (ValueError, AttributeError):
        return Result("openapi", False, "200, but not a JSON object")
    if not isinstance(paths, dict) or not paths:
        return Result("openapi", False, "200, but no paths")
    missing = [route for route in PROTECTED if route not in paths]
    if missing:
        return Result("openapi", False, f"{len(paths)} paths, but none for {', '.join(missing)}")
    return Result("openapi", True, f"{len(paths)} paths")


def check_anonymous(client: Client, route: str) -> Result:
    name = f"anonymous {route}"
    answer = client.get(route)
    if answer.status == 401:
        return Result(name, True, "401")
    location = answer.headers.get("Location") or answer.headers.get("location") or ""
    if answer.status in (302, 307) and "/.auth/login" in urlsplit(location).path:
        return Result(name, True, f"{answer.status} to the sign-in page")
    return Result(name, False, f"{answer.status}: expected 401 for a caller without credentials")


def check_status(client: Client, credentials: dict[str, str]) -> Result:
    name = "provisioning status"
    if not credentials:
        return Result(name, None, "no --token given")
    answer = client.get("/api/provisioning", credentials)
    if answer.status != 200:
        code = _json_field(answer, "error", "code")
        return Result(name, False, f"{answer.status} {code or _excerpt(answer)}")
    status = _json_field(answer, "status")
    if status not in CONNECTION_STATUSES:
        return Result(name, False, "200, but no known connection status")
    return Result(name, True, f"200 {status}")


def run(client: Client, credentials: dict[str, str], wait: float) -> list[Result]:
    results = [check_health(client, wait)]
    if results[0].passed is False and "no answer" in results[0].detail:
        return results  # nothing else can answer either
    results.append(check_openapi(client))
    results += [check_anonymous(client, route) for route in PROTECTED]
    results.append(check_status(client, credentials))
    return results


def _json_field(answer: Answer, *keys: str) -> Any:
    try:
        value: Any = answer.json()
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
    except ValueError:
        return None
    return value


def _excerpt(answer: Answer) -> str:
    text = answer.body[:200].decode("utf-8", errors="replace")
    return " ".join(text.split())


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Smoke test of a deployed app.")
    parser.add_argument("base_url", help="the app's URL, such as https://<app>.azurewebsites.net")
    parser.add_argument("--token", default=os.environ.get("SMOKE_TOKEN") or None, help="a bearer token")
    parser.add_argument("--principal-header", help="X-MS-CLIENT-PRINCIPAL to send (a local host only)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--wait", type=float, default=180.0, help="seconds to wait for a starting app")
    arguments = parser.parse_args(argv)
    parts = urlsplit(arguments.base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        parser.error("base_url must be an http(s) URL")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    credentials: dict[str, str] = {}
    if arguments.token:
        credentials["Authorization"] = f"Bearer {arguments.token}"
    if arguments.principal_header:
        credentials["X-MS-CLIENT-PRINCIPAL"] = arguments.principal_header
    results = run(Client(arguments.base_url, arguments.timeout), credentials, arguments.wait)
    for result in results:
        print(result.line(), flush=True)
    failed = [result.name for result in results if result.passed is False]
    print(f"smoke test {'FAILED: ' + ', '.join(failed) if failed else 'passed'} ({arguments.base_url})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
