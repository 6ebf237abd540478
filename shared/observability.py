"""Logging context and redaction, on top of the standard `logging` module.

The Functions host and Application Insights collect standard logging records, so we add to them
rather than replace them: every record carries `invocation_id` and, once known, `tenant_id`; and
every record is scrubbed of secret values before any handler sees it. Redaction is the second line
of defence: the first is never logging a secret in the first place.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, quote_plus

LOG_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [invocation=%(invocation_id)s tenant=%(tenant_id)s] %(message)s"
)
REDACTED = "***"

_context: ContextVar[dict[str, str]] = ContextVar("log_context", default={})  # noqa: B039 (never mutated)

_SECRET_PATTERNS = (
    # key=value and "key": "value" pairs whose key names a secret.
    re.compile(
        r"""(?P<key>(?:access_token|refresh_token|client_secret|clientSecret|code_verifier|id_token|"""
        r"""password|secret)["']?\s*[:=]\s*["']?)(?P<value>[^"'&\s,;}]+)""",
        re.IGNORECASE,
    ),
    # Query strings that carry a credential: the OAuth callback's code, the revoke endpoint's token.
    re.compile(r"(?P<key>[?&](?:code|token)=)(?P<value>[^&\s\"']+)"),
    re.compile(r"(?P<key>\bBearer\s+)(?P<value>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE),
)
_MIN_SECRET_LENGTH = 8
_MAX_KNOWN_SECRETS = 10_000


class _KnownSecrets:
    """Values we know are secret (tokens, client secrets): replaced wherever they appear, also
    percent-encoded (as they are in a logged URL). Most recently seen are kept longest."""

    def __init__(self) -> None:
        self._values: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str | None) -> None:
        if not value or len(value) < _MIN_SECRET_LENGTH:
            return
        for form in {value, quote(value, safe=""), quote_plus(value, safe="")}:
            if form not in self._values:
                self._pattern = None  # a new value: rebuild the matcher on next use
            self._values[form] = None
            self._values.move_to_end(form)
        while len(self._values) > _MAX_KNOWN_SECRETS:
            self._values.popitem(last=False)
            self._pattern = None

    def scrub(self, text: str) -> str:
        if not self._values:
            return text
        if self._pattern is None:
            # One alternation, longest first, instead of a substring scan per known value.
            alternatives = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(value) for value in alternatives))
        return self._pattern.sub(REDACTED, text)


_known = _KnownSecrets()


def register_secret(*values: str | None) -> None:
    """Tell the redactor about secret values so that they never reach a log line."""
    for value in values:
        _known.add(value)


def redact(text: str) -> str:
    text = _known.scrub(text)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group("key") + REDACTED, text)
    return text


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach fields (invocation_id, tenant_id) to every record logged inside the block."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind_tenant(tenant_id: str) -> None:
    """Add the tenant to the current context once it is known (after the principal is parsed)."""
    _context.set({**_context.get(), "tenant_id": tenant_id})


_base_factory = logging.getLogRecordFactory()
_installed = False


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    context = _context.get()
    record.invocation_id = context.get("invocation_id", "-")
    record.tenant_id = context.get("tenant_id", "-")
    _scrub_record(record)
    return record


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        message = str(record.msg)
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install() -> None:
    """Install the context and redaction on every record of the process. Idempotent and cheap."""
    global _installed
    if not _installed:
        logging.setLogRecordFactory(_record_factory)
        # httpx logs every request URL at INFO; some carry credentials (the revoke endpoint's ?token=).
        logging.getLogger("httpx").setLevel(logging.WARNING)
        _installed = True
