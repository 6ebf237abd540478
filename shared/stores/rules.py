"""The repository of the `rules` table: a tenant's rules (PK tenant id, RK rule id) and its
evaluation state (RK `STATE_ROW`, which no rule id can be).

RuleRepository
    list(tenant_id)                 one partition query, the state row left out
    get(tenant_id, rule_id)
    put(record)                     insert (no ETag) or ETag-conditional replace
    delete(tenant_id, rule_id)
    record_runs(tenant_id, runs)    merges of `LastRun` only, each into a row that exists
    state(tenant_id), pause(...)    the tenant's paused-until (an upsert: nothing else is on it)
    held, hold, release             creates held until they end (RK `~held~<hash of the action>`)

Rule ids are letters, digits and hyphens: every row of the partition that is not a rule has a
RowKey starting with `~`, which sorts after them all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.rule_models import RuleRun
from shared.rule_ports import HeldCreate, RuleRecord, RulesState
from shared.stores.tables import (
    TableStore,
    create_entity,
    delete_entity,
    from_entity,
    get_entity,
    query,
    replace_entity,
    storage_errors,
    to_entity,
    upsert_entity,
)

RULES = "rules"
STATE_ROW = "~state"
HELD_PREFIX = "~held~"
_JSON = frozenset({"Rule", "LastRun"})


class RuleRepository:
    def __init__(self, store: TableStore) -> None:
        self._store = store

    async def list(self, tenant_id: str) -> list[RuleRecord]:
        table = await self._store.table(RULES)
        found = [
            from_entity(RuleRecord, entity, _JSON)
            async for entity in query(
                table,
                "PartitionKey eq @tenant and RowKey lt @other",
                {"tenant": tenant_id, "other": "~"},
            )
        ]
        return sorted(found, key=lambda record: record.rule_id)

    async def get(self, tenant_id: str, rule_id: str) -> RuleRecord | None:
        if rule_id.startswith("~"):
            return None
        table = await self._store.table(RULES)
        entity = await get_entity(table, tenant_id, rule_id)
        return None if entity is None else from_entity(RuleRecord, entity, _JSON)

    async def put(self, record: RuleRecord) -> RuleRecord:
        table = await self._store.table(RULES)
        entity = _entity(record)
        if record.etag is None:
            etag = await create_entity(table, entity)
        else:
            etag = await replace_entity(table, entity, record.etag)
        return record.model_copy(update={"etag": etag})

    async def delete(self, tenant_id: str, rule_id: str) -> bool:
        if await self.get(tenant_id, rule_id) is None:
            return False
        table = await self._store.table(RULES)
        await delete_entity(table, tenant_id, rule_id)
        return True

    async def record_runs(self, tenant_id: str, runs: Mapping[str, RuleRun]) -> None:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        table = await self._store.table(RULES)
        for rule_id, run in runs.items():
            entity = {
                "PartitionKey": tenant_id,
                "RowKey": rule_id,
                "LastRun": run.model_dump_json(by_alias=True),
            }
            try:
                with storage_errors(f"update {RULES}"):
                    # `If-Match: *`: never makes a row for a rule deleted while it ran.
                    await table.update_entity(
                        entity, mode=UpdateMode.MERGE, match_condition=MatchConditions.Unconditionally
                    )
            except ResourceNotFoundError:
                continue

    async def state(self, tenant_id: str) -> RulesState:
        table = await self._store.table(RULES)
        entity = await get_entity(table, tenant_id, STATE_ROW)
        if entity is None:
            return RulesState(tenant_id=tenant_id)
        return from_entity(RulesState, entity, frozenset())

    async def pause(self, tenant_id: str, until: datetime, reason: str) -> None:
        table = await self._store.table(RULES)
        state = RulesState(tenant_id=tenant_id, paused_until=until, paused_reason=reason)
        await upsert_entity(table, to_entity(state, tenant_id, STATE_ROW))

    async def held(self, tenant_id: str) -> Sequence[HeldCreate]:
        table = await self._store.table(RULES)
        found = [
            from_entity(HeldCreate, entity, frozenset())
            async for entity in query(
                table,
                "PartitionKey eq @tenant and RowKey ge @first and RowKey lt @after",
                {"tenant": tenant_id, "first": HELD_PREFIX, "after": HELD_PREFIX + "~"},
            )
        ]
        return sorted(found, key=lambda entry: entry.held_at)

    async def hold(self, entry: HeldCreate) -> None:
        table = await self._store.table(RULES)
        await upsert_entity(table, to_entity(entry, entry.tenant_id, _held_key(entry.action_id)))

    async def release(self, tenant_id: str, action_id: str) -> None:
        table = await self._store.table(RULES)
        await delete_entity(table, tenant_id, _held_key(action_id))


def _held_key(action_id: str) -> str:
    # Action ids are Graph's: hashed, so no character of theirs can be one a RowKey refuses.
    return HELD_PREFIX + hashlib.sha256(action_id.encode()).hexdigest()[:40]


def _entity(record: RuleRecord) -> dict[str, Any]:
    entity = to_entity(record.model_copy(update={"last_run": None}), record.tenant_id, record.rule_id)
    entity["Rule"] = record.rule.model_dump_json(by_alias=True)
    if record.last_run is not None:
        entity["LastRun"] = record.last_run.model_dump_json(by_alias=True)
    return entity
