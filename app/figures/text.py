"""How text reaches a figure: one convention for showing a token (`token_label`), escaping per context
(`esc` for plotly labels and HTML text, `attr` for HTML attribute values), shortening labels to fit, and
estimates of their rendered width.

Plotly renders a subset of HTML in labels (`<b>` must stay text) but decodes only a few named entities:
user text is escaped as HTML text, so quotes stay quotes (`&quot;` would be shown as is). Only an HTML
attribute value (`title="..."`) escapes quotes.

    >>> token_label('Ġ<b>"hi"</b>'), token_label("Ġcat", raw=True), attr('say "hi"')
    ('␣&lt;b&gt;"hi"&lt;/b&gt;', 'Ġcat', 'say &quot;hi&quot;')
"""
from __future__ import annotations

import html
import unicodedata
from typing import Sequence

from model.results import Token

UNK_SPELLINGS = ("[UNK]", "<unk>")  # BERT/ALBERT/RoBERTa unknown tokens; byte-level BPE never has one
TICK_CHARS = 14  # longer token tick labels are shortened (the hover text keeps the whole token)


def esc(text: str) -> str:
    """User text escaped once for plotly labels and for HTML element text.

    >>> esc('<b>"hi"</b> & 1')
    '&lt;b&gt;"hi"&lt;/b&gt; &amp; 1'
    """
    return html.escape(text, quote=False)


def attr(text: str) -> str:
    """User text escaped for an HTML attribute value (quotes too)."""
    return html.escape(text, quote=True)


def show_token(piece: str) -> str:
    """A token as text a reader can see: byte-level BPE's `Ġ` space and `Ċ` newline marked, others as is.

    >>> show_token("Ġcat"), show_token("Ċ"), show_token("##ing")
    ('␣cat', '⏎', '##ing')
    """
    return piece.replace("Ġ", "␣").replace("Ċ", "⏎").replace("\n", "⏎").replace("▁", "␣") or "∅"


def token_label(piece: str, raw: bool = False) -> str:
    """A token as every figure shows it, escaped (`esc`): word-start markers and newlines made visible
    (`show_token`), or with `raw` the piece as the tokenizer spells it (`Ġcat`, `##ing`, `▁the`), as the
    Tokenization, Attention and Masked LM pages show the pieces they explain.

    >>> token_label("<b>"), token_label('"'), token_label("Ċ"), token_label("Ġ&", raw=True)
    ('&lt;b&gt;', '"', '⏎', 'Ġ&amp;')
    """
    return esc(piece if raw else show_token(piece))


def token_labels(tokens: Sequence[Token]) -> list[str]:
    """Unique axis labels `"<index> <piece>"` (raw pieces): two `the` tokens must stay two rows of a heatmap.

    >>> token_labels([Token("[CLS]", 101, 0, 0, True), Token("the", 5, 0, 3, False, 0)])
    ['0 [CLS]', '1 the']
    """
    return [f"{i} {token_label(t.text, raw=True)}" for i, t in enumerate(tokens)]


def is_unknown(tok: Token) -> bool:
    return not tok.special and tok.text in UNK_SPELLINGS


def phrase(pieces: str) -> str:
    """Joined token pieces as the text they spell: word-start markers become spaces (the first dropped).

    >>> phrase("ĠsingĠ.Ġthe" + "y")
    'sing . they'
    """
    return pieces.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "⏎").strip() or show_token(pieces)


def unique(labels: Sequence[str]) -> list[str]:
    """Category labels must be unique on a plotly axis: repeat pieces get invisible suffixes (zero-width spaces)."""
    seen: dict[str, int] = {}
    out = []
    for s in labels:
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.append(s + "\u200b" * n)
    return out


def short(piece: str, limit: int = 0) -> str:
    """`show_token`, cut to `limit` characters (TICK_CHARS if 0) with an ellipsis; not escaped.

    >>> short("Ġinternationally", 8)
    '␣intern…'
    """
    s = show_token(piece)
    limit = limit or TICK_CHARS
    return s if len(s) <= limit else s[:max(1, limit - 1)] + "…"


def fit(piece: str, limit: int, room: float, size: float) -> str:
    """`short(piece, k)` for the largest k <= limit whose text fits `room` px at `size` (at least one
    character and the ellipsis): wide (CJK) characters take two narrow ones' room."""
    for k in range(limit, 1, -1):
        s = short(piece, k)
        if text_px(s, size) <= room:
            return s
    return short(piece, 2)


def text_px(text: str, size: float) -> float:
    """A generous estimate of `text`'s rendered width in px at font `size` (plotly's sans-serif): wide
    (CJK) characters 1 em, others 0.62 em (wider than the average Latin letter)."""
    return size * sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.0 if c == "\u200b" else 0.62 for c in text)
