"""OAuth conformance. Each test's docstring names the facts-file lines it checks
(line numbers from ``cat -n /work/shared/reference/servicenow-wire-facts.md``)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from localdev.servicenow import RunningSimulator

from .helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    authorize_params,
    bearer,
    click_consent,
    exchange,
    get_code,
    open_client,
    parse_consent_form,
    pkce_pair,
    query_of,
    refresh,
)

TOKEN_ERROR = {"error_description": "access_denied", "error": "server_error"}
NOT_AUTHENTICATED = {
    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
    "status": "failure",
}


async def _table_status(client: httpx.AsyncClient, access_token: str) -> int:
    answer = await client.get("/api/now/table/incident", headers=bearer(access_token))
    return answer.status_code


async def test_consent_page_is_a_form_posting_back_with_original_params(client: httpx.AsyncClient) -> None:
    """facts L8, L11: GET /oauth_auth.do shows an Allow/Deny consent page carrying the parameters."""
    params = authorize_params()
    page = await client.get("/oauth_auth.do", params=params)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    form = parse_consent_form(page.text)
    assert (form.method.lower(), form.action) == ("post", "/oauth_auth.do")
    assert form.fields == params
    assert set(form.buttons) == {"allow", "deny"}


async def test_allow_redirects_with_code_and_state(client: httpx.AsyncClient) -> None:
    """facts L9: success redirect is redirect_uri?code=...&state=..."""
    params = authorize_params()
    answer = await click_consent(client, params, "allow")
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    redirect = query_of(location)
    assert redirect["state"] == params["state"]
    assert redirect["code"]


async def test_deny_redirects_with_access_denied_and_state(client: httpx.AsyncClient) -> None:
    """facts L11: the user may press Deny; the app learns it as error=access_denied with its state."""
    params = authorize_params()
    answer = await click_consent(client, params, "deny")
    assert answer.status_code == 302
    assert query_of(answer.headers["Location"]) == {"error": "access_denied", "state": params["state"]}


async def test_missing_state_is_refused(client: httpx.AsyncClient) -> None:
    """facts L10: state is required on new instances; 'Missing State parameter in request'."""
    answer = await client.get("/oauth_auth.do", params=authorize_params(state=None))
    assert answer.status_code == 400
    assert "Missing State parameter in request" in answer.text
    posted = await client.post("/oauth_auth.do", data={**authorize_params(state=None), "action": "allow"})
    assert posted.status_code == 400


async def test_unknown_client_gets_an_error_page(client: httpx.AsyncClient) -> None:
    """facts L8: client_id is required and must be a registered oauth_entity."""
    answer = await client.get("/oauth_auth.do", params=authorize_params(client_id="nobody"))
    assert answer.status_code == 400
    assert "Location" not in answer.headers


async def test_token_response_shape(client: httpx.AsyncClient) -> None:
    """facts L35-38, L40: scope useraccount, Bearer, expires_in 1800 (1799 live), opaque ~86-char tokens."""
    code, _ = await get_code(client)
    answer = await exchange(client, code)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"scope", "token_type", "expires_in", "refresh_token", "access_token"}
    assert body["scope"] == "useraccount"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] in (1799, 1800)
    for name in ("access_token", "refresh_token"):
        assert re.fullmatch(r"[A-Za-z0-9_-]{80,90}", body[name])
    assert await _table_status(client, body["access_token"]) == 200


async def test_pkce_verifier_checked(client: httpx.AsyncClient) -> None:
    """facts L8, L24: S256 challenge at authorize, code_verifier at the token exchange."""
    verifier, challenge = pkce_pair()
    code, _ = await get_code(client, code_challenge=challenge, code_challenge_method="S256")
    assert (await exchange(client, code, code_verifier=verifier)).status_code == 200


@pytest.mark.parametrize("verifier", ["wrong-verifier-" + "x" * 40, None])
async def test_pkce_wrong_or_missing_verifier_is_rejected(
    client: httpx.AsyncClient, verifier: str | None
) -> None:
    """facts L8, L48-49: a code issued with a challenge needs the matching verifier; else 401."""
    _, challenge = pkce_pair()
    code, _ = await get_code(client, code_challenge=challenge, code_challenge_method="S256")
    answer = await exchange(client, code, code_verifier=verifier)
    assert answer.status_code == 401
    assert answer.json() == TOKEN_ERROR


async def test_plain_pkce_method_is_refused(client: httpx.AsyncClient) -> None:
    """facts L8, L13: S256 is the documented method; anything else is refused at authorize."""
    params = authorize_params(code_challenge="abc", code_challenge_method="plain")
    assert (await client.get("/oauth_auth.do", params=params)).status_code == 400


async def test_code_is_single_use(client: httpx.AsyncClient) -> None:
    """facts L48-49: a replayed code is a bad code: 401 server_error/access_denied, not invalid_grant."""
    code, _ = await get_code(client)
    assert (await exchange(client, code)).status_code == 200
    replay = await exchange(client, code)
    assert replay.status_code == 401
    assert replay.json() == TOKEN_ERROR


async def test_code_bound_to_redirect_uri(client: httpx.AsyncClient) -> None:
    """facts L23, L48-49: the exchange must repeat the redirect_uri the code was issued for."""
    code, _ = await get_code(client)
    answer = await exchange(client, code, redirect_uri="https://evil.example/cb")
    assert answer.status_code == 401
    assert answer.json() == TOKEN_ERROR


async def test_code_bound_to_client(sim: RunningSimulator) -> None:
    """facts L23, L48: a code issued to one client cannot be redeemed by another."""
    sim.state.oauth.clients["other-client"] = "other-secret"
    async with open_client(sim.url) as client:
        code, _ = await get_code(client)
        answer = await exchange(client, code, client_id="other-client", client_secret="other-secret")
    assert answer.status_code == 401


async def test_code_expires(sim: RunningSimulator, client: httpx.AsyncClient) -> None:
    """facts L48: an expired code is refused (codes live 60 s here; the docs give no figure)."""
    code, _ = await get_code(client)
    await client.post("/__sim/clock", json={"advance_seconds": 61})
    assert (await exchange(client, code)).status_code == 401


async def test_bad_client_secret(client: httpx.AsyncClient) -> None:
    """facts L48-49: bad client credentials give 401 server_error/access_denied."""
    code, _ = await get_code(client)
    answer = await exchange(client, code, client_secret="wrong")
    assert answer.status_code == 401
    assert answer.json() == TOKEN_ERROR


async def test_json_body_is_rejected(client: httpx.AsyncClient) -> None:
    """facts L16: only form-encoded bodies; JSON is 'an unspecified error' (400 here, see README)."""
    code, _ = await get_code(client)
    answer = await client.post(
        "/oauth_token.do",
        json={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert answer.status_code == 400
    assert answer.json() == TOKEN_ERROR


async def test_query_string_parameters_are_not_read(client: httpx.AsyncClient) -> None:
    """facts L31: parameters in the query string are rejected; only the POST body counts."""
    code, _ = await get_code(client)
    answer = await client.post(
        "/oauth_token.do",
        params={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    assert answer.status_code == 401


async def test_refresh_returns_new_access_and_same_refresh_token(
    client: httpx.AsyncClient, tokens: dict[str, Any]
) -> None:
    """facts L42-46: the refresh grant does not rotate the refresh token."""
    answer = await refresh(client, tokens["refresh_token"])
    assert answer.status_code == 200
    body = answer.json()
    assert body["refresh_token"] == tokens["refresh_token"]
    assert body["access_token"] != tokens["access_token"]
    assert body["expires_in"] in (1799, 1800)
    assert await _table_status(client, body["access_token"]) == 200


async def test_refresh_with_bad_token_or_secret(client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """facts L48-49: bad refresh token or client secret -> 401 server_error/access_denied."""
    for answer in (
        await refresh(client, "not-a-token"),
        await refresh(client, tokens["refresh_token"], "bad"),
    ):
        assert answer.status_code == 401
        assert answer.json() == TOKEN_ERROR


async def test_access_token_expires_after_1800_s(client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """facts L40, L56: access tokens live 1800 s; an expired one gets the 401 envelope."""
    await client.post("/__sim/clock", json={"advance_seconds": 1790})
    assert await _table_status(client, tokens["access_token"]) == 200
    await client.post("/__sim/clock", json={"advance_seconds": 11})
    answer = await client.get("/api/now/table/incident", headers=bearer(tokens["access_token"]))
    assert answer.status_code == 401
    assert answer.json() == NOT_AUTHENTICATED
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200


async def test_refresh_token_expires_after_100_days(
    client: httpx.AsyncClient, tokens: dict[str, Any]
) -> None:
    """facts L40, L45, L48: refresh tokens live 8,640,000 s and refreshing does not extend them."""
    await client.post("/__sim/clock", json={"advance_seconds": 8_640_000 - 100})
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200
    await client.post("/__sim/clock", json={"advance_seconds": 101})
    answer = await refresh(client, tokens["refresh_token"])
    assert answer.status_code == 401
    assert answer.json() == TOKEN_ERROR


async def test_revoke_refresh_token_kills_its_access_tokens(
    client: httpx.AsyncClient, tokens: dict[str, Any]
) -> None:
    """facts L53: /oauth_revoke_token.do?token= needs no auth and marks the token expired."""
    answer = await client.get("/oauth_revoke_token.do", params={"token": tokens["refresh_token"]})
    assert answer.status_code == 200
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert await _table_status(client, tokens["access_token"]) == 401


async def test_revoke_access_token_only(client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """facts L53: revoking an access token leaves the refresh token usable."""
    await client.post("/oauth_revoke_token.do", params={"token": tokens["access_token"]})
    assert await _table_status(client, tokens["access_token"]) == 401
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200


async def test_missing_or_invalid_bearer_token(client: httpx.AsyncClient) -> None:
    """facts L56: no or invalid token -> 401 with the 'User Not Authenticated' envelope."""
    for headers in ({}, bearer("nonsense")):
        answer = await client.get("/api/now/table/incident", headers=headers)
        assert answer.status_code == 401
        assert answer.json() == NOT_AUTHENTICATED


async def test_access_token_query_parameter(client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """facts L56: old docs also show ?access_token=."""
    answer = await client.get("/api/now/table/incident", params={"access_token": tokens["access_token"]})
    assert answer.status_code == 200


async def test_control_expire_and_revoke(client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """facts L40, L53 via the control API: expire access tokens, then revoke refresh tokens."""
    assert (await client.post("/__sim/tokens/expire", json={})).json() == {"expired": 1}
    assert await _table_status(client, tokens["access_token"]) == 401
    renewed = (await refresh(client, tokens["refresh_token"])).json()
    assert await _table_status(client, renewed["access_token"]) == 200
    revoked = await client.post("/__sim/tokens/revoke", json={"refresh_token": tokens["refresh_token"]})
    assert revoked.json() == {"revoked": 1}
    assert await _table_status(client, renewed["access_token"]) == 401
    listing = (await client.get("/__sim/tokens")).json()
    assert listing["grants"][0]["revoked"] is True
