"""Attention maps from queries and keys, their per-head summaries, and attention rollout.

Pure torch. A transformer's attention probabilities for one layer are

    P = softmax(Q K^T * scale + mask)          # (batch, head, query, key)

We never ask the model to materialise all L * H * N * N of them: the torch backend records Q and K per
layer (L * N * hidden floats) and `AttentionStore` turns one layer into probabilities when somebody looks
at it, keeping a few layers in fp16. At 1024 tokens on a 12 x 12 model that is ~75 MB of Q/K instead of
576 MiB of fp32 maps.

    >>> q = torch.zeros(1, 1, 3, 4); k = torch.zeros(1, 1, 3, 4)
    >>> attention_probs(q, k, causal=True)[0, 0]
    tensor([[1.0000, 0.0000, 0.0000],
            [0.5000, 0.5000, 0.0000],
            [0.3333, 0.3333, 0.3333]])
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import numpy as np
import torch


def attention_probs(
    query: torch.Tensor,
    key: torch.Tensor,
    *,
    scale: float | None = None,
    additive_mask: torch.Tensor | None = None,
    key_padding: torch.Tensor | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """Attention probabilities, computed exactly like transformers' eager attention.

    query: (batch, head, query, dim); key: (batch, kv_head, key, dim) — kv_head may divide head (GQA).
    scale: multiplies the scores; default dim ** -0.5.
    additive_mask: broadcastable to (batch, head, query, key), 0 where allowed and a large negative
        number where not (what transformers' eager mask builder produces).
    key_padding: (batch, key) bool, True for real tokens; padded keys get no attention.
    causal: a query attends only to keys at or before its own position.
    Returns (batch, head, query, key) float32; every row sums to 1.
    """
    if key.shape[1] != query.shape[1]:  # grouped-query attention: share each key head across a group
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    if scale is None:
        scale = query.shape[-1] ** -0.5
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale  # (batch, head, query, key)
    if additive_mask is not None:
        scores = scores + additive_mask.float()
    neg = torch.finfo(scores.dtype).min
    if key_padding is not None:
        scores = scores.masked_fill(~key_padding[:, None, None, :].bool(), neg)
    if causal:
        nq, nk = scores.shape[-2:]
        allowed = torch.ones(nq, nk, dtype=torch.bool, device=scores.device).tril(nk - nq)
        scores = scores.masked_fill(~allowed, neg)
    return torch.softmax(scores, dim=-1)


def head_summaries(
    probs: torch.Tensor,
    special: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-head statistics of one layer's maps.

    probs: (head, query, key) probabilities; special: (key,) bool special-token flags;
    valid: (query,) bool, queries to average over (default all).
    Returns (head,) tensors: entropy (nats), distance (tokens), special_share, max_entropy.

        >>> p = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
        >>> head_summaries(p, torch.tensor([True, False]))["special_share"]
        tensor([0.7500])
    """
    probs = probs.float()
    n_q, n_k = probs.shape[-2:]
    if valid is None:
        valid = torch.ones(n_q, dtype=torch.bool)
    w = valid.float() / valid.float().sum().clamp(min=1)  # (query,) averaging weights
    plogp = torch.where(probs > 0, probs * probs.clamp_min(1e-30).log(), torch.zeros_like(probs))
    entropy = -(plogp.sum(-1) * w).sum(-1)  # (head,)
    pos_q = torch.arange(n_q, dtype=torch.float32)[:, None]
    pos_k = torch.arange(n_k, dtype=torch.float32)[None, :]
    dist = (pos_q - pos_k).abs()  # (query, key)
    distance = ((probs * dist).sum(-1) * w).sum(-1)
    special_share = ((probs * special.float()[None, None, :]).sum(-1) * w).sum(-1)
    allowed = (probs > 0).sum(-1).clamp(min=1).float()  # (head, query) keys a query could see
    max_entropy = (allowed.log() * w).sum(-1)
    return {"entropy": entropy, "distance": distance, "special_share": special_share, "max_entropy": max_entropy}


def rollout_step(rollout: torch.Tensor | None, layer_probs: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """One layer of attention rollout (Abnar & Zuidema 2020).

    layer_probs: (head, query, key). The heads are averaged, the residual connection is modelled as
    `residual * I + (1 - residual) * A`, rows are renormalised, and the result is multiplied onto the
    rollout of the layers below: R_l = A_l @ R_{l-1}. Returns (query, key).
    """
    a = layer_probs.float().mean(0)  # (query, key)
    a = residual * torch.eye(a.shape[-1]) + (1 - residual) * a
    a = a / a.sum(-1, keepdim=True)
    return a if rollout is None else a @ rollout


class AttentionStore:
    """Lazy, compact access to one input's attention maps.

    layer_fns: one callable per layer; `fn(heads)` returns the (len(heads), N, N) float32 probabilities
               of those heads (all heads when `heads` is None).
    special:   (N,) bool special-token flags (for the special-share summary).
    valid:     (N,) bool real (non-padding) positions.
    cache_layers: how many layers to keep in fp16 at once (a page looks at one layer at a time).

    `head()` recomputes in fp32 (exact); `layer()` returns fp16, the form sent to the browser.
    Summaries and rollout stream over the layers, holding one layer's maps at a time.
    """

    def __init__(
        self,
        layer_fns: list[Callable[[list[int] | None], torch.Tensor]],
        num_heads: int,
        special: np.ndarray,
        valid: np.ndarray | None = None,
        cache_layers: int = 2,
        budget_floats: int = 2**20,
    ):
        self._fns = layer_fns
        self.num_layers = len(layer_fns)
        self.num_heads = num_heads
        self._special = torch.as_tensor(np.asarray(special, dtype=bool))
        self._valid = None if valid is None else torch.as_tensor(np.asarray(valid, dtype=bool))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_layers = max(1, cache_layers)
        self._summary: dict[str, np.ndarray] | None = None
        self._rollout: np.ndarray | None = None
        # Streaming passes compute this many heads at a time: ~budget_floats floats of maps in flight.
        n = len(self._special)
        self._heads_per_chunk = max(1, min(num_heads, budget_floats // max(1, n * n)))

    def _probs(self, layer: int, heads: list[int] | None = None) -> torch.Tensor:
        return self._fns[layer](heads)  # (heads, N, N) float32

    def _head_chunks(self) -> list[list[int]]:
        c = self._heads_per_chunk
        return [list(range(s, min(self.num_heads, s + c))) for s in range(0, self.num_heads, c)]

    def layer(self, layer: int) -> np.ndarray:
        """(head, N, N) float16 probabilities of one layer."""
        hit = self._cache.get(layer)
        if hit is not None:
            self._cache.move_to_end(layer)
            return hit
        maps = self._probs(layer).to(torch.float16).numpy()
        self._cache[layer] = maps
        while len(self._cache) > self._cache_layers:
            self._cache.popitem(last=False)
        return maps

    def head(self, layer: int, head: int) -> np.ndarray:
        """(N, N) float32 probabilities of one head, exact."""
        return self._probs(layer, [head])[0].numpy()

    def summaries(self) -> dict[str, np.ndarray]:
        """(layer, head) float32 arrays: entropy, distance, special_share, max_entropy."""
        if self._summary is None:
            rows: dict[str, list[torch.Tensor]] = {}
            for layer in range(self.num_layers):
                parts: dict[str, list[torch.Tensor]] = {}
                for heads in self._head_chunks():
                    for name, value in head_summaries(self._probs(layer, heads), self._special, self._valid).items():
                        parts.setdefault(name, []).append(value)
                for name, chunks in parts.items():
                    rows.setdefault(name, []).append(torch.cat(chunks))
            self._summary = {k: torch.stack(v).numpy() for k, v in rows.items()}
        return self._summary

    def rollout(self) -> np.ndarray:
        """(N, N) float32 attention rollout over all layers."""
        if self._rollout is None:
            r = None
            for layer in range(self.num_layers):
                mean = sum(self._probs(layer, heads).sum(0) for heads in self._head_chunks()) / self.num_heads
                r = rollout_step(r, mean[None])  # (1, N, N): the head mean
            self._rollout = r.numpy()
        return self._rollout

