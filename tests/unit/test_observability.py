import logging

import pytest

from shared import observability
from shared.observability import bind_tenant, log_context, redact, register_secret


@pytest.fixture(autouse=True)
def installed() -> None:
    observability.install()


def test_known_secret_values_are_replaced_anywhere() -> None:
    register_secret("s3cr3t-value-123456")
    assert redact("token s3cr3t-value-123456 leaked") == "token *** leaked"


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("refresh_token=abcdefgh12345&x=1", "abcdefgh12345"),
        ('{"access_token": "eyJ0eXAi.payload.sig"}', "eyJ0eXAi.payload.sig"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("GET /api/oauth/callback?code=AUTHCODE123&state=x", "AUTHCODE123"),
        ("client_secret: hunter2hunter2", "hunter2hunter2"),
        ("code_verifier=verifier-value-xyz", "verifier-value-xyz"),
    ],
)
def test_secret_shaped_values_are_redacted(text: str, hidden: str) -> None:
    assert hidden not in redact(text)
    assert "***" in redact(text)


def test_short_values_are_not_registered_as_secrets() -> None:
    register_secret("abc")
    assert redact("abc") == "abc"


def test_records_carry_invocation_and_tenant_and_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("tenant-secret-999999")
    logger = logging.getLogger("test.observability")
    with caplog.at_level(logging.INFO, logger="test.observability"), log_context(invocation_id="inv-1"):
        logger.info("before tenant %s", "tenant-secret-999999")
        bind_tenant("tenant-a")
        logger.info("after tenant")
    first, second = caplog.records
    assert (first.invocation_id, first.tenant_id) == ("inv-1", "-")  # type: ignore[attr-defined]
    assert (second.invocation_id, second.tenant_id) == ("inv-1", "tenant-a")  # type: ignore[attr-defined]
    assert "tenant-secret-999999" not in caplog.text
    assert "before tenant ***" in caplog.text


def test_context_does_not_leak_out_of_the_block(caplog: pytest.LogCaptureFixture) -> None:
    with log_context(invocation_id="inner"):
        bind_tenant("t")
    with caplog.at_level(logging.INFO, logger="test.observability"):
        logging.getLogger("test.observability").info("outside")
    assert caplog.records[0].invocation_id == "-"  # type: ignore[attr-defined]
    assert caplog.records[0].tenant_id == "-"  # type: ignore[attr-defined]


def test_exception_text_is_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("exception-secret-42424242")
    with caplog.at_level(logging.ERROR, logger="test.observability"):
        try:
            raise RuntimeError("boom exception-secret-42424242")
        except RuntimeError:
            logging.getLogger("test.observability").exception("failed")
    assert "exception-secret-42424242" not in caplog.text
    assert "RuntimeError: boom ***" in caplog.text


def test_percent_encoded_secrets_are_redacted_too() -> None:
    register_secret("abc+def/ghi=jkl")
    assert (
        redact("POST /oauth_revoke_token.do?x=abc%2Bdef%2Fghi%3Djkl") == "POST /oauth_revoke_token.do?x=***"
    )
    assert redact("form: abc%2Bdef%2Fghi%3Djkl, raw: abc+def/ghi=jkl") == "form: ***, raw: ***"


def test_a_token_in_a_query_string_is_redacted() -> None:
    assert redact("https://x.service-now.com/oauth_revoke_token.do?token=opaque-value-1") == (
        "https://x.service-now.com/oauth_revoke_token.do?token=***"
    )


def test_httpx_request_lines_are_not_logged_at_info() -> None:
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
