import pytest

from shared import errors


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.BadRequest(fields=[{"field": "name", "message": "required"}]), 400, "validation_error"),
        (errors.PayloadTooLarge(), 413, "payload_too_large"),
        (errors.UnsupportedMediaType(), 415, "unsupported_media_type"),
        (errors.Unauthenticated(), 401, "unauthenticated"),
        (errors.Forbidden(), 403, "forbidden"),
        (errors.ForbiddenOrigin(), 403, "forbidden_origin"),
        (errors.NotFound(), 404, "not_found"),
        (errors.ConnectionNotReady(), 409, "connection_not_ready"),
        (errors.ReauthorizationRequired(), 409, "reauthorization_required"),
        (errors.GrantRevoked(), 409, "reauthorization_required"),
        (errors.IdempotencyKeyReused(), 422, "idempotency_key_reused"),
        (errors.UpstreamRejected("Invalid table"), 502, "upstream_rejected"),
        (errors.UpstreamUnavailable(retry_after=12), 503, "upstream_unavailable"),
        (errors.AppError(), 500, "internal_error"),
    ],
)
def test_each_error_maps_to_one_status_and_code(error: errors.AppError, status: int, code: str) -> None:
    assert errors.status_for(error) == status
    assert errors.error_body(error)["error"]["code"] == code
    assert errors.error_body(error)["error"]["message"]


def test_validation_errors_list_the_failing_fields() -> None:
    body = errors.error_body(
        errors.BadRequest("bad", fields=[{"field": "dueDate", "message": "in the past"}])
    )
    assert body == {
        "error": {
            "code": "validation_error",
            "message": "bad",
            "fields": [{"field": "dueDate", "message": "in the past"}],
        }
    }


def test_unavailable_carries_retry_after() -> None:
    assert errors.error_headers(errors.UpstreamUnavailable(retry_after=7)) == {"Retry-After": "7"}
    assert errors.error_headers(errors.NotFound()) == {}


def test_every_error_class_in_the_module_has_a_status() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.AppError)]
    for cls in classes:
        assert any(base in errors.HTTP_STATUS for base in cls.__mro__), cls
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} is missing from the tree in the docstring"
