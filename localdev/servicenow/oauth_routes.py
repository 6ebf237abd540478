"""OAuth endpoints on the wire: consent page, token endpoint, revocation (facts L5-53).

The consent page stands for an already logged-in admin: it is one HTML form whose Allow and Deny
buttons post the original query parameters back to ``/oauth_auth.do`` with ``action=allow`` or
``action=deny``, so a real browser (or a test that parses the form) can click through.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from aiohttp import web
from yarl import URL

from .envelope import token_error
from .oauth import TOKEN_SCOPE, OAuthError, TokenSet
from .state import STATE_KEY

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MISSING_STATE = "Missing State parameter in request"
_ACTIONS = ("allow", "deny")


def _error_page(status: int, message: str) -> web.Response:
    page = (
        "<!DOCTYPE html><html><head><title>OAuth error</title></head>"
        f'<body><h1>OAuth error</h1><p id="error">{html.escape(message)}</p></body></html>'
    )
    return web.Response(status=status, text=page, content_type="text/html")


def _consent_page(params: Mapping[str, str], client_id: str) -> web.Response:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in params.items()
        if name != "action"
    )
    page = (
        "<!DOCTYPE html><html><head><title>Authorize application</title></head><body>"
        f"<h1>{html.escape(client_id)} would like to connect to your ServiceNow instance</h1>"
        f'<form method="post" action="/oauth_auth.do">{hidden}'
        '<button type="submit" name="action" value="allow">Allow</button>'
        '<button type="submit" name="action" value="deny">Deny</button>'
        "</form></body></html>"
    )
    return web.Response(text=page, content_type="text/html")


def _validate_authorize(request: web.Request, params: Mapping[str, str]) -> web.Response | None:
    """Problems the instance reports on its own page instead of redirecting (facts L8-10)."""
    state = request.app[STATE_KEY]
    if params.get("response_type") != "code":
        return _error_page(400, "Unsupported response_type; only code is supported")
    if not state.oauth.is_client(params.get("client_id", "")):
        return _error_page(400, "Invalid client_id")
    if not params.get("redirect_uri"):
        return _error_page(400, "Missing redirect_uri parameter in request")
    if not params.get("state"):
        return _error_page(400, MISSING_STATE)
    if params.get("code_challenge") and params.get("code_challenge_method", "plain") != "S256":
        return _error_page(400, "Unsupported code_challenge_method; use S256")
    return None


async def authorize_page(request: web.Request) -> web.Response:
    """GET /oauth_auth.do: the Allow/Deny consent page."""
    params = dict(request.query)
    problem = _validate_authorize(request, params)
    return problem or _consent_page(params, params["client_id"])


def _redirect(redirect_uri: str, extra: Mapping[str, str]) -> web.Response:
    target = URL(redirect_uri)
    location = target.with_query({**target.query, **extra})
    return web.Response(status=302, headers={"Location": str(location)})


async def authorize_decision(request: web.Request) -> web.Response:
    """POST /oauth_auth.do: the consent decision, answered by a redirect to ``redirect_uri``."""
    params = {key: str(value) for key, value in (await request.post()).items()}
    problem = _validate_authorize(request, params)
    if problem is not None:
        return problem
    action = params.get("action", "")
    if action not in _ACTIONS:
        return _error_page(400, "Missing or unknown action")
    if action == "deny":
        return _redirect(params["redirect_uri"], {"error": "access_denied", "state": params["state"]})
    code = request.app[STATE_KEY].oauth.issue_code(
        client_id=params["client_id"],
        redirect_uri=params["redirect_uri"],
        scope=params.get("scope", ""),
        code_challenge=params.get("code_challenge") or None,
    )
    return _redirect(params["redirect_uri"], {"code": code, "state": params["state"]})


def _token_response(request: web.Request, tokens: TokenSet) -> web.Response:
    oauth = request.app[STATE_KEY].oauth
    return web.json_response(
        {
            "scope": TOKEN_SCOPE,
            "token_type": "Bearer",
            "expires_in": oauth.seconds_left(tokens.access_token.expires_at),
            "refresh_token": tokens.grant.refresh_token,
            "access_token": tokens.access_token.token,
        }
    )


async def token(request: web.Request) -> web.Response:
    """POST /oauth_token.do. Parameters are read from the form body only (facts L16, L31).

    A JSON body is "an unspecified error" in the docs (facts L16); the simulator answers 400 with
    the usual ``server_error``/``access_denied`` body, so it is not mistaken for a revoked grant
    (which is 401 and means: ask the user to authorize again).
    """
    if request.content_type != FORM_CONTENT_TYPE:
        return token_error(400)
    form = {key: str(value) for key, value in (await request.post()).items()}
    oauth = request.app[STATE_KEY].oauth
    grant_type = form.get("grant_type")
    try:
        if grant_type == "authorization_code":
            tokens = oauth.exchange_code(
                code=form.get("code", ""),
                client_id=form.get("client_id", ""),
                client_secret=form.get("client_secret", ""),
                redirect_uri=form.get("redirect_uri", ""),
                code_verifier=form.get("code_verifier"),
            )
        elif grant_type == "refresh_token":
            tokens = oauth.refresh(
                refresh_token=form.get("refresh_token", ""),
                client_id=form.get("client_id", ""),
                client_secret=form.get("client_secret", ""),
            )
        else:
            return token_error(401)  # password/client_credentials are not enabled here
    except OAuthError:
        return token_error(401)
    return _token_response(request, tokens)


async def revoke(request: web.Request) -> web.Response:
    """``/oauth_revoke_token.do?token=``: no authentication, marks the token expired (facts L53).

    Unknown tokens get the same empty 200 so the endpoint does not reveal which tokens exist.
    """
    token_value = request.query.get("token")
    if token_value is None and request.method == "POST" and request.can_read_body:
        token_value = str((await request.post()).get("token", ""))
    if token_value:
        request.app[STATE_KEY].oauth.revoke(token_value)
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/oauth_auth.do", authorize_page)
    app.router.add_post("/oauth_auth.do", authorize_decision)
    app.router.add_post("/oauth_token.do", token)
    app.router.add_get("/oauth_revoke_token.do", revoke)
    app.router.add_post("/oauth_revoke_token.do", revoke)
