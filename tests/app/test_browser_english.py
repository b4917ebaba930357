"""The real-English demo models (demo/en-bert, demo/en-gpt2) on every page of the app (the beyond-attention,
probes and fine-tune pages included), in a real browser,
fully offline (fixtures in conftest.py: requests not to 127.0.0.1 are aborted, no exception box allowed).

Each page is opened on an ordinary English sentence and must draw what it is about; the picker shows the
model's group and line; the Tokenization page warns that the toy-world BERT cannot read the sentence and
names demo/en-bert; a 300-token text is read whole (no truncation warning) by the English models.
Skipped without the shipped models (assets/models/en-bert, en-gpt2, bert, gpt2).

    pytest -m browser tests/app/test_browser_english.py
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from browser_helpers import open_page, shipped_models
from model.train.english_probes import PARAGRAPH

pytestmark = pytest.mark.browser

NEEDED = ("en-bert", "en-gpt2", "bert", "gpt2")
SENTENCE = "Last summer my sister and I took the train to the coast."
MASKED = "paris is the capital of [MASK] ."
PROMPT = "Paris is the capital of"
CHART_DRAWN = """([key, layer, count]) => {
  const d = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
  return !!d && !!d.querySelector('.main-svg') && d.querySelectorAll(layer).length >= count; }"""


@pytest.fixture(scope="module")
def demo_models() -> Path:
    return shipped_models(*NEEDED)


def wait_chart(page, key: str, layer: str = ".trace", count: int = 1, timeout: float = 60) -> None:
    page.wait_for_function(CHART_DRAWN, arg=[key, layer, count], polling="raf", timeout=timeout * 1000)


def no_truncation(page) -> None:
    assert page.get_by_text(re.compile("truncated after character")).count() == 0


def test_models_page_groups_the_english_models(page, server):
    from playwright.sync_api import expect

    open_page(page, server, "models", model="demo/en-bert")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name="demo/en-bert", exact=True)).to_be_visible(timeout=90_000)
    side = page.get_by_test_id("stSidebar")
    expect(side.get_by_text("real English", exact=False).first).to_be_visible()
    side.get_by_text("What the demo models know").click()
    expect(side.get_by_text("Toy world", exact=False).first).to_be_visible()


def test_tokenization_reads_english_and_points_away_from_the_toy_model(page, server):
    from playwright.sync_api import expect

    open_page(page, server, "tokenization", model="demo/en-bert", text=SENTENCE,
              models="demo/en-bert,demo/en-gpt2,demo/bert")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text(re.compile(r"^demo/en-bert — \d+ tokens"))).to_be_visible(timeout=90_000)
    expect(main.get_by_text(re.compile(r"^demo/en-gpt2 — \d+ tokens"))).to_be_visible()
    wait_chart(page, "fig_tokenization")
    warning = main.get_by_text(re.compile(r"outside demo/bert's vocabulary.*use demo/en-bert"))
    expect(warning).to_be_visible()
    assert main.get_by_text(re.compile(r"outside demo/en-(bert|gpt2)'s vocabulary")).count() == 0


def test_attention_page_on_en_bert_reads_300_tokens_whole(page, server):
    from playwright.sync_api import expect

    text = " ".join([PARAGRAPH] * 2)  # ~300 pieces for en-bert
    open_page(page, server, "attention", model="demo/en-bert", text=text)
    wait_chart(page, "fig_attention-heatmap", ".hm image, .heatmaplayer image", 1, timeout=120)
    expect(page.get_by_test_id("stMain").get_by_role("heading", name="Attention").first).to_be_visible()
    no_truncation(page)


def test_masked_lm_page_on_en_bert_predicts_the_mask(page, server):
    open_page(page, server, "masked_lm", model="demo/en-bert", text=MASKED, topk="5")
    wait_chart(page, "fig_masked-lm-6", ".barlayer .point", 5, timeout=90)


def test_generation_page_on_en_gpt2_continues_a_prompt(page, server):
    from playwright.sync_api import expect

    open_page(page, server, "generation", model="demo/en-gpt2", text=PROMPT, new_tokens="3", beams="3")
    wait_chart(page, "fig_sampling-stages", ".barlayer .point", 5, timeout=90)
    page.get_by_role("tab", name="Greedy vs sampling vs beam").click()
    page.get_by_role("button", name="Generate with all three").click()
    expect(page.get_by_test_id("stMain").get_by_text("Beam search (3 beams)")).to_be_visible(timeout=90_000)


def test_compare_page_reads_english_with_both_models(page, server):
    from playwright.sync_api import expect

    open_page(page, server, "compare", model="demo/en-bert", model2="demo/en-gpt2", text=SENTENCE)
    wait_chart(page, "fig_compare-aligned", ".trace", 2, timeout=120)
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text("demo/en-bert (masked LM, PLL)", exact=False).first).to_be_visible()
    expect(main.get_by_text("demo/en-gpt2 (causal LM)", exact=False).first).to_be_visible()


def test_export_and_train_pages_open_on_the_english_models(page, server):
    from playwright.sync_api import expect

    open_page(page, server, "export", model="demo/en-bert", text=SENTENCE)
    expect(page.get_by_role("heading", name="Export to ONNX")).to_be_visible(timeout=90_000)
    expect(page.get_by_test_id("stSidebar").get_by_text("real English", exact=False).first).to_be_visible()
    open_page(page, server, "train", model="demo/en-gpt2")
    expect(page.get_by_role("heading", name="Train a small model")).to_be_visible(timeout=90_000)


def test_beyond_attention_pages_read_english(page, server):
    """Neurons, Projector and Corpus search on the English models and English text (the pages added after the
    first eight: they must draw on these models too)."""
    open_page(page, server, "neurons", model="demo/en-gpt2", text=PARAGRAPH, k="3", ffn_layer="1")
    wait_chart(page, "fig_neuron-components", ".hm image, .heatmaplayer image", 1, timeout=300)
    no_truncation(page)
    open_page(page, server, "projector", model="demo/en-bert", data="english", tokens="500", layer="4")
    wait_chart(page, "fig_projector", ".scatterlayer .point", 500, timeout=300)
    open_page(page, server, "corpus_search", model="demo/en-bert", data="english", tokens="600", query=SENTENCE,
              token="2", layer="4")
    page.get_by_text("Tokens nearest to").wait_for(timeout=300_000)
    page.get_by_text("cosine similarity, exact").wait_for(timeout=300_000)


def test_probes_and_finetune_pages_open_on_the_english_models(page, server):
    from playwright.sync_api import expect

    open_page(page, server, "probes", model="demo/en-gpt2", probes="50")
    main = page.get_by_test_id("stMain")
    # en-gpt2 reads the toy world's words: either per-kind scores, or the message that its tokens cut the verbs
    expect(main.get_by_text(re.compile("no attractor|cuts the verb forms")).first).to_be_visible(timeout=300_000)
    open_page(page, server, "finetune", model="demo/en-bert")
    expect(main.get_by_label("Steps")).to_be_visible(timeout=120_000)
    expect(main.get_by_role("combobox", name="Base model")).to_have_value("demo/en-bert")
    expect(main.get_by_text("real English", exact=True).first).to_be_visible()
