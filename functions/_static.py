"""Files the app serves itself (the API's documentation page, the portal): read once, answered
with a strict Content-Security-Policy and headers that keep them from being sniffed, framed or
cached stale.

A route value never becomes a path: each page names the files it serves in a table, and a name
not in it is 404.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import azure.functions as func

from shared.errors import NotFound

JS = "text/javascript"
CSS = "text/css"
HTML = "text/html"


def security_headers(content_security_policy: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


def file_response(path: Path, media_type: str, headers: dict[str, str]) -> func.HttpResponse:
    """The file's bytes (every file is UTF-8) with `headers`."""
    return func.HttpResponse(
        _read(path), status_code=200, headers=dict(headers), mimetype=media_type, charset="utf-8"
    )


def asset_response(
    assets: dict[str, tuple[str, str]], name: str, root: Path, headers: dict[str, str], what: str
) -> func.HttpResponse:
    """The file `assets` lists under `name` (its path under `root`, its media type).

    Raises:
        NotFound: `name` is not listed.
    """
    asset = assets.get(name)
    if asset is None:
        raise NotFound(f"No such file of {what}.")
    return file_response(root / asset[0], asset[1], headers)
