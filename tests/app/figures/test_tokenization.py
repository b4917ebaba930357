"""app/figures/tokenization.py on the real tokenizers of tiny random models."""
from __future__ import annotations

from app.figures import tokenization as F
from app.figures.text import token_label
from figure_helpers import spec, values
from model.inspect import encode


# Tokenization figures


def test_tokenization_figure_aligns_pieces_on_characters(models):
    text = "unbelievable tokenization, été 😀"
    rows = [(name, text, encode(models[name], text).tokens) for name in ("bert-mlm", "gpt2", "albert-pretraining")]
    s = spec(F.tokenization_figure(rows))
    bars = [tr for tr in s["data"] if tr["type"] == "bar"]
    for name, _, tokens in rows:
        mine = [tr for tr in bars if tr["name"].startswith(name + " ")]
        got = sorted((float(b), float(w), t) for tr in mine for b, w, t in zip(values(tr["base"]), values(tr["x"]), tr["text"])
                     if not tr["name"].endswith("special"))
        want = sorted((float(t.start), float(max(t.end - t.start, 0.3)), token_label(t.text, raw=True)) for t in tokens if not t.special)
        assert got == want
        for tr in mine:
            if tr["name"].endswith("special"):
                bases = values(tr["base"])
                assert ((bases + values(tr["x"]) <= 0) | (bases >= len(text))).all()  # outside the text
    unknown = [tr for tr in bars if tr["name"].endswith("unknown")]
    assert unknown and all(tr["marker"]["color"] == F.UNK_COLOR for tr in unknown)
    assert s["layout"]["yaxis"]["categoryarray"][-1] == "input"


def test_tokenization_stats_and_pieces(models):
    text = "hello world, unbelievable tokenization été"
    rows = [(name, text, encode(models[name], text).tokens) for name in ("bert-mlm", "gpt2")]
    stats = F.tokenization_stats(rows).set_index("model")
    for name, _, tokens in rows:
        pieces = [t for t in tokens if not t.special]
        assert stats.loc[name, "tokens"] == len(pieces)
        assert stats.loc[name, "chars / token"] == round(len(text) / len(pieces), 2)
    assert stats.loc["gpt2", "special"] == 0 and stats.loc["bert-mlm", "special"] == 2
    bert_html, gpt_html = F.tokens_html(rows[0][2]), F.tokens_html(rows[1][2])
    assert "##" in bert_html and "Ġ" in gpt_html  # markers stay visible
    assert all(f"<small>{t.id}</small>" in gpt_html for t in rows[1][2])
