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

from pathlib import Path

import azure.functions as func

from functions._http import anonymous
from functions._static import CSS, HTML, JS, asset_response, file_response, security_headers

bp = func.Blueprint()

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi.json"
STATIC = Path(__file__).resolve().parent / "static" / "docs"
# name in the URL -> (file under STATIC, media type; every file is UTF-8)
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("vendor/swagger-ui-bundle.js", JS),
    "swagger-ui.css": ("vendor/swagger-ui.css", CSS),
    "docs.js": ("docs.js", JS),
    "docs.css": ("docs.css", CSS),
}
# Nothing inline: Swagger UI sets styles through the DOM, which a policy does not restrict; its
# icons are data: URIs.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = security_headers(CONTENT_SECURITY_POLICY)


@bp.function_name("openapi_document")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return file_response(DOCUMENT, "application/json", HEADERS)


@bp.function_name("docs_page")
@bp.route(route="docs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def docs_page(req: func.HttpRequest) -> func.HttpResponse:
    return file_response(STATIC / "index.html", HTML, HEADERS)


@bp.function_name("docs_asset")
@bp.route(route="docs/{file}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@anonymous
async def docs_asset(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("file", "")
    return asset_response(ASSETS, name, STATIC, HEADERS, "the documentation page")
