"""The projector's scatter draws every point exactly once, whatever the labels (app/figures/beyond.py)."""
from __future__ import annotations

import numpy as np
import pytest

from app.figures.beyond import projection_figure


@pytest.mark.parametrize("labels", [
    ["other", "animal", "verb", "other", "animal"] * 40,  # "other" is itself a label (the toy world's)
    [f"label {i % 25}" for i in range(200)] + ["other"] * 3,  # more than 20 labels: the rest pooled as "other"
])
def test_every_point_drawn_once(labels):
    n = len(labels)
    xy = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
    fig = projection_figure(xy, labels, [f"t{i}" for i in range(n)], "t", "label", categorical=True)
    drawn = np.concatenate([np.asarray(tr.customdata) for tr in fig.data])
    assert sorted(drawn.tolist()) == list(range(n))
    assert len({tr.name for tr in fig.data}) == len(fig.data) <= 21
    for tr in fig.data:
        np.testing.assert_array_equal(np.asarray(tr.x), xy[np.asarray(tr.customdata), 0])
