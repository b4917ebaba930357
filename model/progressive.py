"""One layer's attention before the whole inspection: a forward pass stopped right after that layer.

A page that shows one layer's map (the Attention page: layer 0 unless the user moved the slider) draws it
from `inspect_layer` as soon as that layer has run, then calls `inspect()` for everything else:

    >>> m = load_model("demo/bert")                               # doctest: +SKIP
    >>> draws_sooner(m, 0)                                        # doctest: +SKIP
    True
    >>> first = inspect_layer(m, "the cat sleeps .", 0)           # doctest: +SKIP
    >>> first.attention(0, 0).shape                               # doctest: +SKIP
    (6, 6)

The maps are computed from the same recorded queries and keys as `inspect()`'s, so they are the same
numbers. The stopped pass costs the layers up to the one asked for; `inspect()` then runs them again.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.attention import AttentionStore
from model.errors import Unavailable
from model.inspect import encode
from model.modelinfo import LoadedModel
from model.results import LayerAttention


def draws_sooner(loaded: LoadedModel, layer: int) -> bool:
    """Whether drawing `layer` from `inspect_layer` before calling `inspect()` is worth it: the backend stops
    its forward pass after that layer (`Backend.stops_early`; one that cannot would run the whole model
    twice) and the layer lies in the model's first half (the layers up to it run twice)."""
    backend = loaded.backend
    return (bool(backend.stops_early) and "attention" in loaded.info.capabilities
            and 0 <= layer < max(1, backend.num_layers // 2))


def inspect_layer(loaded: LoadedModel, text: str, layer: int, text_pair: str | None = None) -> LayerAttention:
    """Layer `layer`'s attention maps of `text` (or a sentence pair), running the model no further than that
    layer where its backend can. Tokens, warnings and maps equal those of `inspect(loaded, text, text_pair)`.
    Raises InputError for an empty text or a layer out of range, Unavailable for a model without attention."""
    info, backend = loaded.info, loaded.backend
    if "attention" not in info.capabilities:
        raise Unavailable(info.unavailable.get("attention", f"{info.name} exposes no attention outputs"))
    enc = encode(loaded, text, text_pair)
    ids = torch.from_numpy(enc.input_ids)[None, :]  # (1, N)
    tti = None if enc.token_type_ids is None else torch.from_numpy(enc.token_type_ids)[None, :]
    fn = backend.layer_attention(ids, None, tti, layer=layer)
    if fn is None:
        raise Unavailable(info.unavailable.get("attention", f"{info.name}: the forward pass gave no attention"))
    special = np.array([t.special for t in enc.tokens], dtype=bool)
    # the same (heads) -> (heads, N, N) function inspect()'s AttentionStore holds for this layer
    store = AttentionStore([lambda heads, f=fn: f(heads)[0]], backend.num_heads, special)
    return LayerAttention(
        model_name=info.name, text=text, text_pair=text_pair, tokens=enc.tokens, layer=layer,
        num_layers=backend.num_layers, num_heads=backend.num_heads,
        warnings=list(info.warnings) + enc.warnings, attention_source=store,
    )
