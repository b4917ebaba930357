"""attribute(model, text) -> Attribution: how much each input token contributed to one prediction (saliency).

The prediction is the log-probability of one target token at one position: under a mask (masked LMs) or
the token after a position (causal LMs). Scores come from Captum, applied to the word embeddings (the
model adds positions and segments itself), summed over the hidden dimension to one number per token:

    grad_x_input:          captum.attr.InputXGradient            (gradient . embedding)
    integrated_gradients:  captum.attr.IntegratedGradients       (Gauss-Legendre, `steps` points)

Baseline (integrated gradients, and `baseline_score`): every non-special token's word embedding set to
zero; special tokens ([CLS], [SEP], <s>...) keep theirs. Completeness: for integrated gradients the scores
sum to target_score - baseline_score, up to `convergence_delta` (Captum's own measure).

    >>> a = attribute(load_model("demo/bert"), "the dogs near the cat [MASK] .")     # doctest: +SKIP
    >>> a.target["token"], a.tokens[int(a.scores.argmax())].text                        # doctest: +SKIP
    ('run', 'dogs')

Torch backend only (ONNX graphs and ELMo raise `Unavailable`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from model.inspect import InputError, Unavailable, encode
from model.modelinfo import LoadedModel
from model.results import Token

METHODS = ("grad_x_input", "integrated_gradients")
MAX_STEPS = 512
DEFAULT_STEPS = 50


@dataclass(frozen=True)
class Attribution:
    """Saliency of one prediction over the N input tokens.

    tokens:   the N tokens, special tokens included.
    scores:   (N,) float32 attribution of each token (sum over the hidden dimension); positive = raised
              the target's log-probability. Causal models: tokens after the target position score 0.
    method:   "grad_x_input" or "integrated_gradients"; steps: integration points (IG only, else 0).
    target:   {"kind": "masked" | "next", "position": P, "token": str, "id": int}: the log-probability of
              `token` predicted at position P (masked: for token P itself; next: for the token after P).
    target_score:   log p(target) on the input; baseline_score: on the baseline (zeroed word embeddings).
    convergence_delta: IG: sum(scores) - (target_score - baseline_score) (Captum); None for grad_x_input.
    """

    tokens: list[Token]
    scores: np.ndarray
    method: str
    target: dict[str, Any]
    target_score: float
    baseline_score: float
    convergence_delta: float | None
    steps: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"tokens": [t.text for t in self.tokens], "scores": [float(s) for s in self.scores],
                "method": self.method, "target": self.target, "target_score": self.target_score,
                "baseline_score": self.baseline_score, "convergence_delta": self.convergence_delta,
                "steps": self.steps, "warnings": self.warnings}


def unavailable(loaded: LoadedModel) -> str | None:
    """Why `attribute` cannot run on this model, or None when it can."""
    if loaded.info.backend != "torch" or not hasattr(loaded.backend, "logits_from_embeddings"):
        return f"{loaded.info.name}: attribution needs gradients, which only the torch backend gives (not {loaded.info.backend})"
    if not ({"mlm", "causal"} & set(loaded.info.capabilities)):
        return f"{loaded.info.name} has no language-model head: there is no prediction to attribute"
    return None


def resolve_token(loaded: LoadedModel, token: str | int) -> int:
    """A target token as a vocabulary piece (`run`, `Ġcat`), a word the tokenizer keeps whole, or an id."""
    tok = loaded.tokenizer
    vocab = loaded.info.vocab_size
    if isinstance(token, int) or (isinstance(token, str) and token.strip().isdigit() and token not in tok.get_vocab()):
        i = int(token)
        if not 0 <= i < vocab:
            raise InputError(f"token id {i} is out of range: the vocabulary has ids 0..{vocab - 1}")
        return i
    if token in tok.get_vocab():
        return int(tok.get_vocab()[token])
    for spelling in (token, " " + token):
        ids = tok(spelling, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return int(ids[0])
    raise InputError(f"{token!r} is not one token of {loaded.info.name}'s vocabulary (the tokenizer cuts it into "
                     "several); give one piece as `lmscope tokenize` shows it, or a token id")


def default_position(loaded: LoadedModel, tokens: list[Token]) -> int:
    """The first mask (masked LM) or the last non-special token (causal)."""
    if "mlm" in loaded.info.capabilities:
        mask_id = loaded.tokenizer.mask_token_id
        masks = [i for i, t in enumerate(tokens) if t.id == mask_id]
        if not masks:
            raise InputError(f"no mask token in the text: write {loaded.info.mask_token or '[MASK]'} where a word "
                             "should be predicted, or give --target-position")
        return masks[0]
    real = [i for i, t in enumerate(tokens) if not t.special]
    return real[-1] if real else len(tokens) - 1


def attribute(loaded: LoadedModel, text: str, *, target_position: int | None = None,
              target_token: str | int | None = None, method: str = "integrated_gradients",
              steps: int = DEFAULT_STEPS) -> Attribution:
    """Attribute the log-probability of `target_token` (default: the model's top prediction) at
    `target_position` (default: the first mask / the last token) to the input tokens."""
    from captum.attr import InputXGradient, IntegratedGradients

    reason = unavailable(loaded)
    if reason is not None:
        raise Unavailable(reason)
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: choose {' or '.join(METHODS)}")
    if method == "integrated_gradients" and not 1 <= steps <= MAX_STEPS:
        raise InputError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    enc = encode(loaded, text)
    n = len(enc.tokens)
    position = default_position(loaded, enc.tokens) if target_position is None else int(target_position)
    if not 0 <= position < n:
        raise InputError(f"target position {position} is out of range: the input has tokens 0..{n - 1}")
    kind = "masked" if "mlm" in loaded.info.capabilities else "next"
    backend = loaded.backend
    ids = torch.from_numpy(enc.input_ids)[None, :]  # (1, N)
    tti = None if enc.token_type_ids is None else torch.from_numpy(enc.token_type_ids)[None, :]
    pos = torch.tensor([position])

    with torch.no_grad():
        embeds = backend.input_embeddings(ids).detach().float()  # (1, N, hidden)
        logp = torch.log_softmax(backend.logits_from_embeddings(embeds, pos, tti)[0, 0], -1)  # (V,)
    target_id = int(logp.argmax()) if target_token is None else resolve_token(loaded, target_token)
    special = torch.tensor([t.special for t in enc.tokens])[None, :, None]  # (1, N, 1)
    baseline = torch.where(special, embeds, torch.zeros_like(embeds))  # (1, N, hidden)

    def score(e: torch.Tensor) -> torch.Tensor:  # (b, N, hidden) -> (b,) log p(target)
        return torch.log_softmax(backend.logits_from_embeddings(e, pos, tti)[:, 0], -1)[:, target_id]

    with torch.no_grad():
        target_score, baseline_score = (float(v) for v in score(torch.cat([embeds, baseline])))
    delta = None
    with torch.enable_grad():
        if method == "grad_x_input":
            attr = InputXGradient(score).attribute(embeds.clone().requires_grad_(True))
        else:
            attr, d = IntegratedGradients(score).attribute(embeds, baselines=baseline, n_steps=steps,
                                                           internal_batch_size=min(steps, 16),
                                                           return_convergence_delta=True)
            delta = float(d[0])
    scores = attr[0].detach().sum(-1).numpy().astype(np.float32)  # (N,)
    return Attribution(
        tokens=enc.tokens, scores=scores, method=method,
        target={"kind": kind, "position": position, "token": loaded.tokenizer.convert_ids_to_tokens(target_id),
                "id": target_id},
        target_score=target_score, baseline_score=baseline_score, convergence_delta=delta,
        steps=steps if method == "integrated_gradients" else 0, warnings=list(loaded.info.warnings) + enc.warnings)
