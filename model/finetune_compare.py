"""What fine-tuning or distillation changed: two models of one tokenizer side by side on the same text.

    >>> s = head_shift(load_model("demo/bert"), load_model("runs/bert-topics"), "the cake is in the oven")  # doctest: +SKIP
    >>> s.ranking[0]        # (layer, head, shift) of the head that moved most                             # doctest: +SKIP
    >>> d = compare_distributions(teacher, student, "the dogs near the")                                    # doctest: +SKIP
    >>> d.a[0].token, d.b[0].token, d.overlap                                                               # doctest: +SKIP

head_shift: per head, how far the attention moved: the mean over query tokens of the total-variation
distance between the two models' attention rows (0 = the same map, 1 = disjoint), and the absolute
difference maps pooled to thumbnails for an all-heads grid. compare_distributions: the two models'
next-token (causal) or first-mask (masked LM) distributions for the same input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.inspect import InputError, inspect
from model.modelinfo import LoadedModel
from model.results import Prediction, Token

THUMB = 24  # thumbnail side (the all-heads grid's tiles)


@dataclass
class HeadShift:
    """tokens: the N tokens both models read. shift: (L, H) float32 in [0, 1], see the module docstring.
    diff_thumbs: (L, H, s, s) float32 |tuned - base| maps pooled to s = min(N, THUMB), scaled by the largest
    value over all heads (so tiles compare across heads). ranking: (layer, head, shift), most moved first."""

    tokens: list[Token]
    shift: np.ndarray
    diff_thumbs: np.ndarray
    ranking: list[tuple[int, int, float]]
    max_diff: float  # the largest absolute weight difference (what a full tile means)


def _pool(m: np.ndarray, size: int) -> np.ndarray:
    """(..., N, N) -> (..., s, s) block means, s = min(N, size)."""
    n = m.shape[-1]
    s = min(n, size)
    edges = np.linspace(0, n, s + 1).round().astype(int)[:-1]
    counts = np.diff(np.append(edges, n)).astype(np.float32)
    rows = np.add.reduceat(m, edges, axis=-2) / counts[:, None]
    return np.add.reduceat(rows, edges, axis=-1) / counts[None, :]


def _same_input(a, b, what: str) -> None:
    if [t.id for t in a.tokens] != [t.id for t in b.tokens]:
        raise InputError(f"the two models cut the text into different tokens: they do not share a tokenizer, so {what} "
                         "cannot be compared token by token")


def head_shift(base: LoadedModel, tuned: LoadedModel, text: str) -> HeadShift:
    """How far every head's attention moved from `base` to `tuned` on `text` (same tokenizer, same shape)."""
    a, b = inspect(base, text, summaries=False), inspect(tuned, text, summaries=False)
    _same_input(a, b, "their attention maps")
    if not a.num_layers or (a.num_layers, a.num_heads) != (b.num_layers, b.num_heads):
        raise InputError(f"{base.name} has {a.num_layers} x {a.num_heads} heads and {tuned.name} "
                         f"{b.num_layers} x {b.num_heads}: their heads do not correspond one to one")
    shift, diffs, max_diff = [], [], 0.0
    for layer in range(a.num_layers):
        d = np.abs(b.attention_layer(layer).astype(np.float32) - a.attention_layer(layer).astype(np.float32))  # (H, N, N)
        shift.append(0.5 * d.sum(-1).mean(-1))  # (H,)
        diffs.append(np.stack([_pool(m, THUMB) for m in d]))
        max_diff = max(max_diff, float(d.max()))
    shift_arr = np.stack(shift).astype(np.float32)
    thumbs = np.stack(diffs).astype(np.float32)
    top = float(thumbs.max()) if thumbs.size else 0.0
    order = sorted(((l_, h, float(shift_arr[l_, h])) for l_ in range(a.num_layers) for h in range(a.num_heads)),
                   key=lambda x: -x[2])
    return HeadShift(a.tokens, shift_arr, thumbs / max(top, 1e-9), order, max_diff)


@dataclass
class DistributionPair:
    """The top-k predictions of models a and b at the same position (`where`: "next token after ..." or
    "mask at token i"); overlap: probability mass both give to the same tokens (sum of min over the
    union of their top-k, a lower bound of 1 - total variation); same_top1: the most probable tokens agree."""

    where: str
    a: list[Prediction]
    b: list[Prediction]
    overlap: float
    same_top1: bool


def _predictions(insp, loaded: LoadedModel) -> tuple[str, list[Prediction]]:
    if insp.masks:
        m = insp.masks[0]
        return f"the mask at token {m.position}", list(m.predictions)
    if insp.next_tokens is not None:
        real = [i for i, t in enumerate(insp.tokens) if not t.special]
        last = real[-1] if real else len(insp.tokens) - 1
        preds = [Prediction(t, int(i), float(p)) for t, i, p in
                 zip(insp.next_tokens[last], insp.next_ids[last], insp.next_probs[last])]
        return f"the next token after {insp.tokens[last].text!r}", preds
    raise InputError(f"{loaded.name} predicts no tokens here: a masked LM needs a mask in the text "
                     f"({loaded.info.mask_token}); a classifier has no LM head")


def compare_distributions(a: LoadedModel, b: LoadedModel, text: str, top_k: int = 10) -> DistributionPair:
    """Both models' distributions at the first mask (masked LMs) or after the last token (causal LMs)."""
    ia, ib = inspect(a, text, top_k=top_k, summaries=False), inspect(b, text, top_k=top_k, summaries=False)
    _same_input(ia, ib, "their predictions")
    where, pa = _predictions(ia, a)
    _, pb = _predictions(ib, b)
    qa, qb = {p.id: p.prob for p in pa}, {p.id: p.prob for p in pb}
    overlap = sum(min(qa.get(t, 0.0), qb.get(t, 0.0)) for t in set(qa) | set(qb))
    return DistributionPair(where, pa, pb, float(overlap), pa[0].id == pb[0].id)
