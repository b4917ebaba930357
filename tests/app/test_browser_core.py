"""The core pages in a real browser (Debian chromium + playwright), fully offline: every request that is
not to 127.0.0.1 is aborted. Proves what AppTest cannot: the plotly figures and bertviz's views are
really drawn, user text never runs as script, and the URL follows the controls.

Run with `pytest -m browser tests/app/test_browser_core.py` (skipped without /usr/bin/chromium).
"""
from __future__ import annotations

import time
import urllib.parse

import pytest

pytestmark = pytest.mark.browser

# Fixtures `server` (`lmscope app` on the tiny test models), `browser` and `page` (offline: requests not
# to 127.0.0.1 are aborted; no exception box at the end) come from tests/app/conftest.py.


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
