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


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET https://x.service-now.com/oauth_revoke_token.do?token=T0k3nValue&x=1", "T0k3nValue"),
        ("GET /cb?state=s&code=AbC123xyz", "AbC123xyz"),
        ("https://v.blob.core.windows.net/c?sv=2024&sig=Zm9vYmFy%2Bc2ln", "Zm9vYmFy%2Bc2ln"),
        ("headers {'Authorization': 'Bearer abc.def', 'Accept': 'json'}", "abc.def"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==\nHost: x", "dXNlcjpwYXNzd29yZA=="),
        ("Proxy-Authorization: Negotiate YIIabc123", "YIIabc123"),
        ("sent Bearer zzz.yyy.xxx to the instance", "zzz.yyy.xxx"),
        ('{"refresh_token":"w599 with a space","token_type":"Bearer"}', "w599 with a space"),
        ('{"clientSecret": "a \\"quoted\\" secret"}', 'a \\"quoted\\" secret'),
        ('body "{\\"access_token\\": \\"F0jhNested\\"}"', "F0jhNested"),
        ("{'id_token': 'python-repr-value'}", "python-repr-value"),
        ("grant_type=refresh_token&refresh_token=r3fr3sh&client_secret=s3cr3t", "r3fr3sh"),
        ("grant_type=refresh_token&refresh_token=r3fr3sh&client_secret=s3cr3t", "s3cr3t"),
        ("X-Functions-Key: functionkey0123", "functionkey0123"),
        ("DefaultEndpointsProtocol=https;AccountKey=a2V5/a2V5+==;BlobEndpoint=x", "a2V5/a2V5+=="),
        ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl here", "eyJhbGciOiJSUzI1NiJ9"),
        ("opaque " + "F0jhK2x9_-Qw" * 7 + " end", "F0jhK2x9_-Qw" * 7),
    ],
)
def test_patterns_scrub_tokens_in_urls_headers_and_json(text: str, hidden: str) -> None:
    with log_context(tenant_id="patterns-tenant"):
        scrubbed = redact(text)
    assert hidden not in scrubbed
    assert "***" in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "tickets_list validation_error: The request is not valid: top: Input should be a valid integer",
        "provisioning_put validation_error: The request is not valid: clientSecret: Field required",
        "The request is not valid: password: String should have at least 1 character",
        '{"token_type": "Bearer", "expires_in": 1800, "scope": "useraccount"}',
        "Stored secret snow-0f0e-client-secret in Key Vault",
        "ServiceNow answered the token revoke with HTTP 401",
        "record c537bae64f411200adf9f8e18110c76e INC0010001 updated",
        "digest " + "0123456789abcdef" * 4,
        "X-MFA_TOKEN: invalid",
    ],
)
def test_patterns_leave_ordinary_log_text_alone(text: str) -> None:
    assert redact(text) == text


def test_a_known_value_is_also_scrubbed_url_encoded_in_its_own_context() -> None:
    with log_context(invocation_id="inv-encoded", tenant_id="tenant-encoded"):
        register_secret("p@ss word/with+chars")
        assert redact("a=p%40ss%20word%2Fwith%2Bchars b=p%40ss+word%2Fwith%2Bchars") == "a=*** b=***"


def test_line_breaks_and_control_characters_in_a_message_are_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forged_name = "top\r\n2030-01-01 INFO functions._http forged: admin signed in\x1b[2J\x00\t\x7f\x85\u2028"
    with caplog.at_level(logging.INFO, logger="test.observability"):
        logging.getLogger("test.observability").info("tickets_list validation_error: %s: bad", forged_name)
    [record] = caplog.records
    assert record.getMessage() == (
        "tickets_list validation_error: top\\r\\n2030-01-01 INFO functions._http forged: admin signed in"
        "\\x1b[2J\\x00\\t\\x7f\\x85\\u2028: bad"
    )
    assert len(caplog.text.splitlines()) == 1


def test_a_traceback_keeps_its_lines_but_the_exception_message_cannot_add_any(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.observability")
    with caplog.at_level(logging.ERROR, logger="test.observability"):
        try:
            try:
                raise KeyError("inner\nERROR forged inner")
            except KeyError as inner:
                raise ValueError("outer\r\nERROR forged outer") from inner
        except ValueError:
            logger.exception("failed %s", "for\nreal")
    [record] = caplog.records
    assert record.getMessage() == "failed for\\nreal"
    assert record.exc_text is not None
    lines = record.exc_text.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "KeyError: 'inner\\nERROR forged inner'" in lines
    assert "ValueError: outer\\r\\nERROR forged outer" in lines
    assert not any(line.startswith("ERROR forged") for line in caplog.text.splitlines())


def test_a_traceback_is_scrubbed_of_the_tenants_values_and_of_secret_shapes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.observability")
    with (
        caplog.at_level(logging.ERROR, logger="test.observability"),
        log_context(invocation_id="inv-tb", tenant_id="tenant-tb"),
    ):
        register_secret("tenant-tb-client-secret-1")
        try:
            raise RuntimeError("sent tenant-tb-client-secret-1 to /oauth_token.do?token=abcdef123456")
        except RuntimeError:
            logger.exception("token call failed")
    assert "tenant-tb-client-secret-1" not in caplog.text
    assert "abcdef123456" not in caplog.text
    assert "RuntimeError: sent *** to /oauth_token.do?token=***" in caplog.text


def test_app_wide_values_are_scrubbed_in_every_context() -> None:
    register_secret("operator-graph-secret-77", app_wide=True)
    with log_context(invocation_id="inv-app", tenant_id="any-tenant"):
        assert redact("secret operator-graph-secret-77") == "secret ***"
    assert redact("secret operator-graph-secret-77") == "secret ***"


def test_a_query_string_logged_without_its_question_mark_is_scrubbed() -> None:
    assert redact("code=abc123XYZ&state=s1") == "code=***&state=s1"
    assert redact("callback params code=abc123XYZ") == "callback params code=***"
    assert redact("errorcode=kept") == "errorcode=kept"
