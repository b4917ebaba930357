"""The app as a lecturer meets it, in a real browser (Debian chromium + playwright, offline; fixtures in
conftest.py), on the shipped demo models (assets/models; skipped without them):

- the first screen of the main pages, opened with no query string: the model the page suits and a text it
  reads (Masked LM with a mask already in it: predictions, no "No mask in the input");
- lecture mode on a 1280 x 720 projector: no horizontal scrolling (the window's and Streamlit's own scroll
  box), no figure title cut at the figure's edge or over its tick labels and axis titles, navigation labels
  and tabs whole, figures taller than in normal mode, and Generation's stage chart starting on the first
  screen.

    pytest -m browser tests/app/test_browser_firstscreen.py
"""
from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from browser_helpers import open_page, page_url, shipped_models

pytestmark = pytest.mark.browser

PROJECTOR = {"width": 1280, "height": 720}
# page -> the key of the figure its first screen draws
FIRST = {
    "masked_lm": "fig_masked-lm-6",  # "the dog near the cats [MASK] ." : the mask is token 6 ([CLS] first)
    "generation": "fig_sampling-stages",
    "attention": "fig_attention-heatmap",
}
FIGURE_DRAWN = """(key) => { const d = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
  return !!d && !!d.querySelector('.main-svg') && d.querySelectorAll('.trace, .hm image, .heatmaplayer image').length > 0; }"""
# What must not scroll sideways or be cut: [window scrollWidth, innerWidth, stMain scrollWidth, its clientWidth,
# navigation labels cut (text wider than its box), tab lists that scroll].
FITS = """() => {
  const main = document.querySelector('[data-testid=stMain]');
  const nav = [...document.querySelectorAll('[data-testid=stSidebarNav] a span')]
    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent);
  const tabs = [...document.querySelectorAll('[data-testid=stTabs] [role=tablist]')]
    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent);
  return [document.scrollingElement.scrollWidth, innerWidth, main.scrollWidth, main.clientWidth, nav, tabs]; }"""
# Every figure's title and annotations: cut at the figure's edge, or overlapping tick labels / axis titles.
TITLES_CLEAR = """() => {
  const out = [];
  const hit = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  for (const d of document.querySelectorAll('.js-plotly-plot')) {
    const box = d.getBoundingClientRect();
    if (box.width == 0) continue;  // in a hidden tab
    const rects = (sel) => [...d.querySelectorAll(sel)].map(e => [e.textContent, e.getBoundingClientRect()])
      .filter(([t, r]) => r.width > 0 && r.height > 0);
    const titles = rects('.gtitle, .annotation-text');
    const others = rects('.xaxislayer-above text, .yaxislayer-above text, .xtitle, .ytitle, .g-xtitle text, .g-ytitle text');
    for (const [t, r] of titles) {
      if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1) out.push(['cut', t]);
      for (const [u, q] of others) if (hit(r, q)) out.push(['overlap', t, u]);
    }
  }
  return out; }"""
FIGURE_BOX = """(key) => { const r = document.querySelector('.st-key-' + key + ' .js-plotly-plot').getBoundingClientRect();
  return [r.top, r.width, r.height]; }"""


@pytest.fixture(autouse=True)
def patient(page):
    """A busy machine (the CI box runs training next to the tests) may take minutes for a first render."""
    page.set_default_navigation_timeout(180_000)
    page.set_default_timeout(120_000)


@pytest.fixture(scope="module")
def demo_models() -> Path:
    return shipped_models("bert", "gpt2")


def wait_figure(page, key: str, timeout: float = 300) -> None:
    """Until the figure keyed `key` is drawn; else fail with what the page shows instead."""
    from playwright.sync_api import TimeoutError

    try:
        page.wait_for_function(FIGURE_DRAWN, arg=key, polling="raf", timeout=timeout * 1000)
    except TimeoutError:
        raise AssertionError(f"no figure {key} on {page.url}: " + page.get_by_test_id("stMain").inner_text()[:600]) from None


def test_first_screens_open_on_the_model_they_suit_with_a_text_it_reads(page, server):
    from playwright.sync_api import expect

    from app import common

    for name, key in FIRST.items():
        open_page(page, server, name)  # no query string
        wait_figure(page, key)
        model = "demo/gpt2" if name == "generation" else "demo/bert"
        assert f"model={urllib.parse.quote(model, safe='')}" in page_url(page, "model="), name  # what the picker chose
        expect(page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model")).to_be_visible()
        kind = {"masked_lm": "mask", "generation": "prompt"}.get(name, "plain")
        expect(page.get_by_test_id("stMain").locator("textarea").first).to_have_value(common.TEXTS["toyworld"][kind], timeout=60_000)
        main_text = page.get_by_test_id("stMain").inner_text()
        assert "No mask" not in main_text and "Cannot load" not in main_text, name
    # Masked LM's first screen: ten predictions under the mask
    open_page(page, server, "masked_lm")
    wait_figure(page, FIRST["masked_lm"])
    labels = page.evaluate("(k) => document.querySelector('.st-key-' + k + ' .js-plotly-plot').data[0].y",
                           FIRST["masked_lm"])
    assert len(labels) == 10 and labels[0].startswith("1. ")


@pytest.mark.parametrize("name", list(FIRST))
def test_lecture_mode_fits_a_1280x720_projector(page, server, name):
    from playwright.sync_api import expect

    key = FIRST[name]
    page.set_viewport_size(PROJECTOR)
    open_page(page, server, name)
    wait_figure(page, key)
    page.wait_for_timeout(500)  # plotly's automargin redraw
    _, normal_width, normal_height = page.evaluate(FIGURE_BOX, key)

    open_page(page, server, name, lecture="1")
    expect(page.get_by_role("switch", name="Lecture mode")).to_be_checked(timeout=180_000)
    page.wait_for_function("(k) => { const d = document.querySelector('.st-key-' + k + ' .js-plotly-plot');"
                           " return !!d && !!d.layout && d.layout.font && d.layout.font.size == 18; }",
                           arg=key, polling="raf", timeout=300_000)
    wait_figure(page, key)
    page.wait_for_timeout(500)
    window_w, inner_w, main_w, main_client, nav_cut, tabs_cut = page.evaluate(FITS)
    assert window_w <= inner_w and main_w <= main_client, (window_w, inner_w, main_w, main_client)  # no sideways scroll
    assert nav_cut == [], nav_cut  # "Compare MLM vs causal", not "Compare MLM v..."
    assert tabs_cut == [], tabs_cut  # Generation's five tabs wrap instead of scrolling
    assert page.evaluate(TITLES_CLEAR) == []
    top, width, height = page.evaluate(FIGURE_BOX, key)
    assert height > normal_height * 1.2, (height, normal_height)  # figures are bigger, not only their type
    assert width >= normal_width, (width, normal_width)
    if name == "generation":  # the distribution chart starts on the first screen, not below the fold
        assert top < PROJECTOR["height"] - 150, top
    if name == "attention":  # its long title is above the figure, where it wraps
        expect(page.locator(".lmscope-figtitle").first).to_contain_text("Layer 0, head 0:")
    assert page.outside == []
