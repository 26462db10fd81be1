#!/usr/bin/env bash
# The README's screenshots of `fashionbert serve`: serves CONFIG's store, finds a product whose
# title finds its own image in the top 5 (through the API), and drives headless Chromium over
# the page with tests/python/browser_check.py (the browser test's script), saving one PNG per view.
# usage: scripts/screenshots.sh [CONFIG] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-pipeline.toml}
OUT=${2:-docs/screenshots}
BIN=${BIN:-target/release/fashionbert}
PY=${FB_PYTHON:-python3}
mkdir -p "$OUT"
log=$(mktemp)
"$BIN" serve --config "$CONFIG" --port 0 >"$log" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
until grep -q "listening on" "$log"; do sleep 0.2; done
url=$(grep -o "http://[0-9.:]*/" "$log")
mapfile -t found < <("$PY" - "$url" <<'PY'
import json, sys, urllib.parse, urllib.request
url = sys.argv[1]
get = lambda p: json.load(urllib.request.urlopen(url + p))
info = get("api/info")
rows = get(f"api/table/embed/{info['entries']['embed']}/items.parquet?columns=title,image_id,split&limit=200")["rows"]
for title, image, split in rows:
    hits = get("api/search?" + urllib.parse.urlencode({"text": title, "k": 5}))["hits"]
    if split == "valid" and any(h["image_id"] == image for h in hits):
        print(title.replace("\n", " "))
        print(image)
        break
PY
)
title=${found[0]:?no product found itself in the top 5}
image=${found[1]}
"$PY" tests/python/browser_check.py "$url" "$OUT" "$title" "$image"
ls -la "$OUT"
