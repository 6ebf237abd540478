"""The ports of push from ServiceNow: the hook mapping and counts, the signing keys, the writes.

The writes of what the worker read go through the ticket store's `PushedStates`
(`timeline_ports.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from shared.push_models import PushHook, PushTenant


class PushHooks(Protocol):
    """hookId -> tenant (a point read, cached briefly), and each tenant's push row."""

    async def hook(self, hook_id: str) -> PushHook | None: ...

    async def tenant(self, tenant_id: str) -> PushTenant | None: ...

    async def replace_hook(self, tenant_id: str, hook_id: str, key_version: str) -> None:
        """Point the tenant at a new hook; its old hook id stops resolving at once here."""
        ...

    async def record_pushes(self, tenant_id: str, count: int, at: datetime) -> None:
        """Add `count` valid pushes received at `at` to the tenant's counts."""
        ...

    async def delete_tenant(self, tenant_id: str) -> None: ...


class PushKeys(Protocol):
    """Each tenant's 32-byte signing key, in Key Vault; a version's value never changes."""

    async def new_key(self, tenant_id: str) -> tuple[str, bytes]:
        """A fresh random key stored as the tenant's latest version: (version, key)."""
        ...

    async def key(self, tenant_id: str, version: str) -> bytes | None: ...

    async def delete_tenant(self, tenant_id: str) -> None: ...
