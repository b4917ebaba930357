"""app/figures/generation.py, drawn from real results of tiny models and checked against the numbers they were
drawn from: the sampling stages (and their pixel geometry at both type sizes), the candidates, the step
table, attention over prompt + generated text."""
from __future__ import annotations

import html
import math

import numpy as np
import pytest

from app.figures import generation as F, style
from app.figures.text import TICK_CHARS, short, show_token, token_label
from figure_helpers import PIECES, em_width
from model.generate import SamplingConfig, generate, next_token_distribution
from model.inspect import inspect
from model.results import Prediction

STAGE_NAMES = ["input", "repetition_penalty", "temperature", "top_k", "top_p", "typical_p", "min_p"]


@pytest.fixture(scope="module")
def gpt2(models):
    return models["gpt2"]


def names_of(loaded):
    return lambda ids: loaded.tokenizer.convert_ids_to_tokens(ids)


def rows_of(fig, row_count):
    """Traces grouped by subplot row (xaxis 'x', 'x2', ...)."""
    out = {r: [] for r in range(1, row_count + 1)}
    for tr in fig.data:
        out[int(tr.xaxis[1:] or 1)].append(tr)
    return out


@pytest.mark.parametrize("cfg", [
    dict(temperature=0.7, top_k=5),
    dict(temperature=1.5, top_p=0.5, min_p=0.05),
    dict(repetition_penalty=1.3, typical_p=0.8),
])
def test_stage_figure_matches_the_pipeline(gpt2, cfg):
    stages, _ = next_token_distribution(gpt2, "the dogs near the", SamplingConfig(**cfg))
    fig = F.stage_figure(stages, names_of(gpt2), top_n=12)
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == len(stages) == 1 + len(cfg)
    vocab = len(stages[0].probs)
    for title, s in zip(titles, stages):
        assert f"{s.kept} of {vocab} tokens kept" in title
    by_row = rows_of(fig, len(stages))
    prev = stages[0].probs
    for row, s in enumerate(stages, start=1):
        alive = np.flatnonzero(prev > 0)  # tokens an earlier stage removed are not drawn again
        order = alive[np.argsort(-prev[alive], kind="stable")][:12]
        kept_bar = by_row[row][0]
        assert [int(c[0]) for c in kept_bar.customdata] == order.tolist()
        first = gpt2.tokenizer.convert_ids_to_tokens(int(order[0]))
        assert kept_bar.customdata[0][2] == token_label(first)  # the hover text: the whole token
        assert kept_bar.x[0].replace("\u200b", "") == html.escape(short(first), quote=False)  # the tick: maybe shortened
        np.testing.assert_allclose(kept_bar.y, np.where(s.probs[order] > 0, s.probs[order], 0), rtol=1e-6)
        removed = s.probs[order] == 0
        if removed.any():  # ghosts stand at the probability the token had before this stage
            np.testing.assert_allclose(by_row[row][1].y, np.where(removed, prev[order], 0), rtol=1e-6)
        prev = s.probs
    if "top_k" in cfg:  # top-k keeps a prefix of the ranking: the cut sits after bar k
        assert any(sh.x0 == cfg["top_k"] - 0.5 for sh in fig.layout.shapes)


STAGE_NAMES = ["input", "repetition_penalty", "temperature", "top_k", "top_p", "typical_p", "min_p"]


def synthetic_stages(n: int, vocab: int = 60, seed: int = 0) -> list:
    """`n` pipeline stages over a random distribution, each filter dropping a few of the best tokens'
    tail (so ghosts and cut-off lines appear)."""
    from model.results import FilterStage

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(vocab, 0.3)).astype(np.float32)
    stages = [FilterStage("input", {}, probs, vocab)]
    for i, name in enumerate(STAGE_NAMES[1:n], start=1):
        p = stages[-1].probs.copy()
        p[np.argsort(-p)[15 - i:]] = 0  # keep the best 15 - i
        p /= p.sum()
        stages.append(FilterStage(name, {name: 0.5}, p, int((p > 0).sum())))
    return stages


def synthetic_names(ids):
    return [PIECES[i % len(PIECES)] for i in ids]


def check_stage_geometry(fig, font: int, scale: float = 1.0) -> None:
    """Pixel geometry of a stage chart `scale` times as tall as built (app.common.show makes lecture-mode
    figures 1.4 times taller): every subplot title sits on top of its own axis domain, under the room the
    row above needs for its tick labels (rotated -45 degrees, the most plotly is allowed to turn them),
    the first one under the legend, the last row's labels inside the bottom margin; bars keep real room."""
    titles = fig.layout.annotations
    rows = len(titles)
    height = fig.layout.height * scale
    top, bottom = fig.layout.margin.t, fig.layout.margin.b
    plot = height - top - bottom  # px of the plot area (paper y 0 -> 1)
    line = 1.2  # a line of text, in em

    def tick_room(row: int) -> float:  # px under axis `row` its tick labels may take
        labels = [tr.x for tr in fig.data if (tr.xaxis or "x") == ("x" if row == 1 else f"x{row}")][0]
        widest = max(em_width(t) for t in labels) * font
        return 3 + (widest + line * font) * math.sin(math.radians(45))

    assert tuple(fig.layout.xaxis.autotickangles) == (0, -45)
    assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 1 and fig.layout.legend.yanchor == "top"
    assert top >= line * (font + 2) + line * font + 8  # the legend's line, then row 1's title
    for row, title in enumerate(titles, start=1):
        d0, d1 = fig.layout[f"yaxis{row if row > 1 else ''}"].domain
        assert (d1 - d0) * plot >= 100, f"row {row}: bars squeezed to {(d1 - d0) * plot:.0f} px"
        assert title.yref == "paper" and title.yanchor == "bottom" and title.y == pytest.approx(d1)  # on its own axis
        assert title.font.size == font + 2
        title_top = d1 * plot + line * title.font.size
        if row > 1:
            p0 = fig.layout[f"yaxis{row - 1 if row > 2 else ''}"].domain[0]
            room = p0 * plot - title_top  # px between this title's top and the axis above
            assert room >= tick_room(row - 1) + 2, f"row {row}: title {room:.0f} px under the axis above, " \
                                                  f"its labels need {tick_room(row - 1):.0f}"
        else:
            assert title_top <= plot + top - (line * font + 8)  # under the legend
    assert bottom >= tick_room(rows)


@pytest.mark.parametrize("rows", range(1, 8))
@pytest.mark.parametrize("font", [style.BASE_FONT, style.LECTURE_FONT])
def test_stage_figure_gives_every_row_room_for_its_title_and_labels(rows, font):
    stages = synthetic_stages(rows)
    fig = F.stage_figure(stages, synthetic_names, top_n=15, font_size=font)
    assert len(fig.layout.annotations) == rows
    for scale in (1.0, 1.4):  # as built, and as app.common.show enlarges it in lecture mode
        check_stage_geometry(fig, font, scale)
    ticks = {t.replace("\u200b", "") for tr in fig.data for t in tr.x}
    assert max(len(html.unescape(t)) for t in ticks) <= TICK_CHARS  # long tokens are shortened on the axis...
    for row, traces in rows_of(fig, rows).items():  # ...the hover text keeps them whole (and escaped)
        ids = [int(c[0]) for c in traces[0].customdata]
        whole = [token_label(p) for p in synthetic_names(ids)]
        assert [c[2] for c in traces[0].customdata] == whole
        assert all(list(tr.customdata) == whole for tr in traces[1:])  # the ghosts' hover too
    assert any(len(show_token(p)) > TICK_CHARS for p in synthetic_names(ids))  # the case was exercised
    assert "%{customdata[2]}" in fig.data[0].hovertemplate


def test_stage_figure_geometry_on_the_full_pipeline(gpt2):
    cfg = SamplingConfig(temperature=0.8, top_k=40, top_p=0.9, typical_p=0.95, min_p=0.02, repetition_penalty=1.2)
    stages, _ = next_token_distribution(gpt2, "the dogs near the dogs", cfg)
    assert len(stages) == 7
    for font in (style.BASE_FONT, style.LECTURE_FONT):
        check_stage_geometry(F.stage_figure(stages, names_of(gpt2), font_size=font), font)


def test_stage_geometry_check_catches_a_squeezed_chart():
    """The check above fails on the layout this chart used to have (titles over the labels of the row above)."""
    fig = F.stage_figure(synthetic_stages(2), synthetic_names)
    fig.update_layout(height=380, margin=dict(t=40, b=20))  # the old fixed 190 px per row...
    fig.update_layout(yaxis=dict(domain=[0.56, 1.0]), yaxis2=dict(domain=[0, 0.44]))  # ...and 0.12 spacing
    fig.layout.annotations[0].y, fig.layout.annotations[1].y = 1.0, 0.44
    with pytest.raises(AssertionError):
        check_stage_geometry(fig, style.BASE_FONT)


def test_stage_figure_follows_temperature(gpt2):
    a = F.stage_figure(next_token_distribution(gpt2, "the cat", SamplingConfig(temperature=0.5))[0], names_of(gpt2))
    b = F.stage_figure(next_token_distribution(gpt2, "the cat", SamplingConfig(temperature=2.0))[0], names_of(gpt2))
    ya, yb = a.data[-1].y, b.data[-1].y  # the temperature row
    assert ya[0] > yb[0]  # a colder distribution puts more mass on its best token
    with pytest.raises(ValueError):
        F.stage_figure([], names_of(gpt2))


def test_stage_rows_after_a_cut_show_only_surviving_tokens_escaped_once():
    """After top-k keeps 3 tokens, the next rows draw those 3 (not 12 with zero-probability fillers), and a
    token spelled `"` is written as a quote, not `&quot;` (plotly shows that entity as is)."""
    from model.results import FilterStage

    vocab = 40
    probs = np.linspace(1.0, 0.1, vocab).astype(np.float32)
    probs /= probs.sum()
    top3 = np.where(np.arange(vocab) < 3, probs, 0).astype(np.float32)
    top3 /= top3.sum()
    hot = (top3 ** 2) / (top3 ** 2).sum()
    stages = [FilterStage("input", {}, probs, vocab), FilterStage("top_k", {"top_k": 3}, top3, 3),
              FilterStage("temperature", {"temperature": 0.5}, hot.astype(np.float32), 3)]
    names = lambda ids: ['"' if i == 1 else "<b>" if i == 2 else f"t{i}" for i in ids]  # noqa: E731
    fig = F.stage_figure(stages, names, top_n=12)
    rows = rows_of(fig, 3)
    assert len(rows[1][0].x) == 12 and len(rows[2][0].x) == 12  # the cut row shows what it removed (ghosts)
    assert len(rows[3][0].x) == 3 and len(rows[3]) == 1  # after the cut: the 3 survivors, no ghosts
    assert [t.replace("\u200b", "") for t in rows[3][0].x] == ["t0", '"', "&lt;b&gt;"]
    assert all("&quot;" not in t for tr in fig.data for t in tr.x)
    assert [c[2] for c in rows[3][0].customdata] == ["t0", '"', "&lt;b&gt;"]


def test_step_table_lists_only_alternatives_that_survived_the_filters():
    from model.results import GenerationStep

    step = GenerationStep(pick=Prediction("Ġcat", 5, 0.7),
                          candidates=[Prediction("Ġcat", 5, 0.7), Prediction("Ġdog", 6, 0.3), Prediction("$", 7, 0.0),
                                      Prediction("!", 8, 0.0)])
    (row,) = F.step_table([step])
    assert row["alternatives"] == "␣dog 0.300"
    fig = F.candidates_figure(step.candidates, step.pick)
    assert list(fig.data[0].x) == ["␣cat", "␣dog"]


def test_candidates_figure_marks_the_pick(gpt2):
    r = generate(gpt2, "the quick", strategy="sample", max_new_tokens=3, seed=1, top_k=8)
    for step in r.steps:
        fig = F.candidates_figure(step.candidates, step.pick)
        colors = list(fig.data[0].marker.color)
        assert [c.prob for c in step.candidates if c.prob > 0 or c.id == step.pick.id] == list(fig.data[0].y)
        shown = [c for c in step.candidates if c.prob > 0 or c.id == step.pick.id]
        picked = [i for i, c in enumerate(shown) if c.id == step.pick.id]
        assert [i for i, c in enumerate(colors) if c == style.PICK_COLOR] == picked
    rows = F.step_table(r.steps)
    assert [row["token"] for row in rows] == [show_token(s.pick.token) for s in r.steps]


def test_generated_attention_figure(gpt2):
    prompt = "the dogs near"
    r = generate(gpt2, prompt, max_new_tokens=4)
    ins = inspect(gpt2, prompt + r.text)
    attn = ins.attention(1, 2)
    fig = F.generated_attention_figure(attn, ins.tokens, len(prompt))
    np.testing.assert_array_equal(fig.data[0].z, attn)
    first_gen = next(i for i, t in enumerate(ins.tokens) if t.start >= len(prompt))
    assert {sh.x0 for sh in fig.layout.shapes} >= {first_gen - 0.5}
    with pytest.raises(ValueError, match="expected"):
        F.generated_attention_figure(attn[:-1], ins.tokens, len(prompt))
