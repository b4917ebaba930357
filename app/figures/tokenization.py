"""Figures of the Tokenization page: several tokenizers' cuts of one text on one character axis, the
coloured pieces with their ids, and the counts per tokenizer. Pieces are shown as the tokenizer spells them
(markers `##`, `Ġ`, `▁` kept): they are what the page explains.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go

from app.figures.text import esc, is_unknown, token_label
from model.results import Token

PIECE_COLORS = ("#c6dbef", "#fdd0a2")  # alternating fill of neighbouring pieces (blue / orange, colour-blind safe)
SPECIAL_COLOR = "#d9d9d9"
SPECIAL_WIDTH = 5.0  # characters of x-axis a special token's box takes outside the text
UNK_COLOR = "#e34a33"


def tokenization_figure(rows: Sequence[tuple[str, str, Sequence[Token]]]) -> go.Figure:
    """Several tokenizers' cuts of one text on one character axis.

    rows: (name, text, tokens) per tokenizer. Each piece is a bar from its first to its last character;
    neighbouring pieces alternate colours, special tokens are grey boxes outside the text (before it or
    after it), unknown tokens red. The top row shows the input's characters.
    """
    fig = go.Figure()
    if not rows:
        return fig
    text = rows[0][1]
    names = ["input"] + [esc(r[0]) for r in rows]
    chars = [(i + 0.5, "␣" if c == " " else ("⏎" if c == "\n" else esc(c))) for i, c in enumerate(text)]
    fig.add_trace(go.Scatter(x=[c[0] for c in chars], y=["input"] * len(chars), text=[c[1] for c in chars],
                             mode="text", showlegend=False, name="input", hovertemplate="char %{x:.0f}<extra></extra>"))
    for name, _, tokens in rows:
        label = esc(name)
        first = _first_real(tokens)
        n_lead = first if first < len(tokens) else 0
        trailing = 0  # specials after the first piece are stacked right of the text
        groups: dict[str, dict[str, list]] = {}
        ordinary = 0
        for i, t in enumerate(tokens):
            if t.special:
                width = SPECIAL_WIDTH
                if i < n_lead:  # leading specials ([CLS], <s>) sit left of character 0
                    start = -0.5 - SPECIAL_WIDTH * (n_lead - i)
                else:
                    start = len(text) + 0.5 + SPECIAL_WIDTH * trailing
                    trailing += 1
                kind = "special"
            else:
                start, width = float(t.start), float(max(t.end - t.start, 0.3))
                kind = "unknown" if is_unknown(t) else f"piece{ordinary % 2}"
                ordinary += 1
            g = groups.setdefault(kind, {"base": [], "x": [], "text": [], "hover": []})
            g["base"].append(start)
            g["x"].append(width)
            g["text"].append(token_label(t.text, raw=True))
            g["hover"].append(f"{token_label(t.text, raw=True)} · id {t.id} · chars {t.start}-{t.end}" + (" · special" if t.special else "")
                              + (" · UNKNOWN" if kind == "unknown" else ""))
        for kind, g in groups.items():
            color = {"special": SPECIAL_COLOR, "unknown": UNK_COLOR, "piece0": PIECE_COLORS[0], "piece1": PIECE_COLORS[1]}[kind]
            fig.add_trace(go.Bar(
                base=g["base"], x=g["x"], y=[label] * len(g["x"]), orientation="h", text=g["text"], textposition="inside",
                insidetextanchor="middle", marker=dict(color=color, line=dict(color="#444", width=1)),
                hovertext=g["hover"], hoverinfo="text", showlegend=False, name=f"{label} {kind}",
                textfont=dict(color="#fff" if kind == "unknown" else "#000"),
            ))
    fig.update_layout(
        barmode="overlay", title="Tokens aligned on the input's characters (grey: special, red: unknown)",
        height=int(110 + 60 * len(names)), margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="white",
        xaxis=dict(title="character", range=[-12, min(len(text), 120) + 8], showgrid=False),
        yaxis=dict(categoryorder="array", categoryarray=names[::-1], type="category"),
        uniformtext=dict(minsize=8, mode="hide"),
    )
    return fig


def _first_real(tokens: Sequence[Token]) -> int:
    return next((i for i, t in enumerate(tokens) if not t.special), len(tokens))


def tokens_html(tokens: Sequence[Token]) -> str:
    """Colored pieces with their ids beneath, markers (`##`, `Ġ`, `▁`) kept; specials grey, unknown red."""
    parts = []
    ordinary = 0
    for t in tokens:
        if t.special:
            bg, fg = SPECIAL_COLOR, "#000"
        elif is_unknown(t):
            bg, fg = UNK_COLOR, "#fff"
        else:
            bg, fg = PIECE_COLORS[ordinary % 2], "#000"
            ordinary += 1
        flag = " (special)" if t.special else (" (unknown)" if is_unknown(t) else "")
        parts.append(
            f'<span title="id {t.id}, chars {t.start}-{t.end}{flag}" style="display: inline-block; text-align: center; '
            f'background: {bg}; color: {fg}; border: 1px solid #444; border-radius: 3px; margin: 2px; padding: 1px 4px; '
            f'font-family: monospace; white-space: pre">{token_label(t.text, raw=True)}<br><small>{t.id}</small></span>'
        )
    return '<div style="line-height: 1.3">' + "".join(parts) + "</div>"


def tokenization_stats(rows: Sequence[tuple[str, str, Sequence[Token]]]) -> pd.DataFrame:
    """Per tokenizer: pieces (specials excluded), special tokens, unknown tokens, characters per piece,
    and pieces per word (words = whitespace-separated)."""
    out = []
    for name, text, tokens in rows:
        pieces = [t for t in tokens if not t.special]
        words = max(1, len(text.split()))
        out.append({
            "model": name, "tokens": len(pieces), "special": len(tokens) - len(pieces),
            "unknown": sum(is_unknown(t) for t in pieces),
            "chars / token": round(len(text) / max(1, len(pieces)), 2),
            "tokens / word": round(len(pieces) / words, 2),
        })
    return pd.DataFrame(out, columns=["model", "tokens", "special", "unknown", "chars / token", "tokens / word"])
