"""An admin's side of push: off until the first rotate, the rules to paste, rotation, status,
removal with the connection; no key outside the rotate answer."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from shared.errors import ConnectionNotReady
from shared.models import ConnectionStatus
from shared.push_models import SIGNATURE_HEADER, TIMESTAMP_HEADER, key_property
from shared.records import CORRELATION_DISPLAY, Connection
from shared.services.provisioning import ProvisioningConfig, ProvisioningService
from shared.services.push_setup import PushSetupService, public_base_url
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionRepository, InMemoryOAuthStateRepository
from tests.fakes.oauth import FakeRefreshGrant
from tests.fakes.push import InMemoryPushHooks, InMemoryPushKeys
from tests.fakes.secrets import InMemorySecretStore

TENANT = "11111111-1111-1111-1111-111111111111"
CALLBACK = "https://connector.example.test/api/oauth/callback"


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.connections = InMemoryConnectionRepository()
        self.hooks = InMemoryPushHooks()
        self.keys = InMemoryPushKeys()
        self.setup = PushSetupService(
            connections=self.connections,
            hooks=self.hooks,
            keys=self.keys,
            base_url=public_base_url(CALLBACK),
            clock=self.clock,
        )
        self.provisioning = ProvisioningService(
            connections=self.connections,
            states=InMemoryOAuthStateRepository(),
            secrets=InMemorySecretStore(),
            oauth=FakeRefreshGrant(self.clock),
            config=ProvisioningConfig(
                redirect_uri=CALLBACK,
                portal_url="https://portal.example.test",
                url_template="",
                local_dev=False,
            ),
            clock=self.clock,
            push=lambda: self.setup,
        )
        self.connections.rows[TENANT] = Connection(
            tenant_id=TENANT,
            instance="contoso",
            instance_url="https://contoso.service-now.com",
            client_id="client",
            status=ConnectionStatus.CONNECTED,
            updated_at=self.clock.now(),
        )


@pytest.fixture
def world() -> World:
    return World()


async def test_push_is_off_until_the_first_rotate(world: World) -> None:
    setup = await world.setup.setup(TENANT)
    assert setup.enabled is False
    assert setup.hook_url is None
    assert setup.business_rules == []
    assert key_property(TENANT) in setup.instructions
    assert (await world.provisioning.status(TENANT)).push.enabled is False


async def test_rotate_turns_push_on_and_shows_the_key_once(world: World) -> None:
    rotated = await world.setup.rotate(TENANT)
    assert rotated.enabled is True
    assert rotated.hook_url is not None
    assert rotated.hook_url.startswith("https://connector.example.test/api/servicenow/hooks/")
    hook_id = rotated.hook_url.rsplit("/", 1)[1]
    assert TENANT not in rotated.hook_url
    assert len(base64.b64decode(rotated.key)) == 32
    [(_, version)] = world.keys.keys
    assert world.keys.keys[(TENANT, version)] == base64.b64decode(rotated.key)
    assert world.hooks.hooks[hook_id].tenant_id == TENANT
    later = await world.setup.setup(TENANT)
    assert later.hook_url == rotated.hook_url
    assert rotated.key not in later.model_dump_json(by_alias=True)
    assert "key" not in json.loads(later.model_dump_json(by_alias=True))


async def test_tenants_sharing_an_instance_get_their_own_property_and_rules(world: World) -> None:
    other = "22222222-2222-2222-2222-222222222222"
    world.connections.rows[other] = world.connections.rows[TENANT].model_copy(update={"tenant_id": other})
    ours, theirs = await world.setup.rotate(TENANT), await world.setup.rotate(other)

    assert ours.key_property != theirs.key_property
    assert {r.name for r in ours.business_rules}.isdisjoint({r.name for r in theirs.business_rules})
    assert all(f"gs.getProperty('{theirs.key_property}')" in r.script for r in theirs.business_rules)
    assert not any(theirs.key_property in r.script for r in ours.business_rules)
    assert TENANT not in ours.model_dump_json() + theirs.model_dump_json().replace(other, "")


async def test_the_rules_are_async_on_both_tables_for_our_records_only(world: World) -> None:
    rotated = await world.setup.rotate(TENANT)
    assert [rule.table for rule in rotated.business_rules] == ["incident", "change_request"]
    for rule in rotated.business_rules:
        assert (rule.when, rule.insert, rule.update) == ("async", True, True)
        assert CORRELATION_DISPLAY in rule.condition
        assert json.dumps(rotated.hook_url) in rule.script
        assert f"gs.getProperty('{key_property(TENANT)}')" in rule.script
        assert "generateMac(key, 'HmacSHA256', timestamp + '.' + body)" in rule.script
        assert TIMESTAMP_HEADER in rule.script
        assert SIGNATURE_HEADER in rule.script
        assert "executeAsync()" in rule.script
        assert rotated.key not in rule.script


async def test_a_rotate_voids_the_old_hook(world: World) -> None:
    first = await world.setup.rotate(TENANT)
    second = await world.setup.rotate(TENANT)
    assert first.hook_url != second.hook_url
    assert first.key != second.key
    assert set(world.hooks.hooks) == {str(second.hook_url).rsplit("/", 1)[1]}


async def test_setup_needs_a_connection(world: World) -> None:
    with pytest.raises(ConnectionNotReady):
        await world.setup.setup("33333333-3333-3333-3333-333333333333")
    with pytest.raises(ConnectionNotReady):
        await world.setup.rotate("33333333-3333-3333-3333-333333333333")


async def test_the_status_counts_the_last_24_hours(world: World) -> None:
    await world.setup.rotate(TENANT)
    now = world.clock.now()
    await world.hooks.record_pushes(TENANT, 5, now - timedelta(hours=30))
    await world.hooks.record_pushes(TENANT, 2, now - timedelta(hours=23))
    await world.hooks.record_pushes(TENANT, 3, now)
    push = (await world.provisioning.status(TENANT)).push
    assert (push.enabled, push.pushes_last_24h, push.last_push_at) == (True, 5, now)


async def test_removing_the_connection_deletes_the_key_and_the_mapping(world: World) -> None:
    await world.setup.rotate(TENANT)
    await world.provisioning.remove(TENANT)
    assert world.hooks.hooks == {}
    assert world.hooks.tenants == {}
    assert world.keys.keys == {}


@pytest.mark.parametrize(
    ("callback", "base"),
    [
        ("https://app.example.com/api/oauth/callback", "https://app.example.com"),
        ("https://example.com/connector/api/oauth/callback", "https://example.com/connector"),
        ("http://127.0.0.1:7071/api/oauth/callback", "http://127.0.0.1:7071"),
    ],
)
def test_the_hook_url_is_on_the_apps_public_base(callback: str, base: str) -> None:
    assert public_base_url(callback) == base
