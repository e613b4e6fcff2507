#!/usr/bin/env bash
# Copy the built NHS.UK frontend (CSS, JS, images) into the portal's static files.
# Run after changing the pinned version in package.json; commit the result. The portal never
# fetches anything at run time, so the stylesheet is rewritten to drop the CDN web fonts
# (Frutiger is licensed and not in the package: the NHS font stack falls back to Arial) and to
# point icon URLs at the vendored copies.
set -euo pipefail
cd "$(dirname "$0")/.."
npm install --no-audit --no-fund --silent
src=node_modules/nhsuk-frontend/dist/nhsuk
dest=src/nccid/portal/static/nhsuk
version=$(node -p 'require("./node_modules/nhsuk-frontend/package.json").version')
rm -rf "$dest"
mkdir -p "$dest/assets"
cp -R "$src/assets/images" "$dest/assets/images"
cp "$src/assets/manifest.json" "$dest/assets/manifest.json"
cp "$src/nhsuk-frontend.min.js" "$dest/nhsuk-frontend.min.js"
# Strip @font-face blocks (remote fonts) and the source-map comment; icons become relative URLs.
python3 - "$src/nhsuk-frontend.min.css" "$dest/nhsuk-frontend.min.css" <<'PY'
import re, sys
css = open(sys.argv[1], encoding="utf-8").read()
css = re.sub(r"@font-face\{[^}]*\}", "", css)
css = css.replace("url(/assets/", "url(assets/")
css = re.sub(r"/\*# sourceMappingURL=[^*]*\*/", "", css)
remote = re.findall(r"url\((?:['\"])?https?:", css)
if remote:
    sys.exit(f"the stylesheet still refers to {len(remote)} remote URL(s)")
open(sys.argv[2], "w", encoding="utf-8").write(css)
PY
sed -i 's#//\# sourceMappingURL=.*##' "$dest/nhsuk-frontend.min.js"
printf "nhsuk-frontend %s (https://github.com/nhsuk/nhsuk-frontend), MIT licence, NHS England.\n" "$version" > "$dest/NOTICE"
echo "$version" > "$dest/VERSION"
echo "Vendored nhsuk-frontend $version into $dest"
