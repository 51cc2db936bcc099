"""The live console's page and its built front-end (api/static/console/, built from api/console/ by `make console`):
open like the documentation pages, since logging in happens in the page; every data call it makes needs a token."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

CONSOLE_URL: Final = "/console"
CONSOLE_ASSETS_URL: Final = "/console/assets"
CONSOLE_DIR: Final = Path(__file__).resolve().parent.parent / "static" / "console"

# Everything comes from the center's own origin: no CDN, no tile server, no inline script or style sheet.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# The page names its scripts by content hash: the page is checked on every load, the hashed files never change.
PAGE_CACHE_CONTROL: Final = "no-cache"
ASSET_CACHE_CONTROL: Final = "public, max-age=31536000, immutable"

router = APIRouter(include_in_schema=False)


class ConsoleAssets(StaticFiles):
    """The built scripts, style sheets and images, with long-lived cache headers and the console's policy."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = ASSET_CACHE_CONTROL
        response.headers.update(_SECURITY_HEADERS)
        return response


@router.get(CONSOLE_URL)
def console_page() -> Response:
    """The single page of the console (login, overview, device pages, kiosk: `?kiosk=1&rotate=province`)."""
    page = CONSOLE_DIR / "index.html"
    headers = {"Cache-Control": PAGE_CACHE_CONTROL, **_SECURITY_HEADERS}
    if not page.is_file():
        return PlainTextResponse(
            "the console is not built: run `make console` (needs Node.js)", status_code=503, headers=headers
        )
    return FileResponse(page, media_type="text/html; charset=utf-8", headers=headers)


# `check_dir=False`: an unbuilt console still lets the API start (the page then says how to build it).
router.mount(
    CONSOLE_ASSETS_URL, ConsoleAssets(directory=CONSOLE_DIR / "assets", check_dir=False), name="console-assets"
)
