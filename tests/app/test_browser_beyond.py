"""The views beyond attention in a real browser (Debian chromium + playwright), on the demo models, offline
(every request not to 127.0.0.1 aborted; the `page` fixture asserts none was made and no exception box shows).

Each test opens a page by URL, waits for what only that state draws (a figure with its title / rows /
points), drives one control and waits for what only the new state draws, and checks the URL followed.

    pytest -m browser tests/app/test_browser_beyond.py    (skipped without chromium, playwright or assets/models)
"""
from __future__ import annotations

from pathlib import Path

import pytest

from browser_helpers import open_page, page_url, shipped_models

pytestmark = pytest.mark.browser

MASKED = "the dogs near the cat [MASK] quickly ."
AGREEMENT = "the dogs near the cat run quickly ."

# The plotly figure keyed `key` is drawn (its SVG exists), its title starts with `title`, and its first
# trace has `rows` rows (y values; null = any).
FIGURE = """([key, title, rows]) => {
  const d = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
  if (!d || !d.querySelector('.main-svg') || !d.data || !d.data[0]) return false;
  const t = d.querySelector('.gtitle');
  if (!t || !t.textContent.startsWith(title)) return false;
  return rows === null || (d.data[0].y && d.data[0].y.length === rows); }"""
# The projector's scatter: at least n points drawn (SVG markers), `traces` traces (null = any).
SCATTER = """([n, traces]) => {
  const d = document.querySelector('.st-key-fig_projector .js-plotly-plot');
  if (!d || !d.data) return false;
  return d.querySelectorAll('.scatterlayer .point').length >= n && (traces === null || d.data.length === traces); }"""


@pytest.fixture(scope="module")
def demo_models() -> Path:
    return shipped_models("bert", "gpt2")


@pytest.fixture(scope="module")
def server(demo_models, tmp_path_factory):
    """`lmscope app` on the demo models (as conftest's), given up to 4 minutes to start: these pages load
    several models and run Captum, UMAP and NMF on a machine other jobs share."""
    import sys

    from app.launch import serving
    from browser_helpers import ROOT, need_browser

    need_browser()
    tmp = tmp_path_factory.mktemp("app")
    env = {"LMSCOPE_DEMO_MODELS": str(demo_models), "LMSCOPE_RUNS": str(tmp / "runs")}
    argv = lambda port: [sys.executable, "-m", "app.cli", "app", "--host", "127.0.0.1", "--port", str(port)]  # noqa: E731
    with serving(argv, env, cwd=ROOT, log=tmp / "app.log", timeout=240) as (url, _):
        yield url


def wait_figure(page, key: str, title: str, rows: int | None = None, timeout: float = 480) -> None:
    page.wait_for_function(FIGURE, arg=[key, title, rows], polling="raf", timeout=timeout * 1000)


def pick_radio(page, key: str, label: str) -> None:
    page.locator(f".st-key-{key}").get_by_text(label, exact=True).click()


def test_masked_lm_saliency_strip_follows_the_method(page, server):
    open_page(page, server, "masked_lm", model="demo/bert", text=MASKED)
    wait_figure(page, "fig_saliency", "integrated gradients: log p(", 1)
    page.get_by_text("the scores sum to the difference").wait_for(timeout=240_000)
    pick_radio(page, "qp_saliency", "grad x input")
    wait_figure(page, "fig_saliency", "grad x input: log p(", 1)
    assert "saliency=grad+x+input" in page_url(page, "saliency=")


def test_attention_token_shows_saliency_beside_attention_and_links_to_search(page, server):
    open_page(page, server, "attention", model="demo/gpt2", text=AGREEMENT, token="4")
    wait_figure(page, "fig_attention-saliency", "integrated gradients: log p(")
    assert "after token 4" in page.locator(".st-key-fig_attention-saliency .gtitle").text_content()
    page.get_by_text("in a corpus (corpus search)").wait_for(timeout=240_000)


def test_neurons_components_follow_k(page, server):
    open_page(page, server, "neurons", model="demo/gpt2", text=AGREEMENT, k="3", ffn_layer="2")
    wait_figure(page, "fig_neuron-components", "NMF components of the feed-forward activations (layer 2)", 3)
    slider = page.locator(".st-key-qp_k").get_by_role("slider")
    slider.focus()
    slider.press("ArrowRight")
    wait_figure(page, "fig_neuron-components", "NMF components", 4)
    assert "k=4" in page_url(page, "k=4")


def test_projector_draws_the_points_and_recolours(page, server):
    open_page(page, server, "projector", model="demo/bert", data="toyworld", tokens="1000", layer="2", point="3")
    page.wait_for_function(SCATTER, arg=[1000, None], polling="raf", timeout=480_000)
    page.get_by_text("Open this text on the Attention page").wait_for(timeout=240_000)
    pick_radio(page, "qp_color", "position")
    page.wait_for_function(SCATTER, arg=[1000, 1], polling="raf", timeout=480_000)
    assert "color=position" in page_url(page, "color=position")


def test_corpus_search_lists_hits_and_switches_metric(page, server):
    open_page(page, server, "corpus_search", model="demo/bert", data="english", tokens="600", query=AGREEMENT,
              token="2", layer="3")
    page.get_by_text("Tokens nearest to").wait_for(timeout=480_000)
    page.get_by_text("cosine similarity, exact").wait_for(timeout=240_000)
    page.locator("[data-testid=stDataFrame]").first.wait_for(timeout=240_000)  # its JS chunk loads lazily
    pick_radio(page, "qp_metric", "l2")
    page.get_by_text("L2 distance, exact").wait_for(timeout=480_000)
    assert "metric=l2" in page_url(page, "metric=l2")
