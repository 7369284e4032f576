"""ganctl serve: the real server on a loopback port draws sample's pictures, refuses bad requests in one line,
writes nothing, and a headless browser shows its page."""

from __future__ import annotations

import io
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl.commands import sample, serve
from ganctl.training.checkpoint import load_generator

from conftest import REPO

CONDITIONAL = ("+experiment=mnist_best", "model.width=8", "model.conditional=true")
MLP = ("+experiment=mnist_bce", "model.g_hidden=[32]", "model.d_hidden=[32]")


def start(run_dir: Path):
    """The real server for run_dir on 127.0.0.1 and a free port, serving from a thread; its base URL."""
    server = serve.make_server(serve.Explorer(load_generator(run_dir, torch.device("cpu"))), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def conditional(tiny_run):
    server, url = start(tiny_run(*CONDITIONAL))
    yield url
    server.shutdown()
    server.server_close()


def get(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=60) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def png(url: str) -> Image.Image:
    status, kind, body = get(url)
    assert (status, kind) == (200, "image/png"), body[:200]
    return Image.open(io.BytesIO(body))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"))


def test_grid_is_the_picture_sample_draws_and_interpolation_ends_at_both_seeds(tiny_run, conditional, tmp_path):
    run_dir = tiny_run(*CONDITIONAL)
    one = png(f"{conditional}/grid.png?seed=5&n=20")
    assert one.size == (2 * 28 + 3 * 2, 10 * 28 + 11 * 2)  # every class, a row of 2 each
    sample.main([str(run_dir), "-n", "20", "--seed", "5", "-o", str(tmp_path / "s.png")])
    assert np.array_equal(pixels(one), pixels(Image.open(tmp_path / "s.png")))
    threes = png(f"{conditional}/grid.png?seed=5&n=16&class=3")
    assert threes.size == (4 * 28 + 5 * 2,) * 2
    sample.main([str(run_dir), "-n", "16", "--seed", "5", "--class", "3", "-o", str(tmp_path / "3.png")])
    assert np.array_equal(pixels(threes), pixels(Image.open(tmp_path / "3.png")))
    assert png(f"{conditional}/grid.png?seed=5&n=1&class=3").size == (32, 32)
    # slerp is exact at both ends: t = 0 is seed 5's grid, t = 1 seed 9's, t = 0.5 neither.
    a, b = pixels(png(f"{conditional}/grid.png?seed=5&n=16")), pixels(png(f"{conditional}/grid.png?seed=9&n=16"))
    walk = lambda t: pixels(png(f"{conditional}/grid.png?seed=5&n=16&to=9&t={t}"))  # noqa: E731
    assert np.array_equal(walk(0), a) and np.array_equal(walk(1), b)
    middle = walk(0.5)
    assert not np.array_equal(middle, a) and not np.array_equal(middle, b)
    truncated = pixels(png(f"{conditional}/grid.png?seed=5&n=16&truncation=0.5"))
    assert truncated.shape == a.shape and not np.array_equal(truncated, a)


BAD = [
    ("/grid.png?seed=x", 400, "seed='x' is not an integer"),
    ("/grid.png?seed=-1", 400, "seed=-1 is out of range"),
    ("/grid.png?truncation=0", 400, "truncation=0 is invalid; accepted: a number > 0"),
    ("/grid.png?truncation=-2", 400, "truncation=-2 is invalid"),
    ("/grid.png?truncation=nan", 400, "truncation='nan' is not a finite number"),
    ("/grid.png?class=10", 400, "class '10' is not a class of this generator; accepted: 0..9"),
    ("/grid.png?n=0", 400, "n=0 is out of range; accepted: an integer in 1..256"),
    ("/grid.png?n=100000", 400, "n=100000 is out of range"),
    ("/grid.png?to=3&t=1.5", 400, "t=1.5 is out of range; accepted: a number in [0, 1]"),
    ("/grid.png?t=0.5", 400, "t moves towards seed `to`"),
    ("/grid.png?seed=1&seed=2", 400, "seed given 2 times"),
    ("/grid.png?size=3", 400, "unknown parameter 'size'"),
    ("/../checkpoints/last.pt", 404, "unknown path"),
    ("/samples/", 404, "unknown path /samples/; accepted: /, /grid.png"),
]


@pytest.mark.parametrize("query,status,reason", BAD)
def test_bad_requests_get_a_4xx_and_one_line(conditional, query, status, reason):
    got, kind, body = get(conditional + query)
    text = body.decode()
    assert (got, kind) == (status, "text/plain; charset=utf-8")
    assert reason in text and text.count("\n") == 1 and "Traceback" not in text


def test_nothing_is_written_and_only_get_is_answered(tiny_run, conditional):
    run_dir = tiny_run(*CONDITIONAL)
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    for method in ("POST", "PUT", "DELETE"):
        status, _, body = get(f"{conditional}/grid.png", method)
        assert status == 405 and body.decode() == f"{method} refused: this server is read-only; accepted: GET, HEAD\n"
    page = get(conditional + "/")
    assert page[:2] == (200, "text/html; charset=utf-8") and b'"classes": ["0", "1"' in page[2]
    png(f"{conditional}/grid.png?seed=1")
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


def test_points_model_draws_its_plot_and_refuses_truncation():
    """Setup 002's 1-D model (uniform latents): a histogram, and truncation refused in one line."""
    server, url = start(REPO / "tests" / "fixtures" / "v1_gaussian1d.pt")
    try:
        assert png(f"{url}/grid.png?n=500").size[0] > 100
        status, _, body = get(f"{url}/grid.png?truncation=1")
        assert status == 400 and body.decode().startswith("truncation applies to Gaussian latents")
        assert get(f"{url}/grid.png?class=1")[0] == 400  # not conditional
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow  # a Python started in a subprocess: 3-6 s of imports on the 2-core machine
def test_cli_binds_loopback_and_a_port_in_use_is_one_line_exit_2(tiny_run):
    """The real `ganctl serve` on --port 0: it says where it listens (127.0.0.1 unless --host),
    draws a picture, and a second server on that port exits 2 in one line; Ctrl-C stops it."""
    run_dir = str(tiny_run(*MLP))
    first = subprocess.Popen(
        [sys.executable, "-m", "ganctl", "serve", run_dir, "--port", "0", "--device", "cpu"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background of a non-interactive shell inherits SIGINT ignored, and
        # Python then installs no KeyboardInterrupt handler: give the server a terminal's Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = first.stdout.readline()
        assert line.startswith("ganctl: serving ") and " at http://127.0.0.1:" in line, first.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        assert png(f"http://127.0.0.1:{port}/grid.png?n=16").size == (4 * 28 + 5 * 2,) * 2
        second = subprocess.run(
            [sys.executable, "-m", "ganctl", "serve", run_dir, "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"ganctl: error: port {port} on 127.0.0.1 is in use; accepted: a free port (--port N, or --port 0 "
            "for any free one)"
        ]
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=60) == 0 and "ganctl: stopped" in first.stdout.read()
    finally:
        if first.poll() is None:
            first.kill()
        first.stdout.close()
        first.stderr.close()


def test_a_port_taken_by_another_program_is_one_line(tiny_run, capsys):
    from ganctl.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exc:
            main(["serve", str(tiny_run(*MLP)), "--port", str(port)])
    assert exc.value.code == 2
    assert (
        capsys.readouterr().err == f"ganctl: error: port {port} on 127.0.0.1 is in use; accepted: a free port "
        "(--port N, or --port 0 for any free one)\n"
    )


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.slow  # Chromium's start-up: 2-4 s
def test_headless_chromium_shows_the_page_and_its_picture(conditional, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (chromium, chromedriver on PATH)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import Select, WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(conditional + "/")
        loaded = "const i = document.getElementById('picture'); return i.complete && i.naturalWidth > 0;"
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(loaded))
        width = driver.execute_script("return document.getElementById('picture').naturalWidth")
        assert width == 8 * 28 + 9 * 2  # the page's default for 10 classes: 80 samples, a row of 8 per class
        Select(driver.find_element("id", "class")).select_by_value("3")
        WebDriverWait(driver, 60).until(
            lambda d: (
                "class=3" in d.execute_script("return document.getElementById('picture').src")
                and d.execute_script(loaded)
            )
        )
        assert "class=3" in driver.find_element("id", "save").get_attribute("href")
        shot = tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
        assert Image.open(shot).size[0] > 0
        assert driver.find_element("id", "error").text == ""
    finally:
        driver.quit()
