"""The core pages in a real browser (Debian chromium + playwright), fully offline: every request that is
not to 127.0.0.1 is aborted. Proves what AppTest cannot: the plotly figures and bertviz's views are
really drawn, user text never runs as script, and the URL follows the controls.

Run with `pytest -m browser tests/app/test_browser_core.py` (skipped without /usr/bin/chromium).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_models):
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    port = _free_port()
    env = dict(os.environ, LMSCOPE_DEMO_MODELS=str(next(iter(tiny_models.values())).parent), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("streamlit did not become healthy")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 1600})
    outside: list[str] = []
    dialogs: list[str] = []

    def route(r):
        if urllib.parse.urlparse(r.request.url).hostname == "127.0.0.1":
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.outside, pg.dialogs = outside, dialogs
    yield pg
    assert pg.locator("[data-testid=stException]").count() == 0
    pg.close()


def _open(page, server, path: str, **params):
    page.goto(f"{server}/{path}?{urllib.parse.urlencode(params)}")


def test_attention_draws_the_heatmap_and_follows_the_head_slider(page, server):
    from playwright.sync_api import expect

    _open(page, server, "attention", model="demo/bert-mlm", text="the dogs near the cat run.", layer="1")
    expect(page.get_by_text("Layer 1, head 0: attention")).to_be_visible(timeout=30_000)
    assert page.locator(".js-plotly-plot .heatmaplayer image, .js-plotly-plot .hm image").count() >= 1
    slider = page.get_by_role("slider").nth(1)  # layer, head
    slider.focus()
    slider.press("ArrowRight")
    expect(page.get_by_text("Layer 1, head 1: attention")).to_be_visible(timeout=15_000)
    for _ in range(50):  # playwright's page.url misses Streamlit's history.replaceState: ask the page
        url = page.evaluate("location.href")
        if "head=1" in url:
            break
        time.sleep(0.1)
    assert "head=1" in url and "layer=1" in url
    assert page.outside == []


def test_bertviz_views_render_offline_and_user_script_stays_text(page, server):
    from playwright.sync_api import expect

    _open(page, server, "attention", model="demo/gpt2", text="<script>alert(1)</script> the cat", panel="bertviz")
    frame = page.frame_locator("iframe").first
    expect(frame.locator("svg").first).to_be_attached(timeout=30_000)
    expect(frame.locator("#vis text").first).to_be_attached(timeout=10_000)
    assert frame.locator("#vis svg line, #vis svg path, #vis svg rect").count() > 10  # bertviz drew its view
    assert page.dialogs == [] and page.outside == []
    page.get_by_role("radiogroup", name="bertviz view").get_by_text("model", exact=True).click()
    expect(page.frame_locator("iframe").first.get_by_text("Heads")).to_be_visible(timeout=20_000)
    assert page.dialogs == [] and page.outside == []


def test_masked_lm_predictions_are_drawn_and_text_survives_page_switches(page, server):
    from playwright.sync_api import expect

    _open(page, server, "masked_lm", model="demo/bert-mlm", text="the dogs near the [MASK] run.")
    expect(page.get_by_text("Token 5:")).to_be_visible(timeout=30_000)
    assert page.locator(".js-plotly-plot .barlayer .point").count() == 10
    page.get_by_role("link", name="Tokenization").click()
    expect(page.get_by_text("Tokens aligned on the input")).to_be_visible(timeout=30_000)
    assert page.get_by_role("textbox", name="Text").input_value() == "the dogs near the [MASK] run."
    for _ in range(50):
        url = page.evaluate("location.href")
        if "/tokenization?" in url and "models=" in url:
            break
        time.sleep(0.1)
    assert "text=the+dogs+near+the+%5BMASK%5D+run." in url and "topk" not in url  # this page's keys only
    assert page.outside == []
