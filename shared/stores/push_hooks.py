"""Push from ServiceNow in Table Storage: hook id -> tenant, and each tenant's push row.

- `pushhooks`: PartitionKey the hook id, RowKey `hook`; `TenantId`, `KeyVersion` (the Key Vault
  version of the key that signs for it), `CreatedAt`. The hook's lookup is one point read, cached
  in this process for `HOOK_CACHE_TTL` seconds (unknown ids too, so made-up ids do not each cost
  a read). A rotate or a removal through this process drops its cache entries at once; another
  process may accept the old hook for up to that long.
- `pushtenants`: PartitionKey the tenant id, RowKey `push`; `HookId`, `KeyVersion`, and the counts
  the worker writes: `LastPushAt` and `PushHours`, a JSON object of UTC hours (`YYYYMMDDHH`) to
  the pushes received in it, the last 25 hours kept. Writes carry the row's ETag.

No key, signature or body is stored: the key lives in Key Vault (`push_keys.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import PreconditionFailed
from shared.push_models import PushHook, PushTenant
from shared.stores.tables import (
    TableStore,
    create_entity,
    delete_entity,
    get_entity,
    replace_entity,
    upsert_entity,
)
from shared.stores.ttl_cache import TtlCache

HOOKS_TABLE = "pushhooks"
TENANTS_TABLE = "pushtenants"
HOOK_ROW = "hook"
TENANT_ROW = "push"
HOOK_CACHE_TTL = 30.0
KEPT_HOURS = 25
_ATTEMPTS = 8  # ETag races between workers recording counts for one tenant


def hour_key(at: datetime) -> str:
    return at.strftime("%Y%m%d%H")


class TablePushHooks:
    """`shared.push_ports.PushHooks` on Table Storage."""

    def __init__(
        self,
        tables: TableStore,
        *,
        cache_ttl: float = HOOK_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tables = tables
        self._cache: TtlCache[tuple[PushHook | None]] = TtlCache(cache_ttl, clock=clock)

    async def hook(self, hook_id: str) -> PushHook | None:
        cached = self._cache.get(hook_id)
        if cached is not None:
            return cached[0]
        generation = self._cache.generation(hook_id)
        entity = await get_entity(await self._tables.table(HOOKS_TABLE), hook_id, HOOK_ROW)
        found = None
        if entity is not None:
            found = PushHook(hook_id, str(entity["TenantId"]), str(entity["KeyVersion"]))
        self._cache.put_if_current(hook_id, (found,), generation)
        return found

    async def tenant(self, tenant_id: str) -> PushTenant | None:
        entity = await get_entity(await self._tables.table(TENANTS_TABLE), tenant_id, TENANT_ROW)
        return _tenant(tenant_id, entity) if entity is not None else None

    async def replace_hook(self, tenant_id: str, hook_id: str, key_version: str) -> None:
        old = await self._update_tenant(
            tenant_id, lambda entity: {**entity, "HookId": hook_id, "KeyVersion": key_version}, create=True
        )
        hooks = await self._tables.table(HOOKS_TABLE)
        if old is not None and old.get("HookId") and old["HookId"] != hook_id:
            await self._delete_hook(str(old["HookId"]))
        entity = {
            "PartitionKey": hook_id,
            "RowKey": HOOK_ROW,
            "TenantId": tenant_id,
            "KeyVersion": key_version,
            "CreatedAt": datetime.now(UTC),
        }
        await upsert_entity(hooks, entity)
        self._cache.invalidate(hook_id)
        now = await self.tenant(tenant_id)
        if now is None or now.hook_id != hook_id:
            # Another rotate (or a removal) wrote the tenant's row after ours: this hook is void.
            await self._delete_hook(hook_id)

    async def record_pushes(self, tenant_id: str, count: int, at: datetime) -> None:
        def add(entity: dict[str, Any]) -> dict[str, Any]:
            hours = _hours(entity)
            hours[hour_key(at)] = hours.get(hour_key(at), 0) + count
            oldest = hour_key(at - timedelta(hours=KEPT_HOURS - 1))
            kept = {hour: n for hour, n in hours.items() if hour >= oldest}
            last = entity.get("LastPushAt")
            newest = at if not isinstance(last, datetime) or at > last else last
            return {**entity, "PushHours": json.dumps(kept, sort_keys=True), "LastPushAt": newest}

        await self._update_tenant(tenant_id, add, create=False)

    async def delete_tenant(self, tenant_id: str) -> None:
        table = await self._tables.table(TENANTS_TABLE)
        entity = await get_entity(table, tenant_id, TENANT_ROW)
        if entity is not None and entity.get("HookId"):
            await self._delete_hook(str(entity["HookId"]))
        await delete_entity(table, tenant_id, TENANT_ROW)

    async def _delete_hook(self, hook_id: str) -> None:
        self._cache.invalidate(hook_id)
        await delete_entity(await self._tables.table(HOOKS_TABLE), hook_id, HOOK_ROW)
        self._cache.invalidate(hook_id)

    async def _update_tenant(
        self,
        tenant_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        create: bool,
    ) -> Mapping[str, Any] | None:
        """Apply `change` to the tenant's row (ETag-safe, re-applied on a lost race); the row as
        it was. Without `create`, a tenant with no row is left alone (push never enabled, removed)."""
        table = await self._tables.table(TENANTS_TABLE)
        for _ in range(_ATTEMPTS):
            current = await get_entity(table, tenant_id, TENANT_ROW)
            if current is None and not create:
                return None
            base = {key: value for key, value in (current or {}).items() if key != "Timestamp"}
            entity = change({**base, "PartitionKey": tenant_id, "RowKey": TENANT_ROW})
            try:
                if current is None:
                    await create_entity(table, entity)
                else:
                    await replace_entity(table, entity, current.metadata["etag"])  # type: ignore[attr-defined]
            except PreconditionFailed:
                continue
            return current
        raise PreconditionFailed()


def _hours(entity: Mapping[str, Any]) -> dict[str, int]:
    raw = entity.get("PushHours")
    try:
        hours = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    return {str(k): int(v) for k, v in hours.items()} if isinstance(hours, dict) else {}


def _tenant(tenant_id: str, entity: Mapping[str, Any]) -> PushTenant:
    last = entity.get("LastPushAt")
    return PushTenant(
        tenant_id=tenant_id,
        hook_id=str(entity["HookId"]) if entity.get("HookId") else None,
        key_version=str(entity["KeyVersion"]) if entity.get("KeyVersion") else None,
        last_push_at=last if isinstance(last, datetime) else None,
        hourly=_hours(entity),
    )
