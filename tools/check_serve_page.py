#!/usr/bin/env python3
"""Drives the `steex serve` page in headless Chromium, as a person would, and saves a screenshot.

First writes a small results folder: four demo scenes (fetched from a `steex serve --demo`)
explained by `steex explain-dir` with the bundled models' files. Then starts
`steex serve --demo --results THAT --port 0` (target/release/steex unless --steex is given),
loads the page in Debian's `chromium` (headless, spoken to over the DevTools protocol with a
small websocket client below: standard library only), uploads one of the scenes through the
file input (it must come back segmented, with a lamp) and then its mask, starts a long
explanation and stops it with Cancel, picks the first demo scene, clicks
"none", clicks the lamp on the image (a real mouse click at the lamp's centre), runs the
explanation and waits for the result; sorts the results table by its score change (two
clicks on the header: descending) and clicks its first row; and saves the page as a PNG
(default docs/serve-screenshot.png). Exits non-zero, saying why, if any step fails.

    python3 tools/check_serve_page.py [--steex PATH] [--chromium PATH] [--out PNG]
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request


class WebSocket:
    """A minimal client websocket (RFC 6455): text frames out (masked), frames in."""

    def __init__(self, url):
        m = re.match(r"ws://([^:/]+):(\d+)(/.*)", url)
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=120)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("the DevTools websocket closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"websocket handshake refused: {head!r}")

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise RuntimeError("the DevTools websocket closed")
            out += chunk
        return out

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            payload = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise RuntimeError("the DevTools websocket closed")
            if opcode in (0x9, 0xA):
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()


class Page:
    """One page target, driven through DevTools commands."""

    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"in the page: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r.get("result", {}).get("value")

    def wait_for(self, expression, what, timeout=120):
        t = time.time()
        while time.time() - t < timeout:
            if self.js(expression):
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def click(self, x, y):
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def read_line_matching(stream, pattern, what, timeout=120):
    t = time.time()
    seen = []
    while time.time() - t < timeout:
        line = stream.readline()
        if not line:
            break
        line = line.decode(errors="replace")
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise RuntimeError(f"{what} printed no line matching {pattern!r}:\n{''.join(seen)}")


def start_server(steex, extra):
    """`steex serve --port 0 EXTRA...` and its address."""
    p = subprocess.Popen([steex, "serve", "--port", "0", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = read_line_matching(p.stderr, r"(http://127\.0\.0\.1:\d+/)", "steex serve").group(1)
    except RuntimeError:
        p.kill()
        p.wait()
        raise
    return p, url


def make_results(steex, root, work):
    """A results folder: four demo scenes (image and label map, from the demo server) through
    `steex explain-dir` with the bundled models' files; returns its path."""
    for d in ("images", "masks"):
        os.makedirs(os.path.join(work, d))
    server, url = start_server(steex, ["--demo"])
    try:
        scenes = json.load(urllib.request.urlopen(url + "api/scenes"))["scenes"][:4]
        for k, sc in enumerate(scenes):
            req = urllib.request.Request(f"{url}api/queries?scene={sc['seed']}", data=b"", method="POST")
            q = json.load(urllib.request.urlopen(req))
            for src, dst in ((q["image"], "images"), (q["labels"], "masks")):
                with open(os.path.join(work, dst, f"scene{k}.png"), "wb") as f:
                    f.write(urllib.request.urlopen(url + src.lstrip("/")).read())
    finally:
        server.kill()
        server.wait()
    assets = os.path.join(root, "assets", "synthetic")
    out = os.path.join(work, "results")
    r = subprocess.run([steex, "explain-dir", "--images", os.path.join(work, "images"),
                        "--masks", os.path.join(work, "masks"),
                        "--generator", os.path.join(assets, "generator.safetensors"),
                        "--classifier", os.path.join(assets, "classifier.safetensors"),
                        "--attribute", "stop", "--steps", "8", "--lr", "0.3", "--out", out],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError(f"steex explain-dir failed: {r.stderr.decode(errors='replace')}")
    print(f"results folder: {out}")
    return out


def set_file(page, selector, path):
    """Chooses `path` in the file input `selector` (as a person picking it would: `change` fires)."""
    doc = page.call("DOM.getDocument")
    node = page.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector=selector)["nodeId"]
    page.call("DOM.setFileInputFiles", files=[path], nodeId=node)


def check_upload(page, png, mask):
    """Uploads an image through the file input (it is segmented and scored), then its mask
    (the label map is replaced), then runs a long explanation and stops it with Cancel."""
    set_file(page, "#image-file", png)
    page.wait_for("state.query !== null && state.query.source === 'upload' && state.labels !== null",
                  "the uploaded image's label map")
    q = page.js("({source: state.query.labels_source, regions: state.query.regions_present.map((r) => r.name),"
                " p: state.query.probabilities[0]})")
    if q["source"] != "segmenter" or "lamp" not in q["regions"]:
        raise RuntimeError(f"the upload was not segmented into regions with a lamp: {q}")
    print(f"uploaded {os.path.basename(png)}: segmented into {', '.join(q['regions'])}, p(stop) {q['p']:.3f}")
    set_file(page, "#mask-file", mask)
    page.wait_for("state.query.labels_source === 'mask' && state.labels !== null", "the uploaded mask")
    print("uploaded its mask: the label map is the mask's")
    page.js("document.getElementById('steps').value = '2000'; document.getElementById('frame-every').value = '0'")
    page.js("document.getElementById('run').click()")
    page.wait_for("/step \\d+ \\/ 2000/.test(document.getElementById('job-status').textContent)", "the long run's steps")
    page.js("document.getElementById('cancel').click()")
    page.wait_for("/cancelled after \\d+ steps/.test(document.getElementById('job-status').textContent)",
                  "the cancel")
    status = page.js("document.getElementById('job-status').textContent")
    print(f"Cancel: {status}")
    page.js("document.getElementById('steps').value = String(state.info.defaults.steps);"
            "document.getElementById('frame-every').value = String(state.info.defaults.frame_every)")


def check_results_table(page):
    """Sorts the results table by its score change (descending: two clicks) and opens the first row."""
    page.wait_for("document.querySelectorAll('#results-table tbody tr').length === 4", "the results table")
    for _ in range(2):
        box = page.js("""(() => { const th = document.querySelector('#results-table th[data-key=score_change]');
            th.scrollIntoView(); const r = th.getBoundingClientRect();
            return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()""")
        page.click(box["x"], box["y"])
    changes = page.js("Array.from(document.querySelectorAll('#results-table tbody tr'))"
                      ".map((tr) => Number(tr.children[5].textContent))")
    if changes != sorted(changes, reverse=True):
        raise RuntimeError(f"the table is not sorted by change, descending: {changes}")
    page.js("document.querySelector('#results-table tbody tr').click()")
    page.wait_for("Array.from(document.querySelectorAll('#results-images img')).length === 4 && "
                  "Array.from(document.querySelectorAll('#results-images img')).every((i) => i.complete && i.naturalWidth > 0)",
                  "the chosen result's images")
    print(f"results table sorted by score change, descending: {changes}; first row's images shown")
    page.js("window.scrollTo(0, 0)")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steex", default=os.path.join(root, "target", "release", "steex"))
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    ap.add_argument("--out", default=os.path.join(root, "docs", "serve-screenshot.png"))
    args = ap.parse_args()
    if not os.path.exists(args.steex):
        sys.exit(f"{args.steex}: not built (cargo build --release)")
    if not shutil.which(args.chromium):
        sys.exit(f"{args.chromium}: not found (apt-get install -y chromium)")

    work = tempfile.mkdtemp(prefix="steex-serve-check-")
    profile = os.path.join(work, "chromium-profile")
    server = browser = None
    try:
        results = make_results(args.steex, root, work)
        server, url = start_server(args.steex, ["--demo", "--results", results])
        print(f"server: {url}")
        browser = subprocess.Popen(
            [args.chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", "--window-size=1400,1250", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        devtools = read_line_matching(browser.stderr, r"DevTools listening on (ws://[^\s]+)", "chromium").group(1)
        port = re.match(r"ws://[^:]+:(\d+)/", devtools).group(1)
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        page = Page(page_ws)
        page.call("Page.enable")
        page.call("Page.navigate", url=url)
        page.wait_for("document.querySelectorAll('#scenes button').length > 0", "the demo scenes")
        check_upload(page, os.path.join(work, "images", "scene1.png"), os.path.join(work, "masks", "scene1.png"))
        page.js("document.querySelector('#scenes button').click()")
        page.wait_for("state.query !== null && state.query.source.startsWith('scene') && state.labels !== null",
                      "the scene's label map")
        page.js("document.getElementById('no-regions').click()")
        # The lamp's centre on the canvas, in page coordinates.
        where = page.js("""(() => {
            const lamp = state.info.regions.findIndex((r) => r.name === 'lamp');
            const {width, height, ids} = state.labels;
            let sx = 0, sy = 0, n = 0;
            for (let i = 0; i < ids.length; i++) if (ids[i] === lamp) { sx += i % width; sy += Math.floor(i / width); n++; }
            const r = document.getElementById('query-canvas').getBoundingClientRect();
            return {lamp, n, x: r.left + (sx / n + 0.5) / width * r.width, y: r.top + (sy / n + 0.5) / height * r.height};
        })()""")
        if not where or where["n"] == 0:
            raise RuntimeError(f"no lamp in the scene: {where}")
        page.click(where["x"], where["y"])
        chosen = page.js("Array.from(state.chosen)")
        if chosen != [where["lamp"]]:
            raise RuntimeError(f"clicking the lamp chose {chosen}, expected [{where['lamp']}]")
        print(f"clicked the lamp at ({where['x']:.0f}, {where['y']:.0f}): regions free {chosen}")
        previous = page.js("state.job")
        page.js("document.getElementById('run').click()")
        page.wait_for(f"state.job !== {json.dumps(previous)} && !document.getElementById('result-panel').hidden && "
                      "/^\\S+: (done|cancelled|failed)/.test(document.getElementById('job-status').textContent)",
                      "the explanation", timeout=300)
        line = page.js("document.getElementById('result-line').textContent")
        status = page.js("document.getElementById('job-status').textContent")
        print(f"{status}\n{line}")
        check_results_table(page)
        time.sleep(0.5)  # the images load
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(args.out, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print(f"screenshot: {args.out}")
        if "decision changed" not in line:
            raise RuntimeError("the lamp-only explanation did not change the decision")
    finally:
        for p in (browser, server):
            if p is not None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(f"check_serve_page: {e}")
