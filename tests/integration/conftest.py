"""Fixtures of the integration tests: tables of one test alone on the session's Azurite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from azure.data.tables.aio import TableServiceClient

from localdev.azurite import AzuriteEndpoints
from shared.stores.tables import TableStore


@pytest.fixture
async def store(azurite: AzuriteEndpoints) -> AsyncIterator[TableStore]:
    """A `TableStore` whose tables carry a prefix of this test's own."""
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table_store = TableStore(service, table_prefix=f"t{uuid.uuid4().hex[:8]}")
    yield table_store
    await table_store.aclose()
