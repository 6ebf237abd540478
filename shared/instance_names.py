"""Which ServiceNow instance an admin means, and its URL.

Admins type `contoso`, `contoso.service-now.com` or `https://contoso.service-now.com/`; all three
mean the instance `contoso` at `SERVICENOW_URL_TEMPLATE`. Anything else is refused before any
request leaves the app, so `instance` cannot be used to make us call an arbitrary host (SSRF).
Only on a developer machine (`LOCAL_DEV=true`) is a plain URL accepted, for the simulator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import BadRequest

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SERVICE_NOW_HOST = re.compile(r"^(?P<name>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.service-now\.com$")
_INVALID = (
    "instance must be an instance name (contoso), its host (contoso.service-now.com) "
    "or its URL (https://contoso.service-now.com/)"
)


@dataclass(frozen=True)
class Instance:
    name: str
    url: str


def resolve_instance(raw: str, *, url_template: str, local_dev: bool) -> Instance:
    text = raw.strip().lower()
    if _NAME.match(text):
        return Instance(text, _url(url_template, text))
    if host := _SERVICE_NOW_HOST.match(text):
        return Instance(host.group("name"), _url(url_template, host.group("name")))
    if "://" in text and (instance := _from_url(text, url_template=url_template, local_dev=local_dev)):
        return instance
    raise BadRequest(_INVALID, fields=[{"field": "instance", "message": _INVALID}])


def _from_url(text: str, *, url_template: str, local_dev: bool) -> Instance | None:
    try:
        # Both raise ValueError on a malformed authority: an unclosed `[`, a port that is not a
        # number from 0 to 65535.
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    bare = not (parts.path.strip("/") or parts.query or parts.fragment or parts.username or parts.password)
    host = _SERVICE_NOW_HOST.match(parts.hostname or "")
    if parts.scheme == "https" and bare and host and port is None:
        return Instance(host.group("name"), _url(url_template, host.group("name")))
    if local_dev and parts.scheme in ("http", "https") and parts.hostname and bare:
        url = f"{parts.scheme}://{parts.netloc}"
        return Instance(url, url)
    return None


def _url(template: str, name: str) -> str:
    return template.format(instance=name).rstrip("/")
