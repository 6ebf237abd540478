"""What one tenant registers as a secret never changes another tenant's log records.

A tenant chooses its ServiceNow client secret, and its ServiceNow instance chooses the tokens it
returns; both are registered with the redactor. Here tenant W makes those values the words of
tenant V's log lines (error codes, function names, ids, ServiceNow's error texts), and V's records
must read exactly as they did before W registered anything, while W's own records stay scrubbed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from pydantic import SecretStr

from shared import observability
from shared.observability import bind_tenant, log_context, redact, register_secret
from shared.records import TokenSet
from shared.servicenow.oauth import ServiceNowOAuthClient
from shared.stores.secrets import KeyVaultSecretStore
from tests.fakes.secrets import InMemorySecretStore

LOGGER = "functions._http"
FORMAT = "%(levelname)s %(name)s [invocation=%(invocation_id)s tenant=%(tenant_id)s] %(message)s"
# The words of V's log lines below, and ServiceNow's own error texts and ids.
COLLIDING = [
    "validation_error",
    "tickets_list",
    "tickets_get",
    "not_found",
    "upstream_rejected",
    "reauthorization_required",
    "The request is not valid",
    "Input should be a valid integer",
    "c537bae64f411200adf9f8e18110c76e",
    "INC0010001",
    "User Not Authenticated",
    "Required to provide Auth information",
    "access_denied",
    "server_error",
    "OAuth callback failed",
    "unknown_state",
    "Syncing (timer sync requested",
    "failed unexpectedly",
    "RuntimeError",
    "Traceback (most recent call last)",
]


@pytest.fixture(autouse=True)
def installed() -> None:
    observability.install()


@pytest.fixture
def tenants() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())


def _v_records(tenant_v: str) -> list[str]:
    """What tenant V's request, callback and sync log, rendered as a handler would."""
    logger = logging.getLogger(LOGGER)
    records: list[logging.LogRecord] = []
    handler = _Keep(records)
    logger.addHandler(handler)
    try:
        with log_context(invocation_id="inv-v-callback"):
            logger.warning("OAuth callback failed: %s", "unknown_state")
            logger.warning("OAuth callback failed: %s", "ServiceNow said access_denied (server_error)")
        with log_context(invocation_id="inv-v-request"):
            bind_tenant(tenant_v)
            logger.info(
                "%s %s: %s", "tickets_list", "validation_error",
                "The request is not valid: top: Input should be a valid integer",
            )  # fmt: skip
            logger.info("%s %s: %s", "tickets_get", "not_found", "No ticket c537bae64f411200adf9f8e18110c76e")
            logger.warning(
                "tickets_create upstream_rejected: ServiceNow refused INC0010001: User Not Authenticated "
                "(Required to provide Auth information)"
            )
            logger.info("Syncing (timer sync requested at 2030-01-01, attempt 1) for %s", tenant_v)
            try:
                raise RuntimeError("validation_error in tickets_list for c537bae64f411200adf9f8e18110c76e")
            except RuntimeError:
                logger.exception("%s failed unexpectedly", "tickets_list")
    finally:
        logger.removeHandler(handler)
    formatter = logging.Formatter(FORMAT)
    return [formatter.format(record) for record in records]


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def info_logs() -> Iterator[None]:
    logger = logging.getLogger(LOGGER)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield
    logger.setLevel(level)


class _StubSecretClient:
    """Just enough of the Key Vault `SecretClient` for the store to write and read values."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def set_secret(self, name: str, value: str, **kwargs: Any) -> None:
        self.values[name] = value

    async def get_secret(self, name: str, version: str | None = None) -> Any:
        return SimpleNamespace(value=self.values[name], properties=SimpleNamespace(version="1"))


def _key_vault_store() -> KeyVaultSecretStore:
    return KeyVaultSecretStore(cast(Any, _StubSecretClient()), cache_ttl=0)


async def _from_hostile_instance(access: str, refresh: str, *, code: str, verifier: str) -> TokenSet:
    """A code exchange, then a refresh, against an instance that answers with these tokens."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": access, "refresh_token": refresh, "expires_in": 1})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        oauth, secret = ServiceNowOAuthClient(http), SecretStr("w-client-secret-1")
        tokens = await oauth.exchange_code(
            "https://w.example.test", client_id="w", client_secret=secret, code=code,
            redirect_uri="https://app/cb", verifier=verifier, state="s",
        )  # fmt: skip
        return await oauth.refresh(
            "https://w.example.test", client_id="w", client_secret=secret, tokens=tokens
        )


async def _w_registers_everything(tenant_w: str, values: list[str]) -> None:
    """Every way a value of W's reaches the redactor: its client secret (stored, read), its
    instance's code and tokens (in the callback, before the tenant is known, and in a request),
    explicit calls."""
    store, vault = InMemorySecretStore(), _key_vault_store()
    pairs = list(zip(values[::2], values[1::2], strict=False))
    with log_context(invocation_id="inv-w-request"):
        bind_tenant(tenant_w)
        for value in values:
            await store.set_client_secret(tenant_w, SecretStr(value))
            await store.get_client_secret(tenant_w)
            await vault.set_client_secret(tenant_w, SecretStr(value))
            await vault.get_client_secret(tenant_w)
            register_secret(value)
        for access, refresh in pairs:
            tokens = await _from_hostile_instance(access, refresh, code="c0de-c0de", verifier="v3rifier-v3")
            await store.set_tokens(tenant_w, tokens)
            await vault.set_tokens(tenant_w, tokens)
            await vault.get_tokens(tenant_w)
    with log_context(invocation_id="inv-w-callback"):
        for access, refresh in pairs:
            await _from_hostile_instance(access, refresh, code=access, verifier=refresh)
            await vault.get_client_secret(tenant_w)
    register_secret(*values, tenant_id=tenant_w)


async def test_what_tenant_w_registers_leaves_tenant_vs_records_byte_for_byte_unchanged(
    tenants: tuple[str, str], info_logs: None
) -> None:
    tenant_w, tenant_v = tenants
    before = _v_records(tenant_v)
    assert any("validation_error" in line for line in before)  # the collisions are really there

    await _w_registers_everything(tenant_w, [*COLLIDING, tenant_v])

    assert _v_records(tenant_v) == before


async def test_tenant_ws_own_secrets_are_still_scrubbed_from_its_records(tenants: tuple[str, str]) -> None:
    tenant_w, _ = tenants
    access, refresh = f"w-access-{uuid.uuid4()}", f"w-refresh-{uuid.uuid4()}"
    with log_context(invocation_id="inv-w-callback-2"):
        await _from_hostile_instance(access, refresh, code="w-auth-code-123", verifier="w-verifier-123")
        # Before the tenant is known (the OAuth callback): scrubbed in this invocation...
        assert redact(f"{access} {refresh} w-auth-code-123 w-verifier-123") == "*** *** *** ***"
        bind_tenant(tenant_w)
        assert redact(f"code w-auth-code-123 in {access}") == "code *** in ***"
    # ...and in no other.
    with log_context(invocation_id="inv-other"):
        assert redact(f"{access} w-auth-code-123") == f"{access} w-auth-code-123"

    await _key_vault_store().set_client_secret(tenant_w, SecretStr("w-client-secret-XYZ-9"))
    with log_context(invocation_id="inv-w-later", tenant_id=tenant_w):
        register_secret("validation_error")  # W may hide words from its own logs, and no one else's
        assert redact("secret w-client-secret-XYZ-9") == "secret ***"
        assert redact("tickets_list validation_error: x") == "tickets_list ***: x"


async def test_a_record_outside_any_tenant_does_not_see_tenant_values(tenants: tuple[str, str]) -> None:
    tenant_w, _ = tenants
    register_secret("sync_timer ran late", tenant_id=tenant_w)
    with log_context(invocation_id="inv-timer"):
        assert redact("sync_timer ran late") == "sync_timer ran late"
    assert redact("sync_timer ran late") == "sync_timer ran late"
