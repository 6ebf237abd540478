"""Drive the simulator like a browser and a client would: consent form, token calls, auth headers."""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

CLIENT_ID = "dev-client-id"
CLIENT_SECRET = "dev-client-secret"
REDIRECT_URI = "https://connector.example/api/oauth/callback"

# Loading CA certificates costs ~0.1 s per httpx client; the simulator is plain HTTP, so share one.
_SSL = ssl.create_default_context()


def open_client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for a simulator (use it with ``async with``)."""
    kwargs.setdefault("timeout", 5.0)
    return httpx.AsyncClient(base_url=base_url, verify=_SSL, **kwargs)


@dataclass
class ConsentForm:
    """What a browser sees in the consent page: one form, its hidden inputs and its buttons."""

    action: str = ""
    method: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, str] = field(default_factory=dict)  # value -> label


class _ConsentParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form = ConsentForm()
        self._button: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.form.action, self.form.method = attributes.get("action", ""), attributes.get("method", "")
        elif tag == "input" and attributes.get("type") == "hidden":
            self.form.fields[attributes["name"]] = attributes.get("value", "")
        elif tag == "button" and attributes.get("name") == "action":
            self._button = attributes.get("value", "")

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self.form.buttons[self._button] = data

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._button = None


def parse_consent_form(page: str) -> ConsentForm:
    parser = _ConsentParser()
    parser.feed(page)
    return parser.form


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def authorize_params(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "useraccount",
        "state": secrets.token_urlsafe(16),
        **overrides,
    }
    return {key: value for key, value in params.items() if value is not None}


async def click_consent(client: httpx.AsyncClient, params: dict[str, str], action: str) -> httpx.Response:
    """GET the consent page, then submit its form with the chosen button, as a browser would."""
    page = await client.get("/oauth_auth.do", params=params)
    assert page.status_code == 200, page.text
    form = parse_consent_form(page.text)
    assert action in form.buttons
    method = form.method.upper()
    return await client.request(method, form.action, data={**form.fields, "action": action})


async def get_code(client: httpx.AsyncClient, **overrides: str | None) -> tuple[str, dict[str, str]]:
    params = authorize_params(**overrides)
    answer = await click_consent(client, params, "allow")
    assert answer.status_code == 302
    redirect = query_of(answer.headers["Location"])
    assert redirect["state"] == params["state"]
    return redirect["code"], params


async def exchange(client: httpx.AsyncClient, code: str, **overrides: str | None) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **overrides,
    }
    return await client.post("/oauth_token.do", data={k: v for k, v in form.items() if v is not None})


async def refresh(
    client: httpx.AsyncClient, refresh_token: str, secret: str = CLIENT_SECRET
) -> httpx.Response:
    return await client.post(
        "/oauth_token.do",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            "client_secret": secret,
        },
    )


async def connect(client: httpx.AsyncClient) -> dict[str, Any]:
    """The whole authorization-code flow with PKCE; returns the token response JSON."""
    verifier, challenge = pkce_pair()
    code, _ = await get_code(client, code_challenge=challenge, code_challenge_method="S256")
    answer = await exchange(client, code, code_verifier=verifier)
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return tokens


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}
