"""Table Storage: the connection, OAuth state, ticket and idempotency records.

One `TableStore` owns the async `TableServiceClient` (connection string locally, managed identity
in Azure) and hands out a client per table, creating each table once on first use. Repositories
turn rows into pydantic records and back; they hold no business rules. Writes that race carry the
row's ETag (`IfNotModified`), and storage faults become `UpstreamUnavailable` so that a caller sees
a 503 and no half-written state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from pydantic import BaseModel

from shared.errors import PreconditionFailed, UpstreamUnavailable

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient, TableServiceClient

RecordT = TypeVar("RecordT", bound=BaseModel)

# Explicit, for every Storage client we build: azure-core's defaults wait up to 300 s to connect.
_DELETE_CONCURRENCY = 16  # deletes in flight at once during a cleanup
STORAGE_TIMEOUTS: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 20}


class TableStore:
    """The tables of our data account, created once each on first use."""

    def __init__(self, service: TableServiceClient, *, table_prefix: str = "") -> None:
        self._service = service
        self._prefix = table_prefix
        self._clients: dict[str, TableClient] = {}
        self._lock = asyncio.Lock()

    async def table(self, name: str) -> TableClient:
        client = self._clients.get(name)
        if client is not None:
            return client
        async with self._lock:
            if name not in self._clients:
                full_name = f"{self._prefix}{name}"
                with storage_errors(f"create table {full_name}"):
                    await self._service.create_table_if_not_exists(full_name)
                self._clients[name] = self._service.get_table_client(full_name)
        return self._clients[name]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
        await self._service.close()


@contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Map Storage SDK faults to UpstreamUnavailable; not-found and precondition errors pass through."""
    try:
        yield
    except (ResourceNotFoundError, ResourceModifiedError, ResourceExistsError):
        raise
    except HttpResponseError as exc:
        if exc.status_code == 412:
            raise ResourceModifiedError(message="precondition failed", response=exc.response) from exc
        raise UpstreamUnavailable(f"Table Storage is unavailable ({action}).", retry_after=5) from exc
    except AzureError as exc:
        raise UpstreamUnavailable(f"Table Storage is unavailable ({action}).", retry_after=5) from exc


def to_entity(record: BaseModel, partition_key: str, row_key: str) -> dict[str, Any]:
    """A record as a table entity: scalars as they are, dicts and lists as JSON, None left out."""
    entity: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key}
    for name, value in record.model_dump(by_alias=True, exclude={"etag"}).items():
        if value is None:
            continue
        entity[name] = json.dumps(value) if isinstance(value, dict | list | tuple) else value
    return entity


def from_entity(model: type[RecordT], entity: Mapping[str, Any], json_fields: frozenset[str]) -> RecordT:
    data: dict[str, Any] = {}
    for key, value in entity.items():
        if key in ("PartitionKey", "RowKey", "Timestamp") or key.startswith("odata"):
            continue
        data[key] = json.loads(value) if key in json_fields and isinstance(value, str) else value
    data["etag"] = entity.metadata.get("etag") if hasattr(entity, "metadata") else None
    return model.model_validate(data)


async def get_entity(table: TableClient, partition_key: str, row_key: str) -> Mapping[str, Any] | None:
    try:
        with storage_errors(f"read {table.table_name}"):
            return await table.get_entity(partition_key, row_key)
    except ResourceNotFoundError:
        return None


async def create_entity(table: TableClient, entity: dict[str, Any]) -> str:
    """Insert; PreconditionFailed if the row exists. Returns the new ETag."""
    try:
        with storage_errors(f"write {table.table_name}"):
            metadata = await table.create_entity(entity)
    except ResourceExistsError as exc:
        raise PreconditionFailed() from exc
    return str(metadata.get("etag", ""))


async def upsert_entity(table: TableClient, entity: dict[str, Any]) -> str:
    from azure.data.tables import UpdateMode

    with storage_errors(f"write {table.table_name}"):
        metadata = await table.upsert_entity(entity, mode=UpdateMode.REPLACE)
    return str(metadata.get("etag", ""))


async def replace_entity(table: TableClient, entity: dict[str, Any], etag: str) -> str:
    """Replace only if nobody changed the row since `etag`; PreconditionFailed otherwise."""
    from azure.data.tables import UpdateMode

    try:
        with storage_errors(f"write {table.table_name}"):
            metadata = await table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
    except (ResourceModifiedError, ResourceNotFoundError) as exc:
        raise PreconditionFailed() from exc
    return str(metadata.get("etag", ""))


async def delete_entity(
    table: TableClient, partition_key: str, row_key: str, *, etag: str | None = None
) -> None:
    """Delete (a missing row is not an error). With `etag`: only if unchanged, else PreconditionFailed."""
    if etag is None:
        with storage_errors(f"delete in {table.table_name}"):
            await table.delete_entity(partition_key, row_key)
        return
    try:
        with storage_errors(f"delete in {table.table_name}"):
            await table.delete_entity(
                partition_key, row_key, etag=etag, match_condition=MatchConditions.IfNotModified
            )
    except (ResourceModifiedError, ResourceNotFoundError) as exc:
        raise PreconditionFailed() from exc


async def delete_matching(
    table: TableClient, query_filter: str, parameters: dict[str, Any], *, limit: int
) -> int:
    """Delete at most `limit` rows matching the filter (a bounded cleanup); returns how many.

    Rows are listed first (keys only), then deleted a few at a time without their ETag: a row
    already gone is not an error, and a cleanup must not hold up on one that changed.
    """
    if limit <= 0:
        return 0
    keys: list[tuple[str, str]] = []
    with storage_errors(f"list {table.table_name}"):
        async for entity in table.query_entities(
            query_filter,
            parameters=parameters,
            select=["PartitionKey", "RowKey"],
            results_per_page=min(limit, 1000),
        ):
            keys.append((str(entity["PartitionKey"]), str(entity["RowKey"])))
            if len(keys) >= limit:
                break
    for start in range(0, len(keys), _DELETE_CONCURRENCY):
        chunk = keys[start : start + _DELETE_CONCURRENCY]
        await asyncio.gather(*(delete_entity(table, pk, rk) for pk, rk in chunk))
    return len(keys)


async def query(
    table: TableClient, query_filter: str, parameters: dict[str, Any], *, page_size: int = 1000
) -> AsyncIterator[Mapping[str, Any]]:
    with storage_errors(f"list {table.table_name}"):
        async for entity in table.query_entities(
            query_filter, parameters=parameters, results_per_page=page_size
        ):
            yield entity


async def merge_existing(table: TableClient, entities: list[dict[str, Any]]) -> int | None:
    """Merge `entities` (one partition, at most 100) in one transaction, each with `If-Match: *`:
    a row that exists is updated, none is made. None once all are written; when one does not
    exist the transaction wrote nothing, and the index of that entity is returned (Table Storage
    names the first failing operation). Any other failure raises (`UpstreamUnavailable`)."""
    from azure.data.tables import TableErrorCode, TableTransactionError, UpdateMode

    operations: list[Any] = [("update", entity, {"mode": UpdateMode.MERGE}) for entity in entities]
    with storage_errors(f"update {table.table_name}"):
        try:
            await table.submit_transaction(operations)
        except TableTransactionError as error:
            if getattr(error, "error_code", None) != TableErrorCode.RESOURCE_NOT_FOUND:
                raise
            return error.index if 0 <= error.index < len(entities) else 0
    return None
