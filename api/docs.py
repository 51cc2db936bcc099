"""The pages that show the API's OpenAPI document: Swagger UI at /docs and ReDoc at /redoc, both served from the
copies in api/static/docs/ (vendored by api/frontend/docs/vendor.sh), so they work on a network with no Internet."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS_DIR: Final = Path(__file__).resolve().parent / "static" / "docs"
DOCS_ASSETS_URL: Final = "/static/docs"
SWAGGER_UI_URL: Final = "/docs"
SWAGGER_UI_OAUTH2_REDIRECT_URL: Final = "/docs/oauth2-redirect"
REDOC_URL: Final = "/redoc"

# Swagger UI's defaults would ask validator.swagger.io to check the document; nothing leaves the network.
_SWAGGER_UI_PARAMETERS: Final = {"validatorUrl": None}


def add_docs_pages(app: FastAPI) -> None:
    """Mount the vendored assets and add /docs, its OAuth2 redirect page, /redoc, and `/` leading to the console.
    `app` must be created with `docs_url=None, redoc_url=None` so that FastAPI's CDN pages are not added."""
    assert app.docs_url is None and app.redoc_url is None, "create the app with docs_url=None, redoc_url=None"
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")

    @app.get(SWAGGER_UI_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} API",
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS_URL}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=SWAGGER_UI_OAUTH2_REDIRECT_URL,
            swagger_ui_parameters=_SWAGGER_UI_PARAMETERS,
        )

    @app.get(SWAGGER_UI_OAUTH2_REDIRECT_URL, include_in_schema=False)
    def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} API",
            redoc_js_url=f"{DOCS_ASSETS_URL}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS_URL}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )

    # `/` leads to the live console (api/routers/console.py); the API's own pages stay at /docs and /redoc.
    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console")
