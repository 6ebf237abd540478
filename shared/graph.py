"""Secure Score from Microsoft Graph: improvement actions (`secureScoreControlProfiles`) and the
points of each control in the latest score (`secureScores`).

One multi-tenant app registration reads every customer tenant's Secure Score with the client
credentials flow: msal acquires a token at each customer tenant's authority, so there is one
`msal.ConfidentialClientApplication` (and its token cache) per tenant, kept for the life of the
worker. msal is synchronous, so its calls run in a thread; Graph itself is called with one
long-lived `httpx.AsyncClient`. Both are built on the first Graph call, not with the client: most
requests of a worker never reach Graph, and msal's import and the client's TLS trust store would
otherwise lengthen every cold start.

Failures become `shared.errors` types: an unknown action is `NotFound`; a Graph 401 makes us drop
the cached token and try once more with a new one (Graph may reject a token before its stated
expiry); 429/503 are retried with backoff honouring `Retry-After`, then `UpstreamUnavailable`.
Graph allows an app 4 concurrent Secure Score requests per tenant and throttles the rest, so each
tenant's requests from this worker pass a semaphore of that size.

`update_control` PATCHes a control's state and comment. Graph appends every accepted PATCH to the
control's history, so a PATCH is sent again only after an answer that says it was not carried out
(`shared.servicenow.transport.maybe_processed`, the one definition of that): a connection that
never opened, a 429, a 503 with Retry-After, a 401 (once, with a new token). Any other failure (a
timeout after sending, a dropped connection, another 5xx) ends at once as an `UpstreamUnavailable`
marked `ambiguous`: whether the entry was appended can only be learnt by reading the control.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import (
    AppError,
    BadRequest,
    DependencyNotConfigured,
    NotFound,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.graph_tokens import GraphTokens
from shared.http_retry import RetryPolicy, send_with_retries
from shared.models import IMPROVEMENT_ACTION_ID, ImprovementAction
from shared.monitoring.http import GRAPH, traced
from shared.secure_score import CONTROL_STATES, writable_control

# Part of this adapter's API, kept in a module without I/O.
from shared.secure_score import to_control_scores as to_control_scores
from shared.secure_score import to_improvement_action as to_improvement_action
from shared.servicenow.transport import maybe_processed
from shared.settings import Settings

logger = logging.getLogger(__name__)

PROFILES_PATH = "/v1.0/security/secureScoreControlProfiles"
SCORES_PATH = "/v1.0/security/secureScores"
MAX_CONCURRENT_PER_TENANT = 4  # Graph's limit for secureScore and secureScoreControlProfile
_RETRYABLE = frozenset({429, 502, 503, 504})
_MAX_PAGES = 100  # a runaway nextLink loop must end; 100 pages is far above any real tenant
_ACTION_ID = re.compile(IMPROVEMENT_ACTION_ID)
READ_PERMISSION, WRITE_PERMISSION = "SecurityEvents.Read.All", "SecurityEvents.ReadWrite.All"
# Graph refuses a PATCH without these (reference: securescorecontrolprofile-update).
_VENDOR = {"provider": "SecureScore", "vendor": "Microsoft"}


class GraphClient:
    """Reads improvement actions of a customer tenant from Microsoft Graph, and sets a control's state.

    Parameters
    ----------
    client_id, client_secret:
        The multi-tenant app registration (needs `SecurityEvents.Read.All`, admin-consented per tenant;
        `SecurityEvents.ReadWrite.All` to update controls).
    authority_host, base_url:
        Entra (`https://login.microsoftonline.com`) and Graph (`https://graph.microsoft.com`).
    local_dev:
        Turns off msal's authority validation and instance discovery, which only know Microsoft's hosts.
    ca_bundle:
        A CA file to trust besides nothing else (the local stand-ins' CA).
    max_retries, backoff, max_retry_after:
        Retries of 429/5xx and connection errors (of a PATCH: only those that say it was not carried
        out, see the module docstring); exponential backoff from `backoff` seconds. A
        `Retry-After` longer than `max_retry_after` is not waited for: the caller gets
        `UpstreamUnavailable` carrying it, so an HTTP request does not hang.
    max_concurrent:
        Graph requests in flight at once per tenant (waits for a retry hold no slot).
    clock:
        Waits between retries go through it.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: SecretStr,
        authority_host: str = "https://login.microsoftonline.com",
        base_url: str = "https://graph.microsoft.com",
        local_dev: bool = False,
        ca_bundle: str | None = None,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_retry_after: float = 10.0,
        max_concurrent: int = MAX_CONCURRENT_PER_TENANT,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._tokens = GraphTokens(
            client_id=client_id,
            client_secret=client_secret,
            authority_host=authority_host,
            local_dev=local_dev,
            ca_bundle=ca_bundle,
            timeout=timeout,
        )
        self._base_url = base_url.rstrip("/")
        self._retry = RetryPolicy(
            attempts=max_retries + 1,
            backoff_s=backoff,
            max_retry_after_s=max_retry_after,
            statuses=_RETRYABLE,
            unhinted_retry_after_s=30.0,
        )
        self._clock = clock
        self._max_concurrent = max_concurrent
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._timeout = timeout
        self._ca_bundle = ca_bundle
        self._http_client = http

    @property
    def _http(self) -> httpx.AsyncClient:
        # Built on first use, with no await in between, so concurrent first calls share one client.
        if self._http_client is None:
            verify = ssl.create_default_context(cafile=self._ca_bundle) if self._ca_bundle else True
            self._http_client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout, connect=5.0),
                transport=traced(GRAPH, verify=verify),  # a span per request when telemetry is on
                headers={"Accept": "application/json"},
            )
        return self._http_client

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> GraphClient | UnconfiguredGraph:
        if not settings.graph_client_id or settings.graph_client_secret is None:
            # Only enrichment needs Graph: every other endpoint must keep working without it.
            return UnconfiguredGraph()
        return cls(
            client_id=settings.graph_client_id,
            client_secret=settings.graph_client_secret,
            authority_host=str(settings.entra_authority_host),
            base_url=str(settings.graph_base_url),
            local_dev=settings.local_dev,
            ca_bundle=settings.local_ca_bundle,
            **options,
        )

    async def aclose(self) -> None:
        if self._http_client is not None:
            await self._http_client.aclose()

    # --- the port -------------------------------------------------------------------------------

    async def get_improvement_action(self, tenant_id: str, action_id: str) -> ImprovementAction:
        """One improvement action. Raises `NotFound` when Secure Score has no such action."""
        if len(action_id) > 200 or not _ACTION_ID.fullmatch(action_id):
            raise BadRequest("The improvement action id is not valid.")
        url = f"{self._base_url}{PROFILES_PATH}/{quote(action_id, safe='')}"
        body = await self._get(tenant_id, url)
        if body is None:
            raise NotFound(f"Improvement action {action_id} was not found in Microsoft Secure Score.")
        return to_improvement_action(body)

    async def list_improvement_actions(
        self, tenant_id: str, *, page_size: int | None = None
    ) -> list[ImprovementAction]:
        """Every improvement action of the tenant, following `@odata.nextLink` to the end."""
        return [to_improvement_action(raw) async for raw in self._profiles(tenant_id, page_size)]

    async def control_scores(self, tenant_id: str) -> dict[str, float]:
        """The points per control in the tenant's latest Secure Score ({} before its first one)."""
        body = await self._get(tenant_id, f"{self._base_url}{SCORES_PATH}?$top=1")
        if body is None:
            raise UpstreamError("Microsoft Graph did not find the tenant's Secure Scores.")
        latest = body.get("value") or []  # newest first
        return to_control_scores(latest[0]) if latest else {}

    async def update_control(self, tenant_id: str, control_id: str, *, comment: str, state: str) -> None:
        """PATCH the control's state and comment (the `SecureScoreWriter` port says what it raises).
        A device control or a state Graph does not know is refused here, before anything is sent."""
        if len(control_id) > 200 or not _ACTION_ID.fullmatch(control_id):
            raise BadRequest("The improvement action id is not valid.")
        if not writable_control(control_id):
            raise BadRequest(
                f"Improvement action {control_id} is a device control: Microsoft Defender Vulnerability "
                "Management manages it, and Secure Score does not accept updates of it."
            )
        if state not in CONTROL_STATES:
            raise BadRequest(f"The control state must be one of {', '.join(CONTROL_STATES)}.")
        url = f"{self._base_url}{PROFILES_PATH}/{quote(control_id, safe='')}"
        body = {"comment": comment, "state": state, "vendorInformation": dict(_VENDOR)}
        response = await self._authorized(tenant_id, lambda: self._send_patch(tenant_id, url, body))
        if response.status_code == 404:
            raise NotFound(f"Improvement action {control_id} was not found in Microsoft Secure Score.")
        if response.status_code >= 400:
            raise _graph_error(response, WRITE_PERMISSION)

    # --- Graph ----------------------------------------------------------------------------------

    async def _profiles(self, tenant_id: str, page_size: int | None) -> AsyncIterator[dict[str, Any]]:
        url: str | None = f"{self._base_url}{PROFILES_PATH}"
        if page_size:
            url = f"{url}?$top={int(page_size)}"
        for _ in range(_MAX_PAGES):
            if url is None:
                return
            body = await self._get(tenant_id, url)
            if body is None:
                raise UpstreamError("Microsoft Graph did not find the Secure Score control profiles.")
            for raw in body.get("value") or []:
                yield raw
            url = self._checked_next_link(body.get("@odata.nextLink"))
        raise UpstreamError("Microsoft Graph kept paging past the limit.")

    def _checked_next_link(self, link: object) -> str | None:
        if link is None:
            return None
        # We send a bearer token to this URL: it must be Graph's, whatever the response says.
        if not isinstance(link, str) or not link.startswith(self._base_url + "/"):
            raise UpstreamError("Microsoft Graph returned a next page link outside Graph.")
        return link

    async def _get(self, tenant_id: str, url: str) -> dict[str, Any] | None:
        """GET a Graph URL as the tenant: the JSON body, or None for 404."""
        response = await self._authorized(tenant_id, lambda: self._send(tenant_id, url))
        status = response.status_code
        if status == 404:
            return None
        if status >= 400:
            raise _graph_error(response, READ_PERMISSION)
        body: dict[str, Any] = response.json()
        return body

    async def _authorized(
        self, tenant_id: str, send: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        """`send`, and once more with a new token when Graph answers 401 (the request was refused
        before anything was done, so this holds for a PATCH too)."""
        response = await send()
        if response.status_code == 401:
            # Graph rejected a token msal still considers valid (expired early, revoked, or
            # signed before a key rollover): forget it and ask Entra for a new one, once.
            logger.info("Graph rejected the cached token (%s); getting a new one", _graph_code(response))
            await self._drop_token(tenant_id)
            response = await send()
        return response

    async def _send(self, tenant_id: str, url: str) -> httpx.Response:
        """One GET, retried on throttling, unavailability and transport failures."""
        return await send_with_retries(
            lambda: self._request(tenant_id, "GET", url),
            self._retry,
            failures=(httpx.HTTPError,),
            upstream="Microsoft Graph",
            what="read Secure Score",
            clock=self._clock,
        )

    async def _send_patch(self, tenant_id: str, url: str, body: dict[str, Any]) -> httpx.Response:
        """One PATCH, sent again only while every answer says it was not carried out. A 5xx that
        may come after the work (any but a 503 with Retry-After) ends it as well as a timeout."""

        async def send() -> httpx.Response:
            try:
                response = await self._request(tenant_id, "PATCH", url, body)
            except httpx.HTTPError as exc:
                if maybe_processed(exc):
                    raise _maybe_updated(type(exc).__name__, self._retry.unhinted_retry_after()) from exc
                raise  # never sent: the retry loop sends it again
            if response.status_code >= 500 and maybe_processed(response):
                raise _maybe_updated(f"HTTP {response.status_code}", self._retry.unhinted_retry_after())
            return response

        return await send_with_retries(
            send,
            self._retry,
            failures=(httpx.HTTPError,),
            upstream="Microsoft Graph",
            what="update a Secure Score control",
            clock=self._clock,
            maybe_processed=maybe_processed,
        )

    async def _request(
        self, tenant_id: str, method: str, url: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        token = await self._token(tenant_id)  # msal's cache, or a new one after a drop
        headers = {"Authorization": f"Bearer {token}", "client-request-id": str(uuid.uuid4())}
        async with self._slots.setdefault(tenant_id, asyncio.Semaphore(self._max_concurrent)):
            return await self._http.request(method, url, headers=headers, json=body)

    # --- tokens (msal, in graph_tokens) -------------------------------------------------------------

    async def _token(self, tenant_id: str) -> str:
        return await self._tokens.token(tenant_id)

    async def _drop_token(self, tenant_id: str) -> None:
        await self._tokens.drop(tenant_id)


class UnconfiguredGraph:
    """The improvement-actions port when GRAPH_CLIENT_ID / GRAPH_CLIENT_SECRET are not set."""

    _MESSAGE = "Microsoft Graph is not configured: set GRAPH_CLIENT_ID and GRAPH_CLIENT_SECRET."

    async def get_improvement_action(self, tenant_id: str, action_id: str) -> ImprovementAction:
        raise DependencyNotConfigured(self._MESSAGE)

    async def list_improvement_actions(
        self, tenant_id: str, *, page_size: int | None = None
    ) -> list[ImprovementAction]:
        raise DependencyNotConfigured(self._MESSAGE)

    async def control_scores(self, tenant_id: str) -> dict[str, float]:
        raise DependencyNotConfigured(self._MESSAGE)

    async def update_control(self, tenant_id: str, control_id: str, *, comment: str, state: str) -> None:
        raise DependencyNotConfigured(self._MESSAGE)

    async def aclose(self) -> None:
        return None


def _graph_code(response: httpx.Response) -> str:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "no error code"
    return str(code)[:100]


def _graph_error(response: httpx.Response, permission: str) -> AppError:
    """The error for a Graph answer we cannot use; `permission` is the one the request needs."""
    status, code = response.status_code, _graph_code(response)
    if status == 401:
        return UpstreamError(f"Microsoft Graph rejected a freshly issued token ({code}).")
    if status == 403:
        return UpstreamError(
            "Microsoft Graph denied access to Secure Score for this tenant: an admin must grant the app "
            f"{permission} ({code})."
        )
    return UpstreamError(f"Microsoft Graph answered HTTP {status} ({code}).")


def _maybe_updated(failure: str, retry_after: int) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"Microsoft Graph did not confirm the update of a Secure Score control ({failure}); it may "
        "have been made all the same.",
        retry_after=retry_after,
        ambiguous=True,
    )
