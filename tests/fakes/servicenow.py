"""A tiny ServiceNow OAuth endpoint for unit tests, served through `httpx.MockTransport`.

Just enough of the token and revoke endpoints for the real `ServiceNowOAuthClient` client: codes are
issued by the test (`issue_code`, as if the admin clicked Allow), bound to the client and the PKCE
challenge, and single use; failures answer 401 server_error/access_denied like the real instance.
Set `status` to make the token endpoint answer something else (e.g. 503).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx

from shared.servicenow.oauth import code_challenge


@dataclass
class FakeServiceNow:
    client_id: str = "client-id"
    client_secret: str = "client-secret-value"
    codes: dict[str, str] = field(default_factory=dict)  # code -> PKCE challenge
    used_codes: set[str] = field(default_factory=set)
    issued: list[dict[str, str]] = field(default_factory=list)  # token responses, oldest first
    revoked: list[str] = field(default_factory=list)
    token_requests: int = 0
    status: int | None = None

    def issue_code(self, challenge: str) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = challenge
        return code

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth_revoke_token.do":
            self.revoked.append(request.url.params["token"])
            return httpx.Response(200)
        if request.url.path != "/oauth_token.do" or request.method != "POST":
            return httpx.Response(404)
        self.token_requests += 1
        if self.status is not None:
            return httpx.Response(self.status, json={"error": "unavailable"})
        form = {key: values[0] for key, values in parse_qs(request.content.decode()).items()}
        code = form.get("code", "")
        challenge = self.codes.get(code)
        valid = (
            form.get("grant_type") == "authorization_code"
            and (form.get("client_id"), form.get("client_secret")) == (self.client_id, self.client_secret)
            and challenge is not None
            and code not in self.used_codes
            and code_challenge(form.get("code_verifier", "")) == challenge
        )
        self.used_codes.add(code)
        if not valid:
            return httpx.Response(401, json={"error_description": "access_denied", "error": "server_error"})
        tokens = {
            "access_token": secrets.token_urlsafe(64),
            "refresh_token": secrets.token_urlsafe(64),
            "token_type": "Bearer",
            "scope": "useraccount",
            "expires_in": "1799",
        }
        self.issued.append(tokens)
        return httpx.Response(200, json=tokens)
