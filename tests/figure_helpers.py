"""Helpers of the figure tests: a figure's JSON spec, plotly arrays as numpy, a label's width in em, and token
pieces that stress labels (long, wide, markup)."""
from __future__ import annotations

import base64
import html
import json

import numpy as np

# short, long (shortened on an axis), wide (CJK), markup (escaped), word-piece and byte-level markers
PIECES = ["Ġthe", "Ġinternationalization", "Ġ日本語の単語", "<b>", "Ġcat", "##ing", "Ġa", "Ġextraordinarily"]


def values(obj) -> np.ndarray:
    """A plotly array as numpy: plotly 6+ ships numpy arrays as base64 typed arrays ({dtype, bdata, shape})."""
    if isinstance(obj, dict) and "bdata" in obj:
        arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
        shape = obj.get("shape")
        return arr.reshape([int(s) for s in str(shape).split(",")]) if shape else arr
    return np.asarray(obj, dtype=float)


def spec(fig) -> dict:
    return json.loads(fig.to_json())


def em_width(text: str) -> float:
    """The test's own estimate of a label's width in em (not the figure's): CJK 1 em, others 0.6 em."""
    import unicodedata

    text = html.unescape(text.replace("\u200b", ""))
    return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.6 for c in text)
