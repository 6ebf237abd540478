import base64
import json
import logging

import pytest

from shared import identity
from shared.errors import Forbidden, Unauthenticated
from shared.identity import (
    SECURITY_ADMINISTRATOR_TEMPLATE_ID,
    TENANT_ROLES,
    Caller,
    Role,
    caller_from_headers,
    encode_principal,
)

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
USER = "00000000-0000-0000-0000-0000000000aa"


def headers(value: str) -> dict[str, str]:
    return {"X-MS-CLIENT-PRINCIPAL": value}


def test_tenant_user_name_and_roles_come_from_the_claims() -> None:
    caller = caller_from_headers(
        headers(encode_principal(TENANT, USER, ["Tickets.ReadWrite", "Other.Role"], name="Ada")), trusted=True
    )
    assert (caller.tenant_id, caller.user_id, caller.name) == (TENANT, USER, "Ada")
    assert caller.roles == frozenset({Role.READ_WRITE})


def test_short_claim_names_tid_and_oid_are_accepted() -> None:
    principal = {
        "claims": [
            {"typ": "tid", "val": TENANT},
            {"typ": "oid", "val": USER},
            {"typ": "roles", "val": "Tickets.Read"},
        ]
    }
    caller = caller_from_headers(
        headers(base64.b64encode(json.dumps(principal).encode()).decode()), trusted=True
    )
    assert caller.tenant_id == TENANT
    assert caller.roles == frozenset({Role.READ})


def test_role_hierarchy() -> None:
    admin = caller_from_headers(headers(encode_principal(TENANT, USER, ["Connector.Admin"])), trusted=True)
    for role in TENANT_ROLES:
        admin.require(role)
    reader = caller_from_headers(headers(encode_principal(TENANT, USER, ["Tickets.Read"])), trusted=True)
    reader.require(Role.READ)
    with pytest.raises(Forbidden):
        reader.require(Role.READ_WRITE)
    writer = caller_from_headers(headers(encode_principal(TENANT, USER, ["Tickets.ReadWrite"])), trusted=True)
    writer.require(Role.READ)
    with pytest.raises(Forbidden):
        writer.require(Role.ADMIN)


def test_security_administrator_directory_role_counts_as_connector_admin() -> None:
    caller = caller_from_headers(
        headers(encode_principal(TENANT, USER, [], wids=[SECURITY_ADMINISTRATOR_TEMPLATE_ID.upper()])),
        trusted=True,
    )
    caller.require(Role.ADMIN)
    other = caller_from_headers(
        headers(encode_principal(TENANT, USER, [], wids=["62e90394-69f5-4237-9190-012177145e10"])),
        trusted=True,
    )
    with pytest.raises(Forbidden):
        other.require(Role.READ)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64 at all!",
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(json.dumps({"claims": "nope"}).encode()).decode(),
        base64.b64encode(
            json.dumps(
                {"claims": [{"typ": "tid", "val": "not-a-guid"}, {"typ": "oid", "val": USER}]}
            ).encode()
        ).decode(),
        base64.b64encode(json.dumps({"claims": [{"typ": "tid", "val": TENANT}]}).encode()).decode(),
    ],
)
def test_missing_or_unusable_principals_are_unauthenticated(value: str) -> None:
    with pytest.raises(Unauthenticated):
        caller_from_headers(headers(value) if value else {}, trusted=True)


def test_untrusted_header_is_ignored_and_the_reason_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(identity, "_untrusted_warning_logged", False)
    good = headers(encode_principal(TENANT, USER, ["Connector.Admin"]))
    with caplog.at_level(logging.WARNING, logger="shared.identity"):
        for _ in range(3):
            with pytest.raises(Unauthenticated):
                caller_from_headers(good, trusted=False)
    warnings = [r for r in caplog.records if "WEBSITE_AUTH_ENABLED" in r.getMessage()]
    assert len(warnings) == 1


# --- Connector.Operator: honoured only for a user of the operator's own tenant -----------------

OPERATOR_TENANT = "0f0f0f0f-1111-4222-8333-444444444444"


def operator_caller(tenant: str, roles: list[str], *, configured: str | None = OPERATOR_TENANT) -> Caller:
    return caller_from_headers(
        headers(encode_principal(tenant, USER, roles)), trusted=True, operator_tenant=lambda: configured
    )


def test_the_operator_role_counts_for_a_user_of_the_operator_tenant() -> None:
    operator = operator_caller(OPERATOR_TENANT, ["Connector.Operator"])
    assert operator.roles == frozenset({Role.OPERATOR})
    operator.require(Role.OPERATOR)


@pytest.mark.parametrize("configured", [OPERATOR_TENANT, None])
def test_the_operator_role_of_another_tenant_is_dropped_while_the_principal_is_read(
    configured: str | None,
) -> None:
    other = operator_caller(TENANT, ["Connector.Operator", "Tickets.Read"], configured=configured)
    assert other.roles == frozenset({Role.READ})
    with pytest.raises(Forbidden):
        other.require(Role.OPERATOR)


def test_nobody_holds_the_operator_role_while_no_operator_tenant_is_configured() -> None:
    with pytest.raises(Forbidden):
        operator_caller(OPERATOR_TENANT, ["Connector.Operator"], configured=None).require(Role.OPERATOR)


@pytest.mark.parametrize("tenant", [TENANT, OPERATOR_TENANT])
def test_a_connector_admin_is_no_operator(tenant: str) -> None:
    admin = operator_caller(tenant, ["Connector.Admin"])
    with pytest.raises(Forbidden):
        admin.require(Role.OPERATOR)
    security_admin = caller_from_headers(
        headers(encode_principal(tenant, USER, [], wids=[SECURITY_ADMINISTRATOR_TEMPLATE_ID])),
        trusted=True,
        operator_tenant=lambda: OPERATOR_TENANT,
    )
    with pytest.raises(Forbidden):
        security_admin.require(Role.OPERATOR)


def test_the_operator_role_grants_nothing_else() -> None:
    operator = operator_caller(OPERATOR_TENANT, ["Connector.Operator"])
    for role in TENANT_ROLES:
        with pytest.raises(Forbidden):
            operator.require(role)


def test_the_operator_tenant_is_asked_only_of_a_principal_claiming_the_role() -> None:
    def unreadable() -> str | None:
        raise AssertionError("the operator tenant was read for a tenant user")

    caller = caller_from_headers(
        headers(encode_principal(TENANT, USER, ["Connector.Admin"])), trusted=True, operator_tenant=unreadable
    )
    assert caller.roles == frozenset({Role.ADMIN})


def test_the_configured_operator_tenant_comes_from_the_settings(app_env: pytest.MonkeyPatch) -> None:
    app_env.setenv("OPERATOR_TENANT_ID", OPERATOR_TENANT.upper())
    good = headers(encode_principal(OPERATOR_TENANT, USER, ["Connector.Operator"]))
    assert caller_from_headers(good, trusted=True).roles == frozenset({Role.OPERATOR})
    other = headers(encode_principal(TENANT, USER, ["Connector.Operator"]))
    assert caller_from_headers(other, trusted=True).roles == frozenset()
