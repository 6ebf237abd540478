"""The API's own description: `GET /api/openapi.json` (the OpenAPI 3.1 document) and `GET /api/docs`
(Swagger UI on it), both anonymous.

The document is the repository's `openapi.json`, generated from the registered functions and
`functions/_contract.py` by `make openapi` (a unit test fails when it is stale). The page loads only
files this app serves from `functions/static/docs/` (Swagger UI's, copied from the pinned npm
package by `make openapi`, and ours), so no third-party site is contacted, and its
Content-Security-Policy allows nothing else. `docs/{file}` serves only the files named in `ASSETS`:
a route value never becomes a path.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import azure.functions as func

from functions._http import anonymous
from shared.errors import NotFound

bp = func.Blueprint()

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi.json"
STATIC = Path(__file__).resolve().parent / "static" / "docs"
_JS = "text/javascript"
_CSS = "text/css"
# name in the URL -> (file under STATIC, media type; every file is UTF-8)
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("vendor/swagger-ui-bundle.js", _JS),
    "swagger-ui.css": ("vendor/swagger-ui.css", _CSS),
    "docs.js": ("docs.js", _JS),
    "docs.css": ("docs.css", _CSS),
}
# Nothing inline: Swagger UI sets styles through the DOM, which a policy does not restrict; its
# icons are data: URIs.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


def _file(path: Path, media_type: str) -> func.HttpResponse:
    return func.HttpResponse(
        _read(path), status_code=200, headers=HEADERS, mimetype=media_type, charset="utf-8"
    )


@bp.function_name("openapi_document")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return _file(DOCUMENT, "application/json")


@bp.function_name("docs_page")
@bp.route(route="docs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def docs_page(req: func.HttpRequest) -> func.HttpResponse:
    return _file(STATIC / "index.html", "text/html")


@bp.function_name("docs_asset")
@bp.route(route="docs/{file}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def docs_asset(req: func.HttpRequest) -> func.HttpResponse:
    asset = ASSETS.get(req.route_params.get("file", ""))
    if asset is None:
        raise NotFound("No such file of the documentation page.")
    return _file(STATIC / asset[0], asset[1])
