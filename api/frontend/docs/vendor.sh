#!/usr/bin/env bash
# Copies Swagger UI and ReDoc (versions pinned in package.json / package-lock.json) into api/static/docs/,
# where the API serves them for /docs and /redoc. The copies are committed, so running the API needs no Node.js;
# run this only to change a version:  bash api/frontend/docs/vendor.sh
# ReDoc stays on 2.x: FastAPI's get_redoc_html is written for its `<redoc spec-url>` standalone bundle.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATIC="$(cd "$HERE/../.." && pwd)/static/docs"
cd "$HERE"
npm ci --ignore-scripts --no-audit --no-fund

copy() {  # destination-folder source-files...
    local dest="$STATIC/$1"; shift
    mkdir -p "$dest"
    cp "$@" "$dest/"
}
rm -rf "$STATIC"
SWAGGER=node_modules/swagger-ui-dist
REDOC=node_modules/redoc
copy swagger-ui "$SWAGGER/swagger-ui-bundle.js" "$SWAGGER/swagger-ui-bundle.js.LICENSE.txt" \
    "$SWAGGER/swagger-ui.css" "$SWAGGER/favicon-32x32.png" "$SWAGGER/LICENSE" "$SWAGGER/NOTICE"
copy redoc "$REDOC/bundles/redoc.standalone.js" "$REDOC/bundles/redoc.standalone.js.LICENSE.txt" "$REDOC/LICENSE"
# ReDoc's sidebar footer loads its logo from its CDN at run time: an empty inline image keeps the page offline.
REDOC_LOGO_URL="https://cdn.redoc.ly/redoc/logo-mini.svg"
grep -qF "$REDOC_LOGO_URL" "$STATIC/redoc/redoc.standalone.js" || { echo "ReDoc no longer names $REDOC_LOGO_URL: check what it loads" >&2; exit 1; }
sed -i "s#$REDOC_LOGO_URL#data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E#" "$STATIC/redoc/redoc.standalone.js"
node -e '
const lock = require("./package-lock.json").packages;
for (const name of ["swagger-ui-dist", "redoc"]) console.log(`${name} ${lock["node_modules/" + name].version}`);
' >"$STATIC/VERSIONS"
echo "vendored into $STATIC:"
cat "$STATIC/VERSIONS"
