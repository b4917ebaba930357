"""neurons(model, text) -> NeuronFactors: feed-forward neuron activations and their NMF factorization (Ecco).

Each layer's feed-forward block computes act(W1 h) (F neurons per token) before its output projection W2;
those activations are read with a forward pre-hook on W2 (BERT/RoBERTa `layer.i.output.dense`, GPT-2
`h.i.mlp.c_proj`, ALBERT's shared `ffn_output`, fired once per layer, DistilBERT `ffn.lin2`).

Factorization (as Ecco's NMF view): the activations of the chosen layers, clipped at 0 (NMF needs
non-negative input; GELU's small negative outputs are dropped), form X (N tokens, L' * F neurons), and
scikit-learn's `NMF(k, init="nndsvda", random_state=0)` gives X ~ W H: W (N, k) says how strongly each
component fires on each token (drawn over the text), H (k, L' * F) which neurons make up each component.

    >>> r = neurons(load_model("demo/bert"), "the cat sleeps .", k=4)     # doctest: +SKIP
    >>> r.factors.shape                                                   # doctest: +SKIP
    (6, 4)

Torch backend only. Memory: N * L' * F floats (12 layers x 3072 at 512 tokens: 75 MB), checked first.
"""
from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from model.inspect import InputError, Unavailable, encode
from model.modelinfo import LoadedModel
from model.results import Token

FFN_OUTPUT = {  # model_type -> names of the modules whose input is the feed-forward activation
    "bert": r"layer\.\d+\.output\.dense$", "roberta": r"layer\.\d+\.output\.dense$", "gpt2": r"mlp\.c_proj$",
    "albert": r"ffn_output$", "distilbert": r"ffn\.lin2$",
}
MAX_K = 10
MAX_VALUES = 50_000_000  # N x L' x F floats kept (200 MB)
_SINK: contextvars.ContextVar[list | None] = contextvars.ContextVar("lmscope_ffn_sink", default=None)


@dataclass(frozen=True)
class NeuronFactors:
    """Feed-forward activations of one text and their non-negative factorization.

    tokens:      the N tokens, special tokens included.
    layers:      the model layers used, ascending (L' of them).
    activations: (L', N, F) float32 activations act(W1 h) as the layer computed them (negative values kept).
    factors:     (N, k) float32 W: each component's strength on each token.
    components:  (k, L' * F) float32 H: each component's weight on each neuron (layer-major: neuron j of
                 layers[i] is column i * F + j).
    error:       relative reconstruction error ||X - W H||_F / ||X||_F of the clipped matrix X.
    """

    tokens: list[Token]
    layers: tuple[int, ...]
    activations: np.ndarray
    factors: np.ndarray
    components: np.ndarray
    error: float
    warnings: list[str] = field(default_factory=list)

    @property
    def k(self) -> int:
        return int(self.factors.shape[1])

    def matrix(self) -> np.ndarray:
        """(N, L' * F) float32 the matrix factorized: the activations clipped at 0, layers side by side."""
        return np.maximum(self.activations, 0).transpose(1, 0, 2).reshape(len(self.tokens), -1)

    def top_neurons(self, component: int, n: int = 10) -> list[tuple[int, int, float]]:
        """The n neurons with most weight in `component`: (layer, neuron, weight), heaviest first."""
        f = self.activations.shape[2]
        order = np.argsort(-self.components[component])[:n]
        return [(self.layers[int(c) // f], int(c) % f, float(self.components[component, c])) for c in order]

    def to_json(self) -> dict[str, Any]:
        return {"tokens": [t.text for t in self.tokens], "layers": list(self.layers),
                "factors": np.round(self.factors, 6).tolist(), "error": self.error,
                "top_neurons": [[list(t) for t in self.top_neurons(c)] for c in range(self.k)],
                "warnings": self.warnings}


def ffn_output_modules(loaded: LoadedModel) -> list[torch.nn.Module]:
    """Each layer's feed-forward output projection, whose input is the layer's activation act(W1 h) (gated
    MLPs: act(W_gate h) * W_up h): for the seed families from FFN_OUTPUT; for any other, found from the model's
    structure: in each block of the layer stack (the ModuleList of num_layers blocks, each with an attention
    module), the last nn.Linear outside its attention (Llama's mlp.down_proj, ModernBERT's mlp.Wo, OPT's
    fc2, ELECTRA's output.dense). [] when there is no such stack (a state-space model such as Mamba)."""
    base = loaded.backend.model.base_model
    pattern = FFN_OUTPUT.get(loaded.info.model_type)
    if pattern is not None:
        return [m for name, m in base.named_modules() if re.search(pattern, name)]
    n = loaded.backend.num_layers
    stack = next((m for m in base.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n), None)
    found = []
    for block in stack or []:
        named = list(block.named_modules())
        in_attention = [bool(re.search(r"att", name, re.IGNORECASE)) for name, _ in named]
        linear = [m for (_, m), att in zip(named, in_attention) if isinstance(m, torch.nn.Linear) and not att]
        if not any(in_attention) or not linear:  # not a transformer block (e.g. Mamba's mixer)
            return []
        found.append(linear[-1])
    return found


def _modules_or_reason(loaded: LoadedModel) -> tuple[list[torch.nn.Module], str | None]:
    """(each layer's feed-forward output projection, None), or ([], why there are none)."""
    if loaded.info.backend != "torch" or not hasattr(loaded.backend, "model"):
        return [], f"{loaded.info.name}: feed-forward activations are read from torch modules (not {loaded.info.backend})"
    modules = ffn_output_modules(loaded)
    if not modules:
        return [], (f"{loaded.info.name}: lmscope finds no feed-forward block in {loaded.info.model_type}'s layers "
                    "(no list of layers holding a linear layer outside the attention)")
    return modules, None


def unavailable(loaded: LoadedModel) -> str | None:
    """Why `neurons` cannot run on this model, or None when it can."""
    return _modules_or_reason(loaded)[1]


def ffn_activations(loaded: LoadedModel, input_ids: np.ndarray, token_type_ids: np.ndarray | None = None) -> np.ndarray:
    """(L, N, F) float32 feed-forward activations of every layer for one unpadded input (N,) int64."""
    modules, reason = _modules_or_reason(loaded)
    if reason is not None:
        raise Unavailable(reason)
    backend = loaded.backend
    sink: list[torch.Tensor] = []

    def hook(module, args):
        if _SINK.get() is sink:  # only this call's forward, never another thread's
            x = args[0].detach()  # (1, N, F); OPT flattens it to (N, F)
            sink.append(x.reshape(-1, x.shape[-1]).float())  # (N, F)

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    token = _SINK.set(sink)
    try:
        ids = torch.from_numpy(np.asarray(input_ids, dtype=np.int64))[None, :]
        tti = None if token_type_ids is None else torch.from_numpy(np.asarray(token_type_ids, dtype=np.int64))[None, :]
        backend.forward(ids, None, tti, attentions=False, hidden_states=False)
    finally:
        _SINK.reset(token)
        for h in handles:
            h.remove()
    if len(sink) != backend.num_layers:
        raise Unavailable(f"{loaded.info.name}: recorded {len(sink)} feed-forward blocks, expected {backend.num_layers}")
    return torch.stack(sink).numpy()


def factorize(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """NMF of a non-negative (N, M) matrix: (W (N, k), H (k, M), relative error). scikit-learn, deterministic."""
    from sklearn.decomposition import NMF

    nmf = NMF(n_components=k, init="nndsvda", random_state=0, max_iter=500)
    w = nmf.fit_transform(matrix)
    norm = float(np.linalg.norm(matrix))
    return w.astype(np.float32), nmf.components_.astype(np.float32), float(nmf.reconstruction_err_) / norm if norm else 0.0


def neurons(loaded: LoadedModel, text: str, *, layers: list[int] | None = None, k: int = 5) -> NeuronFactors:
    """Feed-forward activations of `layers` (all when None) for `text`, factorized into k components."""
    enc = encode(loaded, text)
    reason = unavailable(loaded)
    if reason is not None:
        raise Unavailable(reason)
    n_layers = loaded.backend.num_layers
    chosen = tuple(range(n_layers)) if layers is None else tuple(sorted(set(int(l) for l in layers)))
    bad = [l for l in chosen if not 0 <= l < n_layers]
    if bad or not chosen:
        raise InputError(f"layer {bad[0] if bad else '(none)'} is out of range: this model has layers 0..{n_layers - 1}")
    n = len(enc.tokens)
    if not 1 <= k <= min(MAX_K, n):
        raise InputError(f"k must be between 1 and {min(MAX_K, n)} (at most the number of tokens), got {k}")
    cfg = loaded.backend.model.config
    width = int(getattr(cfg, "intermediate_size", 0) or getattr(cfg, "n_inner", 0) or getattr(cfg, "hidden_dim", 0)
                or getattr(cfg, "ffn_dim", 0) or 4 * getattr(cfg, "n_embd", 0))
    if n * n_layers * width > MAX_VALUES:
        raise InputError(f"{n} tokens x {n_layers} layers x {width} neurons is too many activations to keep "
                         f"(limit {MAX_VALUES:,}): use a shorter text")
    acts = ffn_activations(loaded, enc.input_ids, enc.token_type_ids)[list(chosen)]  # (L', N, F)
    x = np.maximum(acts, 0).transpose(1, 0, 2).reshape(n, -1)  # (N, L' * F)
    w, h, err = factorize(x, k)
    return NeuronFactors(tokens=enc.tokens, layers=chosen, activations=acts, factors=w, components=h, error=err,
                         warnings=list(loaded.info.warnings) + enc.warnings)
