"""What a 400 `validation_error` says: each problem at the field a caller can fix, in words
without pydantic's prefixes (functions/_http.validate and the validators in shared/models.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, field_validator

from functions._http import validate
from shared.errors import BadRequest
from shared.models import CreateTicket

TICKET = {"type": "incident", "priority": 2, "dueDate": "2030-01-31", "recommendationSource": "user"}
PREFIXES = ("Value error", "Assertion failed")


def refused(model: type[BaseModel], data: Any) -> BadRequest:
    with pytest.raises(BadRequest) as error:
        validate(model, data)
    assert not any(prefix in error.value.message for prefix in PREFIXES), error.value.message
    for field in error.value.fields:
        assert not field["message"].startswith(PREFIXES), field
    return error.value


def test_a_ticket_without_name_or_category_names_both_fields() -> None:
    error = refused(CreateTicket, TICKET)
    assert error.fields == [
        {"field": "name", "message": "required unless improvementActionId is given"},
        {"field": "recommendationCategory", "message": "required unless improvementActionId is given"},
    ]
    assert error.message == (
        "The request is not valid: name: required unless improvementActionId is given; "
        "recommendationCategory: required unless improvementActionId is given"
    )


def test_a_ticket_without_a_category_names_that_field_only() -> None:
    error = refused(CreateTicket, {**TICKET, "name": "Turn on MFA"})
    assert error.fields == [
        {"field": "recommendationCategory", "message": "required unless improvementActionId is given"}
    ]


def test_the_check_passes_with_an_improvement_action() -> None:
    assert validate(CreateTicket, {**TICKET, "improvementActionId": "AdminMFAV2"}).name is None


@pytest.mark.parametrize("due", ["2030-1-31", "2030-01-31T00:00:00Z", 1893456000])
def test_a_bad_due_date_is_named_without_a_prefix(due: Any) -> None:
    error = refused(CreateTicket, {**TICKET, "name": "x", "recommendationCategory": "Data", "dueDate": due})
    assert error.fields == [{"field": "dueDate", "message": "must be a date in the form YYYY-MM-DD"}]


class Checked(BaseModel):
    a: int = 0
    b: int = 0

    @field_validator("a")
    @classmethod
    def _small(cls, value: int) -> int:
        if value > 10:
            raise ValueError("must be at most 10")
        return value

    @field_validator("b")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise AssertionError("must be even")  # what an `assert` in a validator raises
        return value


def test_any_validator_message_loses_the_pydantic_prefix() -> None:
    error = refused(Checked, {"a": 11, "b": 3})
    assert error.fields == [
        {"field": "a", "message": "must be at most 10"},
        {"field": "b", "message": "must be even"},
    ]


def test_a_body_that_is_not_an_object_is_still_the_body() -> None:
    error = refused(CreateTicket, [1, 2])
    assert [field["field"] for field in error.fields] == ["(body)"]
