"""Drives Debian's headless Chromium through chromedriver's W3C WebDriver API (standard library
only) over `fashionbert serve`'s page: the pipeline view, a text search, a record, an
evaluation query, a table and the training curves. Saves a screenshot of each and prints one
JSON line of what it saw.

usage: browser_check.py URL SCREENSHOT_DIR QUERY_TEXT EXPECTED_IMAGE_ID
"""

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

URL, SHOTS, QUERY, EXPECTED = sys.argv[1:5]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()
DRIVER = f"http://127.0.0.1:{PORT}"


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(DRIVER + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)["value"]
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {path}: {e.read().decode(errors='replace')}") from None


driver = subprocess.Popen(["/usr/bin/chromedriver", f"--port={PORT}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
profile = tempfile.mkdtemp(prefix="fb-chromium-")
session = None
try:
    for _ in range(100):
        try:
            if call("GET", "/status").get("ready"):
                break
        except Exception:
            pass
        time.sleep(0.1)
    caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"],
    }}}}
    session = call("POST", "/session", caps)["sessionId"]
    S = f"/session/{session}"

    def js(script, *args):
        return call("POST", S + "/execute/sync", {"script": script, "args": list(args)})

    def wait(script, what, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            v = js(script)
            if v:
                return v
            time.sleep(0.2)
        err = js("const e = document.querySelector('.err'); return e ? e.textContent : document.body.innerText.slice(0, 500)")
        raise RuntimeError(f"timed out waiting for {what}; page says: {err}")

    def go(hash_, tab):
        call("POST", S + "/url", {"url": URL + hash_})
        wait(f"return document.body.dataset.ready === '{tab}'", f"the {tab} view")

    def find(css):
        return call("POST", S + "/element", {"using": "css selector", "value": css})[ELEMENT]

    def shot(name):
        png = base64.b64decode(call("GET", S + "/screenshot"))
        with open(os.path.join(SHOTS, name + ".png"), "wb") as f:
            f.write(png)

    seen = {}
    go("#pipeline", "pipeline")
    seen["stages_cached"] = js("return [...document.querySelectorAll('#stage-table td.cached')].length")
    shot("pipeline")

    go("#search", "search")
    q = find("#q")
    call("POST", f"{S}/element/{q}/value", {"text": QUERY})
    call("POST", f"{S}/element/{find('#go')}/click", {})
    wait("return document.querySelectorAll('#hits .hit').length > 0", "search results")
    wait("return [...document.querySelectorAll('#hits img')].every(i => i.complete)", "result images")
    seen["search_top"] = js("return [...document.querySelectorAll('#hits .hit')].map(h => h.dataset.imageId)")
    seen["search_images_loaded"] = js("return [...document.querySelectorAll('#hits img')].every(i => i.naturalWidth > 0)")
    shot("search")

    go("#record/p:" + EXPECTED, "record")
    wait("const i = document.querySelector('#record-img'); return i && i.complete && i.naturalWidth > 0", "the record image")
    seen["record_width"] = js("return document.querySelector('#record-img').naturalWidth")
    shot("record")

    go("#evaluation", "evaluation")
    call("POST", f"{S}/element/{find('#ev-queries [data-query]')}/click", {})
    wait("return document.querySelectorAll('#candidates .hit').length > 0", "a query's candidates")
    seen["query_has_true_match"] = bool(js("return document.querySelectorAll('#candidates .match').length === 1"))
    shot("evaluation")

    go("#tables/ingest", "tables")
    wait("return [...document.querySelectorAll('#grid img.thumb')].some(i => i.complete && i.naturalWidth > 0)", "table thumbnails")
    seen["table_thumbs_loaded"] = js("return [...document.querySelectorAll('#grid img.thumb')].filter(i => i.naturalWidth > 0).length")
    shot("tables")

    go("#training", "training")
    seen["training_lines"] = js("return document.querySelectorAll('#tr-charts polyline').length")
    shot("training")
    print(json.dumps(seen))
finally:
    if session:
        try:
            call("DELETE", f"/session/{session}")
        except Exception:
            pass
    driver.kill()
