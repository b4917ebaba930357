"""app/figures/text.py: one way to show a token, escaped for its context. A token spelled with a double quote
shows as a quote in the figures' labels (plotly shows the entity `&quot;` as is)."""
from __future__ import annotations

import json

from app.figures import attention, beyond, finetune, tokenization
from app.figures.text import attr, esc, show_token, token_label, unique
from model.classify import Prediction as ClassPrediction
from model.inspect import inspect


def test_small_helpers():
    assert show_token("Ġthe") == "␣the" and show_token("") == "∅" and token_label("<i>") == "&lt;i&gt;"
    assert unique(["a", "a", "b"]) == ["a", "a\u200b", "b"]
    assert esc('"<b>"') == '"&lt;b&gt;"' and attr('"<b>"') == "&quot;&lt;b&gt;&quot;"


def _labels(fig) -> list[str]:
    """Every string of the figure's JSON: axis categories, texts, hover texts, titles."""
    out = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(json.loads(fig.to_json()))
    return out


def test_a_token_with_a_double_quote_shows_as_a_quote(models):
    insp = inspect(models["gpt2"], 'the cat said "run" now')
    quoted = [t.text for t in insp.tokens if '"' in t.text]
    assert quoted  # byte-level BPE keeps the quote in a token of its own or with its neighbour
    figs = [attention.attention_heatmap(insp, 0, 0), attention.head_lines(insp, 0, 0),
            tokenization.tokenization_figure([('say "m"', insp.text, insp.tokens)]),
            beyond.saliency_figure(insp.tokens, [0.1] * len(insp.tokens), "why"),
            finetune.class_probs_figure([ClassPrediction('"sport"', 0.6), ClassPrediction("cooking", 0.4)]),
            finetune.confusion_figure([[1, 0], [0, 1]], ['"sport"', "cooking"])]
    for fig in figs:
        labels = _labels(fig)
        assert not any("&quot;" in s for s in labels), [s for s in labels if "&quot;" in s][:3]
        assert any('"' in s for s in labels)
    heat = json.loads(figs[0].to_json())["data"][0]
    assert [x.split(" ", 1)[1] for x in heat["x"] if '"' in x] == quoted
