"""The API's documentation pages work on a network with nothing beyond this machine: Debian's Chromium (driven by
playwright-core, tests/browser/docs_offline.mjs) opens /docs and /redoc from the real API with every request
that leaves 127.0.0.1 refused, and they still render every operation. Screenshots go to .runtime/reports/.

Without Chromium or the script's node_modules (scripts/setup.sh installs both) the test fails and says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Final

from core.settings import REPO_ROOT
from tests.integration.conftest import ApiServer

BROWSER_DIR: Final = REPO_ROOT / "tests" / "browser"
REPORTS_DIR: Final = REPO_ROOT / ".runtime" / "reports"
CHROMIUM: Final = Path("/usr/bin/chromium")
BROWSER_TIMEOUT_S: Final = 180


def _open_docs_in_chromium(base_url: str) -> dict[str, object]:
    node = shutil.which("node")
    assert node is not None, "node is missing: run scripts/setup.sh"
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/setup.sh (apt package chromium)"
    assert (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(), "run scripts/setup.sh (npm ci in tests/browser)"
    REPORTS_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [node, str(BROWSER_DIR / "docs_offline.mjs"), base_url, str(REPORTS_DIR)],
        cwd=BROWSER_DIR,
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"the browser script failed:\n{done.stderr}\n{done.stdout}"
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_docs_and_redoc_render_every_operation_with_no_request_leaving_this_machine(
    api: Callable[[], ApiServer],
) -> None:
    with api() as client:
        document = client.get("/openapi.json").json()
        report = _open_docs_in_chromium(str(client.base_url).rstrip("/"))
    expected = sorted(
        f"{method.upper()} {path}" for path, operations in document["paths"].items() for method in operations
    )
    assert report["offsite"] == []
    assert report["failed"] == []
    assert report["consoleErrors"] == []
    docs = report["docs"]
    assert isinstance(docs, dict)
    assert (docs["status"], docs["title"], docs["authorizeButton"]) == (200, "ioc API", True)
    assert "GET /devices" in docs["operations"]
    assert sorted(docs["operations"]) == expected
    redoc = report["redoc"]
    assert isinstance(redoc, dict)
    assert (redoc["status"], redoc["title"], redoc["operations"]) == (200, "ioc API", len(expected))
    assert (REPORTS_DIR / "docs-offline.png").stat().st_size > 10_000


def test_the_root_leads_to_the_console_and_the_docs_pages_name_only_local_assets(api: Callable[[], ApiServer]) -> None:
    with api() as client:
        root = client.get("/", follow_redirects=False)
        pages = {path: client.get(path) for path in ("/docs", "/redoc", "/docs/oauth2-redirect")}
        assets = [
            client.get(f"/static/docs/{name}")
            for name in ("swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css", "redoc/redoc.standalone.js")
        ]
    assert (root.status_code, root.headers["location"]) == (307, "/console")
    for path, page in pages.items():
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert "http://" not in page.text and "https://" not in page.text, f"{path} names an outside address"
    assert "/static/docs/swagger-ui/swagger-ui-bundle.js" in pages["/docs"].text
    assert "/static/docs/redoc/redoc.standalone.js" in pages["/redoc"].text
    assert [a.status_code for a in assets] == [200, 200, 200]
    assert all(len(a.content) > 100_000 for a in assets)
