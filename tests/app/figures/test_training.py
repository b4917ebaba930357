"""app/figures/training.py (and model/train/progress.py) on a real tiny training run: the loss curves, the
run's progress, a probe's predictions over the checkpoints."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.figures import training as F
from app.figures.text import token_label
from model.inspect import inspect
from model.load import load_model
from model.results import Prediction
from model.train.progress import progress_of


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real tiny training run, in process: its events and checkpoints."""
    from model.train.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "gpt2"
    train(TrainConfig(arch="gpt2", corpus="pydoc", out_dir=str(out), steps=6, batch_size=4, seq_len=16,
                      eval_every=3, checkpoint_every=3, threads=1))
    from model.jobs import read_events
    from model.train.layout import complete_checkpoints

    return read_events(out), complete_checkpoints(out)


def test_loss_figure_and_progress_from_a_real_run(run):
    events, _ = run
    steps = [e for e in events if e["type"] == "step"]
    evals = [e for e in events if e["type"] == "eval"]
    fig = F.loss_figure(events)
    raw, smoothed, held = fig.data
    assert list(raw.x) == [e["step"] for e in steps] and list(raw.y) == [e["loss"] for e in steps]
    np.testing.assert_allclose(smoothed.y, pd.Series([e["loss"] for e in steps]).ewm(alpha=0.1, adjust=True).mean())
    assert list(held.x) == [3, 6] and list(held.y) == [e["loss"] for e in evals]
    assert fig.layout.shapes[0].y0 == pytest.approx(evals[-1]["unigram_loss"])
    p = progress_of(events)
    assert (p.step, p.total_steps, p.status, p.fraction) == (6, 6, "done", 1.0)
    assert p.loss == steps[-1]["loss"] and p.heldout_loss == evals[-1]["loss"] and p.eta_s is None
    mid = progress_of(events[:3])
    assert mid.status == "training" and mid.step == 2 and mid.eta_s == steps[1]["eta_s"] and mid.fraction == pytest.approx(2 / 6)
    assert progress_of([], total_steps=10).status == "waiting"


def test_subsampled_loss_keeps_the_last_point():
    events = [{"type": "step", "step": i, "loss": 1.0 / i, "total_steps": 5000} for i in range(1, 5001)]
    fig = F.loss_figure(events, max_points=100)
    assert len(fig.data[0].x) <= 101 and fig.data[0].x[-1] == 5000


def test_checkpoint_predictions_figure(run):
    _, cks = run
    rows = []
    for step, path in cks:
        m = load_model(path)
        ins = inspect(m, "the", top_k=5, summaries=False)
        ids, probs = ins.next_ids[-1], ins.next_probs[-1]
        rows.append((step, [Prediction(t, int(i), float(p)) for t, i, p in zip(ins.next_tokens[-1], ids, probs)]))
    fig = F.checkpoint_predictions_figure(rows, highlight=cks[-1][0])
    assert list(fig.data[0].x) == [s for s, _ in cks]
    best = rows[-1][1][0]
    line = next(t for t in fig.data if t.name == token_label(best.token))
    assert line.y[-1] == pytest.approx(best.prob)
    assert fig.layout.shapes[0].x0 == cks[-1][0]


def test_format_duration_rounds_to_whole_seconds():
    assert F.format_duration(59.6) == "1 min 0 s"
