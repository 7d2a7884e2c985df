#!/usr/bin/env bash
# Opens the architecture diagram and a `vgg dissect` report in headless Chromium, fails on
# any console error or failed load, and saves screenshots in docs/ (linked from the README).
#   apt-get install chromium && cargo build --release && scripts/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
vgg=target/release/vgg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$vgg" diagram --all --out docs/vgg_all.svg
"$vgg" dissect --arch vgg16 tests/fixtures/images/landscape.jpg --out "$work/dissect" >/dev/null

# shot OUTPUT.png URL WIDTH HEIGHT
shot() {
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --enable-logging=stderr --v=0 --hide-scrollbars \
    --window-size="$3,$4" --screenshot="$1" "$2" 2>"$work/log.txt"
  if grep -E "CONSOLE.*(ERROR|Uncaught)|Failed to load|net::ERR" "$work/log.txt"; then
    echo "error: Chromium reported errors for $2" >&2
    exit 1
  fi
  echo "$2 -> $1 (no console errors)"
}

shot docs/screenshot_diagram.png "file://$PWD/docs/vgg_all.svg" 2010 560
shot docs/screenshot_dissect.png "file://$work/dissect/index.html" 1100 1500
