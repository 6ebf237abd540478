"""What a `sync-requests` message may carry besides the request itself (`models.SyncRequest`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ListedRow(BaseModel):
    """The tenant's connection row as the timer listed it: its properties as stored (PascalCase,
    JSON values) and its ETag. The worker takes its lease with one write conditional on that ETag
    instead of reading the row first, and reads it only when that write loses. The row holds no
    secret (those are in Key Vault); messages from other senders carry none."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    etag: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any]
