"""The plain result objects that leave `model/`: numpy arrays and strings only, never torch.

Pages, figures, the CLI and JSON are all drawn from these. Every array field documents its shape;
N is the number of tokens (special tokens included), L the number of layers, H the number of heads,
K a top-k size, V the vocabulary size.

Attention maps are not stored here as L*H*N*N floats: an `Inspection` holds an `attention_source`
(see `kernels.attention.AttentionStore`) that computes one layer on request and keeps it in fp16.

    >>> tok = Token(text="##ing", id=2075, start=4, end=7, special=False, word=0)
    >>> tok.to_json()["start"]
    4
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from model.errors import InputError, Unavailable


@dataclass(frozen=True)
class Token:
    """One token as the tokenizer produced it.

    text:    the piece as the tokenizer spells it (`##ing`, `Ġthe`, `▁the`, `[CLS]`).
    id:      its vocabulary id.
    start, end: its character span in the input text (`text[start:end]`); (0, 0) for special tokens.
    special: True for tokens the tokenizer adds ([CLS], [SEP], <s>, </s>, <|endoftext|> ...).
    word:    index of the input word it belongs to, or None for special tokens.
    segment: 0 for the first text, 1 for the second of a sentence pair.
    """

    text: str
    id: int
    start: int
    end: int
    special: bool
    word: int | None = None
    segment: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Prediction:
    """One candidate token with its probability."""

    token: str
    id: int
    prob: float

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "id": self.id, "prob": self.prob}


@dataclass(frozen=True)
class MaskPrediction:
    """Top-k predictions at one masked position.

    position:    index into `Inspection.tokens` of the mask token.
    predictions: best first, probabilities over the full vocabulary (they need not sum to 1).
    target:      the token this mask hid, when the caller said (`inspect(mask_targets=...)`), with its
                 probability here, whether or not it is in the top k; else None.
    target_rank: its rank over the whole vocabulary (1 = the best prediction); None without a target.
    """

    position: int
    predictions: list[Prediction]
    target: Prediction | None = None
    target_rank: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"position": self.position, "predictions": [p.to_json() for p in self.predictions]}
        if self.target is not None:
            out["target"] = {**self.target.to_json(), "rank": self.target_rank}
        return out


@dataclass(frozen=True)
class PairPrediction:
    """Sentence-pair head output (BERT next-sentence prediction or ALBERT sentence order).

    kind:  "nsp" (label 0 = IsNext) or "sop" (label 0 = in order).
    prob:  probability that B follows A (nsp) / that A and B are in their original order (sop).
    """

    kind: str
    prob: float


@dataclass(frozen=True)
class HeadSummary:
    """Per-head attention statistics, each (L, H) float32.

    entropy:       mean over queries of the entropy (nats) of that query's attention distribution.
    distance:      mean over queries of sum_k p(k) * |q - k| (in tokens).
    special_share: mean over queries of the attention mass on special tokens.
    max_entropy:   (L, H) the entropy a uniform distribution over the allowed keys would have, for scale.
    """

    entropy: np.ndarray
    distance: np.ndarray
    special_share: np.ndarray
    max_entropy: np.ndarray


@dataclass(frozen=True)
class LogitLens:
    """Each layer's hidden state through the final norm and LM head.

    ids:   (L + 1, N, K) int64 top-k token ids per layer (row 0 is the embedding output).
    probs: (L + 1, N, K) float32 their probabilities.
    tokens: nested lists of strings, same layout as `ids`.
    actual_prob: (L + 1, N) float32 probability of the token that really comes next (causal) or of
           the input token itself (masked LM); NaN where undefined.
    """

    ids: np.ndarray
    probs: np.ndarray
    tokens: list[list[list[str]]]
    actual_prob: np.ndarray


class AttentionSource(Protocol):
    """Lazy per-layer attention access (implemented by `kernels.attention.AttentionStore`)."""

    num_layers: int
    num_heads: int

    def layer(self, layer: int) -> np.ndarray: ...  # (H, N, N) float16

    def head(self, layer: int, head: int) -> np.ndarray: ...  # (N, N) float32


@dataclass
class Inspection:
    """Everything `model.inspect.inspect()` learned about one text.

    tokens:          the N tokens, special tokens included.
    num_layers, num_heads: L and H (0 when the model has no attention, e.g. ELMo).
    hidden_norms:    (L + 1, N) float32 L2 norm of every hidden state (row 0 = embeddings); (0, N) when the
                     model gives no hidden states (a logits-only ONNX graph).
    head_summary:    per-head statistics, or None without attention.
    masks:           masked-LM top-k at every mask token (masked-LM models).
    next_token:      causal models: (N, K) top-k next-token predictions after every position, as
                     `next_ids` (N, K) int64 and `next_probs` (N, K) float32.
    surprisal:       (N,) float32 bits; causal: -log2 p(token_i | tokens_<i) (NaN at 0 and for
                     specials); masked LM with `pll=True`: -log2 p(token_i | all others, i masked).
    logit_lens:      per-layer top-k, or None when the model has no LM head.
    pair:            NSP / SOP probability for a sentence pair, when the model has that head.
    warnings:        human-readable notes (truncation with the character where it happened, ...).
    unavailable:     view name -> reason it cannot be shown for this model.
    """

    model_name: str
    text: str
    text_pair: str | None
    tokens: list[Token]
    num_layers: int
    num_heads: int
    hidden_norms: np.ndarray
    head_summary: HeadSummary | None = None
    masks: list[MaskPrediction] = field(default_factory=list)
    next_ids: np.ndarray | None = None
    next_probs: np.ndarray | None = None
    next_tokens: list[list[str]] | None = None
    surprisal: np.ndarray | None = None
    surprisal_kind: str | None = None  # "causal" | "pll" | None
    backward_surprisal: np.ndarray | None = None  # (N,) bits, ELMo's backward LM: -log2 p(token_i | tokens_>i)
    logit_lens: LogitLens | None = None
    pair: PairPrediction | None = None
    warnings: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    attention_source: AttentionSource | None = field(default=None, repr=False)

    # ---- attention access (lazy; computes one layer at a time) ----
    @property
    def has_attention(self) -> bool:
        return self.attention_source is not None

    def attention(self, layer: int, head: int) -> np.ndarray:
        """(N, N) float32 map of one head; rows are queries and sum to 1."""
        self._check_layer_head(layer, head)
        return self.attention_source.head(layer, head)

    def attention_layer(self, layer: int) -> np.ndarray:
        """(H, N, N) float16 maps of one layer: the compact form sent to the browser."""
        self._check_layer_head(layer, 0)
        return self.attention_source.layer(layer)

    def rollout(self) -> np.ndarray:
        """(N, N) float32 attention rollout over all layers (Abnar & Zuidema 2020)."""
        if self.attention_source is None:
            raise Unavailable(self.unavailable.get("attention", "this model has no attention"))
        return self.attention_source.rollout()

    def _check_layer_head(self, layer: int, head: int) -> None:
        if self.attention_source is None:
            raise Unavailable(self.unavailable.get("attention", "this model has no attention"))
        if not 0 <= layer < self.num_layers:
            raise InputError(f"layer {layer} is out of range: this model has layers 0..{self.num_layers - 1}")
        if not 0 <= head < self.num_heads:
            raise InputError(f"head {head} is out of range: this model has heads 0..{self.num_heads - 1}")

    def token_json(self) -> list[dict[str, Any]]:
        return [t.to_json() for t in self.tokens]


@dataclass
class LayerAttention:
    """One layer's attention maps of one text, from a forward pass that stopped after that layer
    (`model.progressive.inspect_layer`): what a page draws while the whole inspection is still running.

    tokens, num_layers, num_heads, warnings: what `Inspection` gives for the same text (num_layers counts
    every layer of the model, not only those run).
    layer:  the one layer held; `attention(layer, head)` is exactly `Inspection.attention(layer, head)`.
    """

    model_name: str
    text: str
    text_pair: str | None
    tokens: list[Token]
    layer: int
    num_layers: int
    num_heads: int
    warnings: list[str] = field(default_factory=list)
    attention_source: AttentionSource | None = field(default=None, repr=False)  # holds `layer` only, as its layer 0

    @property
    def has_attention(self) -> bool:
        return self.attention_source is not None

    def attention(self, layer: int, head: int) -> np.ndarray:
        """(N, N) float32 map of one head of the layer held; rows are queries and sum to 1."""
        self._check(layer, head)
        return self.attention_source.head(0, head)

    def attention_layer(self, layer: int) -> np.ndarray:
        """(H, N, N) float16 maps of the layer held (as `Inspection.attention_layer`)."""
        self._check(layer, 0)
        return self.attention_source.layer(0)

    def _check(self, layer: int, head: int) -> None:
        if self.attention_source is None:
            raise Unavailable("this model has no attention")
        if layer != self.layer:
            raise InputError(f"layer {layer} is not held here: only layer {self.layer} was computed")
        if not 0 <= head < self.num_heads:
            raise InputError(f"head {head} is out of range: this model has heads 0..{self.num_heads - 1}")


@dataclass(frozen=True)
class NeuronView:
    """Queries, keys and attention of every head of some layers for one text: what bertviz's neuron view
    draws (`model.inspect.neuron_data`). d is the per-head dimension; L' = len(layers).

    tokens:    the N tokens, special tokens included.
    layers:    the model's layer indices held here, ascending (row i of the arrays is layer `layers[i]`).
    queries:   (L', H, N, d) float32 query vectors, as the layer computed them.
    keys:      (L', H, N, d) float32 key vectors; with grouped-query attention key heads are repeated, so
               keys[i, h] is the key head that query head h reads.
    attention: (L', H, N, N) float32 probabilities, rows = queries: softmax(q . k * scale + mask), the same
               numbers as `Inspection.attention(layer, head)`.
    scale:     (L',) float32 what q . k is multiplied by before the softmax (usually d ** -0.5).
    causal:    True when a query sees only itself and earlier tokens (GPT-2).
    warnings:  human-readable notes (truncation), as in `Inspection.warnings`.

        >>> v = neuron_data(load_model("demo/bert"), "the cat sleeps .")   # doctest: +SKIP
        >>> q, k, p = v.head(2, 0); q.shape, p.shape                        # doctest: +SKIP
        ((6, 64), (6, 6))
    """

    tokens: list[Token]
    layers: tuple[int, ...]
    queries: np.ndarray
    keys: np.ndarray
    attention: np.ndarray
    scale: np.ndarray
    causal: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def num_heads(self) -> int:
        return int(self.queries.shape[1])

    @property
    def head_dim(self) -> int:
        return int(self.queries.shape[-1])

    def head(self, layer: int, head: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(queries (N, d), keys (N, d), attention (N, N)) of one head of model layer `layer`."""
        if layer not in self.layers:
            raise InputError(f"layer {layer} is not held here: layers {list(self.layers)}")
        if not 0 <= head < self.num_heads:
            raise InputError(f"head {head} is out of range: this model has heads 0..{self.num_heads - 1}")
        i = self.layers.index(layer)
        return self.queries[i, head], self.keys[i, head], self.attention[i, head]


@dataclass(frozen=True)
class FilterStage:
    """One stage of the sampling pipeline applied to the full-vocabulary distribution.

    name:   "input", "repetition_penalty", "temperature", "top_k", "top_p", "typical_p", "min_p".
    params: the setting used (e.g. {"top_k": 50}).
    probs:  (V,) float32 distribution after this stage (zeros where filtered out).
    kept:   number of tokens with non-zero probability after this stage.
    """

    name: str
    params: dict[str, Any]
    probs: np.ndarray
    kept: int


@dataclass(frozen=True)
class GenerationStep:
    """One generated token.

    candidates: the top candidates after all filters, best first (probabilities after filtering).
    pick:       the chosen token.
    stages:     full-vocabulary trace per filter stage (only when requested: V floats per stage).
    """

    candidates: list[Prediction]
    pick: Prediction
    stages: list[FilterStage] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"candidates": [c.to_json() for c in self.candidates], "pick": self.pick.to_json()}


@dataclass(frozen=True)
class BeamNode:
    """One expanded beam hypothesis in a beam-search tree.

    id: unique node id; parent: parent node id (-1 for the root); step: generation step (0 = prompt).
    token/token_id: the token this node appended; score: cumulative log-probability;
    status: "kept" (survived to the next step), "pruned" (fell out of the top beams), "ended" (ended
            with EOS or at the length limit but was not returned), "finished" (a returned hypothesis).
    """

    id: int
    parent: int
    step: int
    token: str
    token_id: int
    score: float
    status: str


@dataclass
class GenerationResult:
    """Output of `model.generate.generate()`.

    prompt:  the prompt text; text: the continuation only (decoded).
    tokens:  the generated tokens as (text, id).
    steps:   per-step candidates and pick (greedy / sample); empty for beam search.
    beam_tree: every expanded beam node (beam search only).
    settings: the settings used, for reproducibility (strategy, temperature, seed, ...).
    """

    prompt: str
    text: str
    tokens: list[tuple[str, int]]
    steps: list[GenerationStep] = field(default_factory=list)
    beam_tree: list[BeamNode] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "text": self.text,
            "tokens": [{"text": t, "id": i} for t, i in self.tokens],
            "steps": [s.to_json() for s in self.steps],
            "beam_tree": [asdict(n) for n in self.beam_tree],
            "settings": self.settings,
            "warnings": self.warnings,
        }
