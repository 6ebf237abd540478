"""The shapes of `functions/_contract.py`'s entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from shared.errors import AppError

ModelRef = type[BaseModel] | TypeAdapter[Any] | str
Errors = tuple[type[AppError], ...]


@dataclass(frozen=True)
class Answer:
    """One success answer: status, body (a model, or a plain schema for what is not JSON), headers."""

    status: int
    description: str
    model: ModelRef | None = None
    example: Any = None
    headers: tuple[str, ...] = ()  # names in `_openapi_components.COMPONENT_HEADERS`
    media_type: str = "application/json"
    schema: dict[str, Any] | None = None
    # "validation" for a model whose serializer hides its fields from pydantic's serialization schema
    mode: Literal["validation", "serialization"] = "serialization"


@dataclass(frozen=True)
class PathParameter:
    description: str
    example: str
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    summary: str
    description: str
    tag: str
    answers: tuple[Answer, ...]
    errors: Errors
    body: ModelRef | None = None
    body_examples: dict[str, Any] = field(default_factory=dict)
    query: ModelRef | None = None
    query_example: dict[str, Any] = field(default_factory=dict)
    # False: any value is accepted (one the query model refuses is handled, not answered 400), so
    # the parameters are documented as plain strings.
    query_enforced: bool = True
    path: dict[str, PathParameter] = field(default_factory=dict)
    request_headers: tuple[str, ...] = ()  # names in `_openapi_components.COMPONENT_PARAMETERS`
