"""Beyond the seed six in a real browser: a tiny random Llama (grouped-query attention, rotary positions,
a byte-level BPE tokenizer) and a tiny random ModernBERT (alternating global / local attention) opened on
every page of `lmscope app`, network blocked (fixtures in conftest.py: every request not to 127.0.0.1 is
aborted, and no exception box may be shown).

Each page must draw its own content for the model, or say plainly why the model cannot show it (a masked
LM on the Generation page, a decoder on the Masked LM page).

    pytest -m browser tests/app/test_browser_families.py    (skipped without /usr/bin/chromium or playwright)
"""
from __future__ import annotations

import re

import pytest

from browser_helpers import open_page
from tiny_families import build_family

pytestmark = pytest.mark.browser

TEXT = "the quick brown fox jumps over the lazy dog"
MODELS = ("llama", "modernbert")


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("families_demo")
    for name in MODELS:
        build_family(name, root)
    return root


@pytest.fixture(autouse=True)
def _patient(page):
    """The first visit of a page loads its model in the server (the engine import included): on a busy
    machine that takes longer than playwright's default 30 s navigation timeout."""
    page.set_default_navigation_timeout(180_000)
    page.set_default_timeout(120_000)


@pytest.fixture(autouse=True, scope="module")
def _patient_expect():
    from playwright.sync_api import expect

    expect.set_options(timeout=120_000)
    yield
    expect.set_options(timeout=5_000)


def _main(page):
    return page.get_by_test_id("stMain")


def _chart(page, key: str, timeout: float = 60_000) -> None:
    page.wait_for_function("""(key) => { const d = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
        return !!d && !!d.querySelector('.main-svg'); }""", arg=key, polling="raf", timeout=timeout)


@pytest.mark.parametrize("name", MODELS)
def test_models_page(page, server, name):
    from playwright.sync_api import expect

    open_page(page, server, "models", model=f"demo/{name}")
    main = _main(page)
    expect(main.get_by_role("heading", name=f"demo/{name}", exact=True)).to_be_visible(timeout=300_000)
    task = "causal-lm" if name == "llama" else "masked-lm"
    expect(main.locator("p", has_text="Task:").first).to_contain_text(task, timeout=60_000)


@pytest.mark.parametrize("name", MODELS)
def test_tokenization_page(page, server, name):
    from playwright.sync_api import expect

    open_page(page, server, "tokenization", model=f"demo/{name}", text=TEXT, models=f"demo/{name}")
    expect(_main(page).get_by_role("heading", name="Tokenization")).to_be_visible(timeout=300_000)
    # (the tiny byte-level BPE cuts "quick" into letters: wait for the pieces' caption, not a word)
    expect(_main(page).get_by_text("tokens (ids beneath each piece)", exact=False).first).to_be_visible(timeout=60_000)


@pytest.mark.parametrize("name", MODELS)
def test_attention_page(page, server, name):
    from playwright.sync_api import expect

    open_page(page, server, "attention", model=f"demo/{name}", text=TEXT)
    _chart(page, "fig_attention-heatmap", 120_000)
    _chart(page, "fig_attention-all-heads")
    main = _main(page)
    expect(main.get_by_text("Blank cells are masked")).to_be_visible()
    if name == "llama":  # 4 query heads share 2 key/value heads
        expect(main.get_by_text(re.compile(r"Grouped-query attention: 4 query heads share 2"))).to_be_visible()


@pytest.mark.parametrize("name", MODELS)
def test_masked_lm_page(page, server, name):
    from playwright.sync_api import expect

    text = "the quick brown [MASK] jumps" if name == "modernbert" else TEXT
    open_page(page, server, "masked_lm", model=f"demo/{name}", text=text)
    main = _main(page)
    if name == "modernbert":
        expect(main.locator(".js-plotly-plot").first).to_be_visible(timeout=120_000)
    else:
        expect(main.get_by_text("masked-token predictions", exact=False).first).to_be_visible(timeout=120_000)


@pytest.mark.parametrize("name", MODELS)
def test_generation_page(page, server, name):
    from playwright.sync_api import expect

    open_page(page, server, "generation", model=f"demo/{name}", text="the quick brown", new_tokens="4")
    main = _main(page)
    if name == "llama":
        expect(main.locator(".js-plotly-plot").first).to_be_visible(timeout=120_000)
    else:
        expect(main.get_by_text("next-token predictions and generation", exact=False).first).to_be_visible(timeout=120_000)


def test_compare_page(page, server):
    from playwright.sync_api import expect

    open_page(page, server, "compare", model="demo/modernbert", model2="demo/llama", text=TEXT)
    expect(_main(page).locator(".js-plotly-plot").first).to_be_visible(timeout=120_000)


@pytest.mark.parametrize("name", MODELS)
def test_export_and_train_pages_open(page, server, name):
    from playwright.sync_api import expect

    open_page(page, server, "export", model=f"demo/{name}", text=TEXT)
    expect(_main(page).get_by_role("heading").first).to_be_visible(timeout=120_000)
    page.wait_for_function("() => document.querySelector('[data-testid=stApp]').dataset.testScriptState === 'notRunning'",
                           timeout=120_000)
    open_page(page, server, "train")
    expect(_main(page).get_by_role("heading").first).to_be_visible(timeout=60_000)


@pytest.mark.parametrize("name", MODELS)
def test_beyond_attention_pages(page, server, name):
    """Neurons (the feed-forward block found from the model's structure), Projector and Corpus search draw for
    both families."""
    open_page(page, server, "neurons", model=f"demo/{name}", text=TEXT, k="3", ffn_layer="1")
    _chart(page, "fig_neuron-components", timeout=300_000)
    open_page(page, server, "projector", model=f"demo/{name}", data="toyworld", tokens="300", layer="1")
    page.locator(".st-key-fig_projector .scatterlayer .point").first.wait_for(timeout=300_000)
    open_page(page, server, "corpus_search", model=f"demo/{name}", data="toyworld", tokens="600", query=TEXT,
              token="2", layer="1")
    _main(page).get_by_text("Tokens nearest to").first.wait_for(timeout=300_000)


@pytest.mark.parametrize("name", MODELS)
def test_probes_and_finetune_pages(page, server, name):
    from playwright.sync_api import expect

    open_page(page, server, "probes", model=f"demo/{name}", probes="50")
    expect(_main(page).get_by_text(re.compile("no attractor|cuts the verb forms")).first).to_be_visible(timeout=300_000)
    open_page(page, server, "finetune", model=f"demo/{name}")
    expect(_main(page).get_by_role("combobox", name="Base model")).to_have_value(f"demo/{name}")
    expect(_main(page).get_by_label("Steps")).to_be_visible()
