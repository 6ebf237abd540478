"""Reading what a caller sent: JSON, origins, and text that is echoed back in an error.

Everything here turns hostile input into a plain `ValueError` (or a refusal value), never into a
crash, so each caller can answer with its own 4xx:

- `decode_json`: `json.loads` recurses once per nesting level (`[` x 1,000 raises RecursionError),
  and a lone surrogate escape (`"\\ud800"`) decodes into a string no UTF-8 writer can store later;
  request bodies, the principal header and continuation tokens all go through this one decoder.
- `origin_of`: the `scheme://host[:port]` of a URL or an `Origin` header, normalised for comparing.
- `escape_text`: control, line-breaking and bidirectional characters as visible escapes, so text a
  caller chose (a body key, a query parameter name) cannot forge lines or reorder what is shown.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

MAX_DEPTH = 32  # every body, header and token of the API nests three levels at most

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def decode_json(raw: bytes | str, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of `raw`.

    Raises:
        ValueError: larger than `max_bytes`, nested deeper than `max_depth`, not JSON (or not in
            a Unicode encoding JSON allows), a NaN or Infinity, or a string with a lone surrogate.
    """
    if len(raw) > max_bytes:
        raise ValueError(f"larger than {max_bytes} bytes")
    text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "surrogatepass")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:  # the C scanner stops at the interpreter's recursion limit
        raise ValueError("nested too deeply") from exc
    _check_nesting_and_strings(value, max_depth)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_nesting_and_strings(value: Any, max_depth: int) -> None:
    # Iterative, so checking a deep value cannot itself run out of stack.
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise ValueError("a string is not valid Unicode")
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL or origin, lower case and without a default port;
    None when it has none (another scheme, no host, a bad port, `null`, userinfo)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if not re.fullmatch(r"[a-z0-9.:_-]+", host) or host.startswith(".") or ".." in host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def escape_text(text: str, *, limit: int = 200) -> str:
    """`text` with unsafe characters as `\\uXXXX` escapes, cut to `limit` characters."""
    escaped = _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"
