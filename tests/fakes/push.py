"""In-memory push ports for unit tests: the hook mapping and counts, the keys, the pushed writes."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.push_models import PushHook, PushTenant
from shared.push_ports import PushHooks, PushKeys
from shared.timeline_models import PushedState
from shared.timeline_ports import PushedStates


class InMemoryPushHooks:
    def __init__(self) -> None:
        self.hooks: dict[str, PushHook] = {}
        self.tenants: dict[str, PushTenant] = {}
        self.lookups = 0

    async def hook(self, hook_id: str) -> PushHook | None:
        self.lookups += 1
        return self.hooks.get(hook_id)

    async def tenant(self, tenant_id: str) -> PushTenant | None:
        return self.tenants.get(tenant_id)

    async def replace_hook(self, tenant_id: str, hook_id: str, key_version: str) -> None:
        current = self.tenants.get(tenant_id) or PushTenant(tenant_id)
        if current.hook_id is not None:
            self.hooks.pop(current.hook_id, None)
        self.tenants[tenant_id] = replace(current, hook_id=hook_id, key_version=key_version)
        self.hooks[hook_id] = PushHook(hook_id, tenant_id, key_version)

    async def record_pushes(self, tenant_id: str, count: int, at: datetime) -> None:
        current = self.tenants.get(tenant_id)
        if current is None:
            return
        hourly = dict(current.hourly or {})
        hour = at.strftime("%Y%m%d%H")
        hourly[hour] = hourly.get(hour, 0) + count
        oldest = (at - timedelta(hours=24)).strftime("%Y%m%d%H")
        hourly = {h: n for h, n in hourly.items() if h >= oldest}
        last = current.last_push_at if current.last_push_at and current.last_push_at > at else at
        self.tenants[tenant_id] = replace(current, hourly=hourly, last_push_at=last)

    async def delete_tenant(self, tenant_id: str) -> None:
        current = self.tenants.pop(tenant_id, None)
        if current is not None and current.hook_id is not None:
            self.hooks.pop(current.hook_id, None)


class InMemoryPushKeys:
    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], bytes] = {}
        self.reads = 0

    async def new_key(self, tenant_id: str) -> tuple[str, bytes]:
        version, key = secrets.token_hex(16), secrets.token_bytes(32)
        self.keys[(tenant_id, version)] = key
        return version, key

    async def key(self, tenant_id: str, version: str) -> bytes | None:
        self.reads += 1
        return self.keys.get((tenant_id, version))

    async def delete_tenant(self, tenant_id: str) -> None:
        for found in [k for k in self.keys if k[0] == tenant_id]:
            del self.keys[found]


@dataclass
class Row:
    table: str
    sys_id: str
    state: str
    mod_count: int | None


class RecordingPushedStates:
    """The ticket rows a push may change, with the store's rule: newer `mod_count` only, the row's
    own record only."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}  # (tenant, ticket id) -> row
        self.calls: list[tuple[str, list[PushedState]]] = []

    def seed(
        self, tenant_id: str, ticket_id: str, table: str, sys_id: str, state: str, mod_count: int
    ) -> None:
        self.rows[(tenant_id, ticket_id)] = Row(table, sys_id, state, mod_count)

    async def apply_pushed(self, tenant_id: str, changes: Sequence[PushedState]) -> int:
        self.calls.append((tenant_id, list(changes)))
        changed = 0
        for change in changes:
            row = self.rows.get((tenant_id, change.ticket_id))
            if row is None or (row.table, row.sys_id) != (change.table, change.sys_id):
                continue
            if row.mod_count is not None and change.mod_count <= row.mod_count:
                continue
            row.state, row.mod_count = change.state, change.mod_count
            changed += 1
        return changed


def _conforms(
    hooks: InMemoryPushHooks, keys: InMemoryPushKeys, states: RecordingPushedStates
) -> tuple[PushHooks, PushKeys, PushedStates]:
    return hooks, keys, states
