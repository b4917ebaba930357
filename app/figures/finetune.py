"""Figures of the Fine-tune page. Pure functions: results of model/ (events, records, HeadShift,
predictions) -> plotly figures or tables; no Streamlit, no torch.

    >>> [list(r) for r in confusion_figure([[5, 1], [0, 6]], ["cooking", "sport"]).data[0].z]
    [[5, 1], [0, 6]]
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go

from app.figures.attention import layer_head_grid
from app.figures.style import BASE_FONT
from app.figures.text import esc
from model.classify import Prediction as ClassPrediction

if TYPE_CHECKING:  # model.finetune_compare imports torch; the page imports this module before the engine
    from model.finetune_compare import HeadShift

ACC_COLOR, BASE_COLOR = "#2171b5", "#7f7f7f"


def heldout_figure(events: Sequence[dict], baseline: float | None, key: str = "accuracy",
                   title: str = "held-out accuracy") -> go.Figure:
    """A held-out metric (accuracy, agreement or perplexity) at every evaluation; the majority-class baseline
    (or the teacher's perplexity) as a dashed line."""
    evals = [e for e in events if e.get("type") == "eval" and key in e]
    fig = go.Figure(go.Scatter(x=[e["step"] for e in evals], y=[e[key] for e in evals], mode="lines+markers",
                               name=title, line=dict(color=ACC_COLOR, width=2)))
    if baseline is not None:
        fig.add_hline(y=baseline, line_dash="dash", line_color=BASE_COLOR,
                      annotation_text="majority class" if key == "accuracy" else "teacher", annotation_position="bottom right")
    total = next((e.get("total_steps") for e in reversed(events) if e.get("total_steps")), None)
    yaxis = dict(title=title, range=[0, 1.02]) if key in ("accuracy", "agreement") else dict(title=title)
    fig.update_layout(height=300, margin=dict(t=30, b=30, l=50, r=10), xaxis=dict(title="step", range=[0, total] if total else None),
                      yaxis=yaxis, showlegend=False)
    return fig


def confusion_figure(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> go.Figure:
    """Rows: the true label; columns: the predicted one; each cell's count written in it."""
    names = [esc(x) for x in labels]
    fig = go.Figure(go.Heatmap(z=[list(r) for r in confusion], x=names, y=names, colorscale="Blues", showscale=False,
                               text=[[str(v) for v in r] for r in confusion], texttemplate="%{text}",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z} examples<extra></extra>"))
    side = 60 + 40 * len(labels)
    fig.update_layout(title="confusion matrix (held out)", height=min(700, side + 120), margin=dict(t=40, b=40, l=80, r=10),
                      xaxis=dict(title="predicted", side="bottom"), yaxis=dict(title="true", autorange="reversed"))
    return fig


def class_probs_figure(preds: Sequence[ClassPrediction], title: str = "") -> go.Figure:
    """Every label's probability for one text, most probable first."""
    fig = go.Figure(go.Bar(x=[esc(p.label) for p in preds], y=[p.prob for p in preds],
                           marker_color=[ACC_COLOR] + ["#9ecae1"] * (len(preds) - 1),
                           hovertemplate="%{x}: p = %{y:.4f}<extra></extra>"))
    fig.update_layout(title=esc(title) or None, height=260, margin=dict(t=40 if title else 10, b=20, l=40, r=10),
                      yaxis=dict(title="p", range=[0, 1]))
    return fig


def head_shift_grid(shift: HeadShift, font_size: int = BASE_FONT) -> go.Figure:
    """The all-heads grid of |fine-tuned - base| attention: a darker tile moved more (all tiles share one
    scale); the head that moved most is outlined."""
    top = shift.ranking[0][:2] if shift.ranking else None
    fig = layer_head_grid(shift.diff_thumbs, selected=top, font_size=font_size)
    fig.update_layout(title_text=f"How each head's attention changed (|fine-tuned - base|, darkest = {shift.max_diff:.2f})")
    return fig


def shift_table(shift: HeadShift, top: int = 8) -> pd.DataFrame:
    """The heads that moved most: layer, head, mean total-variation distance of their attention rows."""
    return pd.DataFrame([{"layer": l_, "head": h, "moved (0-1)": round(v, 4)} for l_, h, v in shift.ranking[:top]])


def record_table(record: dict) -> pd.DataFrame:
    """A finished run's headline numbers from its training_record.json, as (what, value) rows."""
    rows = []
    h = record.get("heldout") or {}
    if record.get("task") == "classify":
        rows += [("held-out accuracy", f"{h.get('accuracy', float('nan')):.3f}"),
                 ("majority-class baseline", f"{record['majority_baseline']:.3f} ({record['majority_label']})"),
                 ("train / held-out examples", f"{record['train_examples']} / {record['heldout_examples']}")]
    elif record.get("task") == "lm":
        rows += [("held-out perplexity before", f"{record['heldout_before']['perplexity']:.2f}"),
                 ("held-out perplexity after", f"{h.get('perplexity', float('nan')):.2f}")]
    elif record.get("task") == "distill":
        sp = record.get("speed") or {}
        rows += [("student perplexity", f"{h.get('perplexity', float('nan')):.2f}"),
                 ("teacher perplexity", f"{record['teacher_heldout']['perplexity']:.2f}"),
                 ("top-1 agreement with the teacher", f"{h.get('agreement', float('nan')):.3f}"),
                 ("parameters teacher / student", f"{record['teacher_parameters']:,} / {record['student_parameters']:,}"),
                 ("tokens/s teacher / student", f"{sp.get('teacher_tokens_per_s', 0):,.0f} / "
                                                f"{sp.get('student_tokens_per_s', 0):,.0f} ({sp.get('speedup', 0):.2f}x)")]
    rows += [("steps", str(record.get("steps"))), ("trainable / all parameters",
             f"{record.get('trainable_parameters', 0):,} / {record.get('parameters', 0):,}"),
             ("wall time", f"{record.get('wall_time_s', 0):.1f} s")]
    return pd.DataFrame(rows, columns=["", "value"])
