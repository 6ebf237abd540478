"""Logging context and redaction, on top of the standard `logging` module.

The Functions host and Application Insights collect standard logging records, so we add to them
rather than replace them: every record carries `invocation_id` and, once known, `tenant_id`; it is
scrubbed of secrets before any handler sees it; and control characters in its message are escaped,
so that text a caller sent cannot start a forged line.

Redaction is the last line of defence (the first: secrets travel as `SecretStr`, never logged):
- patterns, the same for every record: bearer tokens, `*_token=`/`client_secret=` pairs, `code=` and
  `token=` in query strings, `Authorization:` headers, JWTs and ServiceNow's opaque tokens;
- exact values known to be secret, each in a scope. A tenant's values (its client secret and what
  its ServiceNow instance returns, both chosen by the tenant) are scrubbed only from records logged
  in that tenant's context, so no tenant can make text vanish from another tenant's logs. Values
  seen before the tenant is known (the OAuth callback) belong to that invocation only. Values the
  operator supplies (Graph client secret, app keys) are scrubbed everywhere.
A record consults at most three small scopes, so its cost does not grow with the number of tenants,
and registering a value touches only its own scope.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any
from urllib.parse import quote, quote_plus

LOG_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [invocation=%(invocation_id)s tenant=%(tenant_id)s] %(message)s"
)
REDACTED = "***"

_context: ContextVar[dict[str, str]] = ContextVar("log_context", default={})  # noqa: B039 (never mutated)

# A key whose value is a credential: any name ending so (access_token, clientSecret, X-MFA_TOKEN).
_SECRET_KEY = r"token|secret|passw(?:or)?d|code_verifier|assertion|(?:api|account|access|functions?)[-_]?key"
# A quoted value whatever it holds (also JSON inside a JSON string); an unquoted one after `=`; after
# `:` only a credential-looking word (see `_keep_key_and_quotes`), so that a validation message
# such as "clientSecret: Field required" reads as it was.
_KEYED = re.compile(
    rf"""(?=[tspcaf])(?P<key>(?:{_SECRET_KEY})\\?["']?[ \t]*(?P<sep>[:=])[ \t]*)"""
    r"""(?P<value>\\"[^"\r\n]*?\\"|"(?:[^"\\\r\n]|\\.)*"|'(?:[^'\\\r\n]|\\.)*'"""
    r"""|[^\s"'&,;)}\]<>\\][^\s"'&,;)}\]<>]*)""",
    re.IGNORECASE,
)
# Query parameters that carry a credential: the OAuth callback's code, the revoke endpoint's token.
# Also a query string logged on its own (`code=...&state=...`), without its `?`.
_QUERY = re.compile(r"(?P<key>(?:^|(?<=[?&;\s]))(?:code|token|sig)=)(?P<value>[^&#\s\"'<>]+)")
_HEADER = re.compile(
    r"(?=[ac])(?P<key>(?:authorization|cookie)[\"']?[ \t]*[:=][ \t]*[\"']?)(?P<value>[^\"'\r\n]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?=b)(?P<key>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# ServiceNow access and refresh tokens are opaque URL-safe strings of about 86 characters.
_OPAQUE_LENGTH = 64
_OPAQUE = re.compile(rf"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{{{_OPAQUE_LENGTH},}}(?![A-Za-z0-9_-])")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {
    **{chr(c): f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]},
    **{"\n": "\\n", "\r": "\\r", "\t": "\\t", "\u2028": "\\u2028", "\u2029": "\\u2029"},
}

_MIN_SECRET_LENGTH = 8
_VALUES_PER_SCOPE = 64  # a tenant's client secret, its live tokens and a day of rotated ones
_APP_VALUES = 256
_TENANT_SCOPES = 50_000
_INVOCATION_SCOPES = 10_000


class _ValueSet:
    """A few secret values of one scope and their percent-encoded forms (as in a logged URL).
    Readers use `forms` without a lock: it is replaced whole, never changed in place."""

    __slots__ = ("_limit", "_values", "forms")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._values: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self.forms: tuple[str, ...] = ()

    def add(self, value: str) -> None:
        if value in self._values:
            self._values.move_to_end(value)  # still in use: kept longest
            return
        self._values[value] = (value, quote(value, safe=""), quote_plus(value, safe=""))
        while len(self._values) > self._limit:
            self._values.popitem(last=False)
        forms = {form for value_forms in self._values.values() for form in value_forms}
        self.forms = tuple(sorted(forms, key=len, reverse=True))  # longest first: no fragment survives

    def scrub(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text


class _Scopes:
    """Value sets by key, the least recently registered dropped beyond `limit`."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._sets: OrderedDict[str, _ValueSet] = OrderedDict()

    def open(self, key: str) -> _ValueSet:
        """The set of `key`, made if new; kept longest as it is the most recently used."""
        values = self._sets.get(key)
        if values is None:
            values = self._sets[key] = _ValueSet(_VALUES_PER_SCOPE)
            while len(self._sets) > self._limit:
                self._sets.popitem(last=False)
        else:
            self._sets.move_to_end(key)
        return values

    def get(self, key: str | None) -> _ValueSet | None:
        return self._sets.get(key) if key else None


class _Redactor:
    """Known secret values by scope (see the module docstring), and the patterns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app = _ValueSet(_APP_VALUES)
        self._unscoped = _ValueSet(_VALUES_PER_SCOPE)  # outside any invocation: start-up, tests
        self._tenants = _Scopes(_TENANT_SCOPES)
        self._invocations = _Scopes(_INVOCATION_SCOPES)

    def register(
        self, values: list[str], tenant_id: str | None, invocation_id: str | None, app_wide: bool
    ) -> None:
        with self._lock:
            if app_wide:
                target = self._app
            elif tenant_id:
                target = self._tenants.open(tenant_id)
            else:
                target = self._invocations.open(invocation_id) if invocation_id else self._unscoped
            for value in values:
                target.add(value)

    def scrub(self, text: str, tenant_id: str | None, invocation_id: str | None) -> str:
        """`text` without the values its context may see and without secret-shaped substrings."""
        own = self._tenants.get(tenant_id) if tenant_id else self._unscoped
        for values in (own, self._invocations.get(invocation_id), self._app):
            if values is not None:
                text = values.scrub(text)
        return scrub_patterns(text)


def scrub_patterns(text: str) -> str:
    """`text` without secret-shaped substrings. Each pattern runs only when a word it needs is
    there: most log lines have none, and then cost a lowercase copy and a few substring tests."""
    lowered = text.lower()
    for needles, pattern, replace in _GUARDED_PATTERNS:
        if any(needle in lowered for needle in needles):
            text = pattern.sub(replace, text)
    return _OPAQUE.sub(_opaque_token, text) if len(text) >= _OPAQUE_LENGTH else text


def _keep_key(match: re.Match[str]) -> str:
    return match.group("key") + REDACTED


def _keep_key_and_quotes(match: re.Match[str]) -> str:
    value = match.group("value")
    quote_mark = '\\"' if value.startswith('\\"') else value[0] if value[0] in "\"'" else ""
    if not quote_mark and match.group("sep") == ":" and not _credential_like(value):
        return match.group()
    return match.group("key") + quote_mark + REDACTED + quote_mark


def _credential_like(word: str) -> bool:
    return len(word) >= _MIN_SECRET_LENGTH and any(c.isdigit() for c in word)


_GUARDED_PATTERNS: tuple[
    tuple[tuple[str, ...], re.Pattern[str], str | Callable[[re.Match[str]], str]], ...
] = (
    (("token", "secret", "passw", "verifier", "assertion", "key"), _KEYED, _keep_key_and_quotes),
    (("code=", "token=", "sig="), _QUERY, _keep_key),
    (("authorization", "cookie"), _HEADER, _keep_key),
    (("bearer",), _BEARER, _keep_key),
    (("eyj",), _JWT, REDACTED),
)


def _opaque_token(match: re.Match[str]) -> str:
    # Letters, digits, either case: random, not a long identifier or a hex digest.
    value = match.group()
    random_looking = any(c.isupper() for c in value) and any(c.islower() for c in value)
    return REDACTED if random_looking and any(c.isdigit() for c in value) else value


def escape_controls(text: str) -> str:
    """CR, LF and the other C0/C1 controls (and Unicode line breaks) as visible escapes."""
    return _CONTROL.sub(lambda match: _ESCAPES[match.group()], text) if _CONTROL.search(text) else text


_redactor = _Redactor()


def register_secret(*values: str | None, tenant_id: str | None = None, app_wide: bool = False) -> None:
    """Tell the redactor about secret values so that they never reach a log line.

    The scope: every record when `app_wide` (only for values the operator supplies); else the
    records of `tenant_id`; else of the current context's tenant, or, before the tenant is known,
    of the current invocation.
    """
    kept = [value for value in values if value and len(value) >= _MIN_SECRET_LENGTH]
    if not kept:
        return
    context = _context.get()
    _redactor.register(kept, tenant_id or context.get("tenant_id"), context.get("invocation_id"), app_wide)


def redact(text: str) -> str:
    """`text` as the current context may log it."""
    context = _context.get()
    return _redactor.scrub(text, context.get("tenant_id"), context.get("invocation_id"))


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach fields (invocation_id, tenant_id) to every record logged inside the block."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_invocation_id() -> str | None:
    """The invocation (the request id an HTTP answer carries) the current code runs for, if any."""
    return _context.get().get("invocation_id")


def current_tenant_id() -> str | None:
    """The tenant bound to the current context (`bind_tenant`), if any; spans carry it too."""
    return _context.get().get("tenant_id")


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
    record.msg = escape_controls(redact(message))
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(_format_exception(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def _format_exception(exc_info: _ExcInfo) -> str:
    """As `logging.Formatter.formatException`, with the exceptions' own messages escaped: the
    traceback keeps its line breaks, a message cannot add lines of its own."""
    exc_type, value, tb = exc_info
    if exc_type is None or value is None:
        return logging.Formatter().formatException(exc_info)
    described = traceback.TracebackException(exc_type, value, tb, compact=True)
    pending: list[Any] = [described]  # `_str` (the message) is not typed: it is not public
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) not in seen:
            seen.add(id(current))
            if isinstance(getattr(current, "_str", None), str):
                current._str = escape_controls(current._str)
            if getattr(current, "__notes__", None):
                current.__notes__ = [escape_controls(str(note)) for note in current.__notes__]
            pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
            pending.extend(getattr(current, "exceptions", None) or [])
    return "".join(described.format()).removesuffix("\n")


def install() -> None:
    """Install the context and redaction on every record of the process. Idempotent and cheap."""
    global _installed
    if not _installed:
        logging.setLogRecordFactory(_record_factory)
        # httpx logs every request URL at INFO; some carry credentials (the revoke endpoint's ?token=).
        logging.getLogger("httpx").setLevel(logging.WARNING)
        _installed = True
