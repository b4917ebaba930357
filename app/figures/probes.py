"""Figures for the Agreement probes page: pure functions from `model.probes.AgreementResult` (read by its
fields: groups, accuracy, counts, examples) to plotly figures and tables. No Streamlit, no torch.

    >>> import numpy as np
    >>> from types import SimpleNamespace as R
    >>> r = R(model="m", groups=("all", "none", "same"), accuracy=np.array([0.8, 1.0, np.nan]), counts=np.array([5, 5, 0]))
    >>> fig = agreement_figure(r)
    >>> list(fig.data[0].x), [round(float(v), 1) for v in fig.data[0].y][:2]
    (['all', 'none', 'same'], [80.0, 100.0])
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from app.figures.style import BASE_FONT

# what each row means, for the table and the hover text
GROUP_LABELS = {
    "all": "all probes",
    "none": "no noun between subject and verb",
    "same": "attractor of the subject's number",
    "opposite": "attractor of the other number",
    "preposition": "attractor in a prepositional phrase",
    "relative": "attractor in a relative clause",
    "same/preposition": "same number, prepositional phrase",
    "same/relative": "same number, relative clause",
    "opposite/preposition": "opposite number, prepositional phrase",
    "opposite/relative": "opposite number, relative clause",
}
COLORS = {"all": "#7f7f7f", "none": "#2ca02c", "same": "#d62728", "opposite": "#1f77b4"}
CHANCE = 50.0  # two verb forms: a coin scores 50%


def _color(group: str) -> str:
    return COLORS.get(group.split("/")[0], "#9467bd")


def agreement_table(result) -> list[dict]:
    """One row per probe group: kind, what it means, accuracy in % (None without probes), probes."""
    return [{"kind": g, "meaning": GROUP_LABELS.get(g, g), "agreement %": None if c == 0 else round(100 * float(a), 1),
             "probes": int(c)} for g, a, c in zip(result.groups, result.accuracy, result.counts)]


def agreement_figure(result, font_size: int = BASE_FONT) -> go.Figure:
    """Bars of agreement (%) per probe group, a dashed line at chance (50%); groups without probes have no
    bar (NaN, never drawn as 0)."""
    acc = np.asarray(result.accuracy, dtype=float) * 100
    groups = list(result.groups)
    fig = go.Figure(go.Bar(
        x=groups, y=acc, marker_color=[_color(g) for g in groups], name="agreement",
        text=["" if np.isnan(a) else f"{a:.0f}%" for a in acc], textposition="outside",
        customdata=np.stack([[GROUP_LABELS.get(g, g) for g in groups], [int(c) for c in result.counts]], axis=1),
        hovertemplate="%{customdata[0]}<br>%{y:.1f}% of %{customdata[1]} probes<extra></extra>"))
    fig.add_hline(y=CHANCE, line_dash="dash", line_color="#999999", annotation_text="chance",
                  annotation_position="bottom right")
    fig.update_layout(title=f"Subject-verb agreement of {result.model} per probe kind", height=420,
                      yaxis=dict(title="right verb form preferred (%)", range=[0, 112]), xaxis=dict(title="probe kind"),
                      font=dict(size=font_size), margin=dict(t=60, b=40), showlegend=False)
    return fig


def examples_table(result) -> list[dict]:
    """One row per example probe: its kind, the sentence, the two forms with their scores (log p) and the
    form the model prefers."""
    return [{"kind": e.kind, "sentence": e.sentence, "prefers": e.preferred, "right": e.ok,
             "score of the right form": round(e.correct_score, 2), "right form": e.correct,
             "score of the wrong form": round(e.wrong_score, 2), "wrong form": e.wrong} for e in result.examples]
