"""ganctl serve: a local page to explore one run's generator, read-only, on the standard library's HTTP server.

GET / is the page; GET /grid.png?seed=S draws the picture `ganctl sample --seed S` would (a grid
of images, or a 1-D histogram / 2-D scatter of points) with optional n, class, truncation, and
`to`=B with t in [0, 1]: every latent moved that far along its slerp (lerp for uniform latents)
towards seed B's, as `ganctl interpolate` walks. Any other request gets a one-line text reason.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import math
import socketserver
import sys
import threading
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from urllib.parse import parse_qs, urlsplit

import torch

from ganctl import kinds
from ganctl.commands import options
from ganctl.commands.interpolate import default_mode, lerp, slerp
from ganctl.errors import ArgumentParser, ConfigError
from ganctl.generation import class_columns, generate, seeded
from ganctl.training.checkpoint import LoadedGenerator

PARAMS = ("seed", "n", "class", "truncation", "to", "t")
ROUTES = ("/", "/grid.png")
MAX_SEED = 2**63 - 1
# Picture sizes: a 16 x 16 grid of images, or enough points for a smooth histogram or scatter.
MAX_N = {True: 256, False: 20_000}
DEFAULT_N = {True: 64, False: 2_000}


class BadRequest(Exception):
    """A request the page or a user got wrong: 4xx with this one line."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.status = status


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise BadRequest(f"{name} given {len(values)} times; accepted: once")
    return values[0]


def _integer(query, name: str, low: int, high: int) -> int | None:
    text = _one(query, name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name}={text!r} is not an integer; accepted: an integer in {low}..{high}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name}={value} is out of range; accepted: an integer in {low}..{high}")
    return value


def _number(query, name: str) -> float | None:
    text = _one(query, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadRequest(f"{name}={text!r} is not a finite number")
    return value


@dataclass
class Request:
    """A checked /grid.png query."""

    seed: int
    n: int
    label: int | None  # None: every class in whole rows (conditional) or no class
    truncation: float | None
    to: int | None
    t: float


class Explorer:
    """One loaded generator and the pictures the page asks of it."""

    def __init__(self, model: LoadedGenerator):
        self.model = model
        self.kind = kinds.of(model.cfg.dataset)
        # The conditional G sets its batch norms' labels as attributes before each pass, and
        # matplotlib's figures are not shared safely: one picture at a time.
        self.lock = threading.Lock()

    def info(self) -> dict:
        m = self.model
        pixels = self.kind.pixels
        return {
            "checkpoint": str(m.path),
            "step": m.step,
            "ema": m.ema,
            "dataset": m.cfg.dataset.name,
            "pixels": pixels,
            "classes": m.classes,
            "truncation": m.cfg.model.latent == "normal",
            **self.sizes(),
        }

    def sizes(self) -> dict:
        """The page's sample counts: a conditional grid's come in whole rows of classes."""
        pixels, classes = self.kind.pixels, self.model.classes
        if not pixels:
            return {"n": DEFAULT_N[False], "n_choices": [500, 2_000, 20_000]}
        if classes is None:
            return {"n": DEFAULT_N[True], "n_choices": [1, 16, 64, 256]}
        k = len(classes)
        choices = [1, *(m * k for m in (1, 4, 8, 16) if m * k <= MAX_N[True])]
        return {"n": choices[-2] if len(choices) > 3 else choices[-1], "n_choices": choices}

    def parse(self, query: dict[str, list[str]]) -> Request:
        unknown = sorted(set(query) - set(PARAMS))
        if unknown:
            raise BadRequest(f"unknown parameter {unknown[0]!r}; accepted: {', '.join(PARAMS)}")
        pixels = self.kind.pixels
        seed = _integer(query, "seed", 0, MAX_SEED)
        n = _integer(query, "n", 1, MAX_N[pixels])
        to = _integer(query, "to", 0, MAX_SEED)
        t = _number(query, "t")
        if t is not None and not 0 <= t <= 1:
            raise BadRequest(f"t={t:g} is out of range; accepted: a number in [0, 1]")
        if t is not None and to is None:
            raise BadRequest("t moves towards seed `to`; accepted: to=B with t")
        truncation = _number(query, "truncation")
        if truncation is not None and truncation <= 0:
            raise BadRequest(f"truncation={truncation:g} is invalid; accepted: a number > 0")
        if truncation is not None and self.model.cfg.model.latent != "normal":
            raise BadRequest("truncation applies to Gaussian latents; this model was trained on uniform ones")
        asked = _one(query, "class")
        try:
            label = None if asked in (None, "all") else self.model.class_label(asked)
        except ConfigError as exc:
            raise BadRequest(str(exc)) from None
        return Request(
            0 if seed is None else seed, n or DEFAULT_N[pixels], label, truncation, to, 0.0 if t is None else t
        )

    def png(self, r: Request) -> bytes:
        """The picture of request r, as PNG bytes."""
        cfg = self.model.cfg
        z = seeded(r.n, cfg.model, r.seed, r.truncation)
        if r.to is not None:
            blend = slerp if default_mode(cfg) == "slerp" else lerp
            z = blend(z, seeded(r.n, cfg.model, r.to, r.truncation), torch.tensor([r.t]))[:, 0]
        labels = options.asked_labels(self.model, r.n, r.label)
        nrow = class_columns(r.n, len(self.model.classes)) if labels is not None and r.label is None else None
        buffer = BytesIO()
        with self.lock:
            x = generate(self.model.G, z, labels=labels)
            picture = self.kind.picture(x, cfg.dataset, self.kind.file_title(cfg.dataset, r.n), nrow)
            picture.save(buffer, format="PNG")
        return buffer.getvalue()

    def page(self) -> bytes:
        # "</" escaped: a class name (a folder dataset's subfolder) cannot close the script element.
        info = json.dumps(self.info()).replace("</", "<\\/")
        return PAGE.replace("__INFO__", info).encode()


class Handler(BaseHTTPRequestHandler):
    """GET and HEAD only; every error is one line of text/plain."""

    explorer: Explorer  # set on the subclass that make_server builds
    server_version = "ganctl-serve"
    error_content_type = "text/plain; charset=utf-8"

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        reason = " ".join((message or self.responses.get(code, ("error",))[0]).split())
        self.reply(code, "text/plain; charset=utf-8", (reason + "\n").encode())

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")  # another checkpoint may answer on this port next time
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path == "/":
                self.reply(200, "text/html; charset=utf-8", self.explorer.page())
            elif url.path == "/grid.png":
                query = parse_qs(url.query, keep_blank_values=True)
                self.reply(200, "image/png", self.explorer.png(self.explorer.parse(query)))
            else:
                raise BadRequest(f"unknown path {url.path}; accepted: {', '.join(ROUTES)}", 404)
        except BadRequest as exc:
            self.send_error(exc.status, str(exc))
        except Exception as exc:  # a bug: its traceback goes to the console, never to the page
            traceback.print_exc(file=sys.stderr)
            self.send_error(500, f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    do_HEAD = do_GET

    def refuse(self) -> None:
        self.send_error(405, f"{self.command} refused: this server is read-only; accepted: GET, HEAD")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse

    def log_request(self, code="-", size="-") -> None:
        if isinstance(code, int) and code >= 400:  # successes are the page's own pictures: no log line each
            super().log_request(code, size)


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a browser's kept-alive connection does not hold up Ctrl-C

    def server_bind(self) -> None:
        # HTTPServer's own looks the host's name up (socket.getfqdn), a DNS wait on some networks.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 0) -> Server:
    """The server for `explorer`, bound and listening on host:port (0: any free port)."""
    handler = type("Handler", (Handler,), {"explorer": explorer})
    try:
        return Server((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use; accepted: a free port (--port N, or --port 0 for any free one)"
            ) from None
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port} ({reason}); accepted: an address of this machine") from None


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="ganctl serve", description="A local web page to explore a trained generator (read-only).")
    options.add_checkpoint(p)
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)",
    )
    options.add_device(p)
    options.add_no_ema(p)
    return p


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is invalid; accepted: 0..65535")
    model = options.load_model(args)
    server = make_server(Explorer(model), args.host, args.port)
    host, port = server.server_address[:2]
    print(f"ganctl: serving {model.path} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        if not ipaddress.ip_address(host).is_loopback:
            print(f"ganctl: note: {host} is reachable from other machines; anyone there can draw samples", flush=True)
    except ValueError:
        pass  # a host name: its address decides, and the bind already accepted it
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("ganctl: stopped", flush=True)
    finally:
        server.server_close()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ganctl serve</title><link rel="icon" href="data:,">
<style>
body{font:14px system-ui,sans-serif;margin:1.2em;color:#222}
#controls{display:grid;grid-template-columns:max-content 1fr;gap:.45em 1em;max-width:34em;align-items:center}
.row{display:flex;gap:.6em;align-items:center}
.row input[type=range]{flex:1}
#picture{margin-top:1em;image-rendering:pixelated;border:1px solid #ccc}
#error{color:#b00}
.muted{color:#777}
</style></head><body>
<h1 style="font-size:1.2em">ganctl serve <span id="run" class="muted"></span></h1>
<div id="controls">
<label for="seed">seed</label>
<span><input id="seed" type="number" min="0" value="0" style="width:8em"> <button id="random">random</button></span>
<label for="n">samples</label><select id="n"></select>
<label for="class" class="cond">class</label><select id="class" class="cond"></select>
<label class="trunc"><input id="truncate" type="checkbox"> truncation</label>
<span class="trunc row"><input id="truncation" type="range" min="0.05" max="2" step="0.05" value="1">
<span id="truncation_value"></span></span>
<label for="to">towards seed</label><input id="to" type="number" min="0" value="1" style="width:8em">
<label for="t">interpolation</label><span class="row"><input id="t" type="range" min="0" max="1" step="0.02"
 value="0"><span id="t_value"></span></span>
<span></span><span><a id="save" download="ganctl.png" href="#">save image</a></span>
</div>
<p id="error"></p>
<img id="picture" alt="generated samples">
<script>
const INFO = __INFO__;
const $ = (id) => document.getElementById(id);
$("run").textContent = INFO.checkpoint + (INFO.step === null ? "" : ", step " + INFO.step) + (INFO.ema ? ", EMA" : "");
for (const n of INFO.n_choices) $("n").add(new Option(n, n, n === INFO.n, n === INFO.n));
if (INFO.classes) {
  $("class").add(new Option("all classes, a row each", "all"));
  INFO.classes.forEach((name, i) => $("class").add(new Option(i + ": " + name, i)));
} else document.querySelectorAll(".cond").forEach((e) => e.style.display = "none");
if (!INFO.truncation) document.querySelectorAll(".trunc").forEach((e) => e.style.display = "none");

function query() {
  const q = new URLSearchParams({seed: $("seed").value || "0", n: $("n").value});
  if (INFO.classes && $("class").value !== "all") q.set("class", $("class").value);
  if (INFO.truncation && $("truncate").checked) q.set("truncation", $("truncation").value);
  if (Number($("t").value) > 0) { q.set("to", $("to").value || "0"); q.set("t", $("t").value); }
  return q;
}
function update() {
  const q = query();
  $("truncation_value").textContent = $("truncate").checked ? $("truncation").value : "off";
  $("t_value").textContent = Number($("t").value).toFixed(2);
  const url = "/grid.png?" + q;
  $("picture").src = url;
  $("save").href = url;
  $("save").download = "ganctl_" + [...q].map(([k, v]) => k + v).join("_") + ".png";
}
$("picture").onload = () => {
  $("error").textContent = "";
  const img = $("picture"), scale = Math.max(1, Math.floor(640 / img.naturalWidth));
  img.style.width = img.naturalWidth * scale + "px";
};
$("picture").onerror = () => fetch($("picture").src).then((r) => r.text()).then((t) => $("error").textContent = t);
$("random").onclick = () => { $("seed").value = Math.floor(Math.random() * 1e6); update(); };
for (const id of ["seed", "n", "class", "truncate", "truncation", "to", "t"]) {
  $(id).addEventListener("input", update);
  $(id).addEventListener("change", update);  // a select set by a script fires only this one
}
update();
</script></body></html>
"""
