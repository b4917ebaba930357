"""Sampling filters over next-token scores, each one a pure function, plus a trace of what each did.

Every filter takes scores of shape (batch, vocab) and returns new scores with removed tokens at -inf,
with exactly the semantics (ties, `min_tokens_to_keep`) of transformers' logits processors, applied in
the order `generate()` applies them: repetition penalty, then (sampling only) temperature, top-k, top-p,
min-p, typical-p. Tests check each against transformers.

    >>> s = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    >>> top_k(s, 2)
    tensor([[2., 1., -inf, -inf]])
    >>> cfg = SamplingConfig(temperature=0.5, top_p=0.9)
    >>> final, stages = filter_trace(s, torch.tensor([[0]]), cfg)
    >>> [st.name for st in stages]
    ['input', 'temperature', 'top_p']
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

NEG_INF = -float("inf")


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings. Defaults show the model's own distribution, untouched."""

    temperature: float = 1.0  # 1 = no rescaling; < 1 sharpens, > 1 flattens
    top_k: int = 0  # 0 = off (transformers' generate() defaults to 50; we default to the raw model)
    top_p: float = 1.0  # 1 = off; keep the smallest set of tokens whose mass reaches top_p
    typical_p: float = 1.0  # 1 = off; locally typical sampling (Meister et al. 2022)
    min_p: float = 0.0  # 0 = off; drop tokens below min_p x the top token's probability
    repetition_penalty: float = 1.0  # 1 = off; CTRL-style penalty on tokens already in the text
    do_sample: bool = True  # False = greedy: warpers are skipped, like transformers

    def validate(self, vocab_size: int) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature} (use greedy for 'temperature 0')")
        if self.temperature > 100:
            raise ValueError(f"temperature must be <= 100, got {self.temperature}")
        if not 0 <= self.top_k <= vocab_size:
            raise ValueError(f"top_k must be between 0 (off) and the vocabulary size {vocab_size}, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 < self.typical_p <= 1:
            raise ValueError(f"typical_p must be in (0, 1], got {self.typical_p}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p}")
        if not 0 < self.repetition_penalty <= 10:
            raise ValueError(f"repetition_penalty must be in (0, 10], got {self.repetition_penalty}")

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------
# The filters. scores: (batch, vocab) float; input_ids: (batch, seq) int64.


def repetition_penalty(scores: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Divide positive (multiply negative) scores of tokens already present by `penalty` (Keskar et al. 2019)."""
    score = torch.gather(scores, 1, input_ids)  # (batch, seq)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return scores.scatter(1, input_ids, score)


def temperature(scores: torch.Tensor, t: float) -> torch.Tensor:
    return scores / t


def top_k(scores: torch.Tensor, k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the k best scores (and every token tied with the k-th)."""
    k = min(max(k, min_tokens_to_keep), scores.shape[-1])
    kth = torch.topk(scores, k)[0][..., -1, None]  # (batch, 1)
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus: keep the most probable tokens whose cumulative probability reaches p."""
    sorted_scores, order = torch.sort(scores, descending=False)  # (batch, vocab), ascending
    cum = sorted_scores.softmax(-1).cumsum(-1)
    remove = cum <= (1 - p)
    remove[..., -min_tokens_to_keep:] = False
    return scores.masked_fill(remove.scatter(1, order, remove), NEG_INF)


def min_p(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Drop tokens whose probability is below p times the most probable token's."""
    probs = torch.softmax(scores, -1)
    remove = probs < p * probs.amax(-1, keepdim=True)
    keep = torch.topk(probs, min(min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
    remove.scatter_(-1, keep, False)
    return scores.masked_fill(remove, NEG_INF)


def typical_p(scores: torch.Tensor, mass: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep tokens whose surprisal is closest to the distribution's entropy, up to `mass` probability."""
    logp = torch.log_softmax(scores, -1)
    ent = -(logp * logp.exp()).nansum(-1, keepdim=True)  # (batch, 1)
    shifted = (-logp - ent).abs()
    sorted_shift, order = torch.sort(shifted, descending=False)
    cum = scores.gather(-1, order).softmax(-1).cumsum(-1)
    last = (cum < mass).sum(1).clamp_(max=sorted_shift.shape[-1] - 1)
    remove = sorted_shift > sorted_shift.gather(1, last.view(-1, 1))
    remove[..., :min_tokens_to_keep] = False
    return scores.masked_fill(remove.scatter(1, order, remove), NEG_INF)


# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """Scores after one filter. scores: (batch, vocab); -inf where removed."""

    name: str
    params: dict
    scores: torch.Tensor

    def probs(self) -> torch.Tensor:
        """(batch, vocab) distribution after this stage (0 where removed)."""
        return torch.softmax(self.scores.float(), -1)

    def kept(self) -> torch.Tensor:
        """(batch,) how many tokens survive."""
        return torch.isfinite(self.scores).sum(-1)


def pipeline(cfg: SamplingConfig) -> list[tuple[str, dict, callable]]:
    """The active filters in transformers' order, as (name, params, fn(scores, input_ids))."""
    steps = []
    if cfg.repetition_penalty != 1.0:
        steps.append(("repetition_penalty", {"repetition_penalty": cfg.repetition_penalty},
                      lambda s, ids: repetition_penalty(s, ids, cfg.repetition_penalty)))
    if not cfg.do_sample:
        return steps
    if cfg.temperature != 1.0:
        steps.append(("temperature", {"temperature": cfg.temperature}, lambda s, ids: temperature(s, cfg.temperature)))
    if cfg.top_k:
        steps.append(("top_k", {"top_k": cfg.top_k}, lambda s, ids: top_k(s, cfg.top_k)))
    if cfg.top_p < 1.0:
        steps.append(("top_p", {"top_p": cfg.top_p}, lambda s, ids: top_p(s, cfg.top_p)))
    if cfg.min_p > 0.0:
        steps.append(("min_p", {"min_p": cfg.min_p}, lambda s, ids: min_p(s, cfg.min_p)))
    if cfg.typical_p < 1.0:
        steps.append(("typical_p", {"typical_p": cfg.typical_p}, lambda s, ids: typical_p(s, cfg.typical_p)))
    return steps


def apply(scores: torch.Tensor, input_ids: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """All active filters: (batch, vocab) -> (batch, vocab)."""
    scores = scores.float()
    for _, _, fn in pipeline(cfg):
        scores = fn(scores, input_ids)
    return scores


def filter_trace(scores: torch.Tensor, input_ids: torch.Tensor, cfg: SamplingConfig) -> tuple[torch.Tensor, list[Stage]]:
    """Like `apply`, but also returns the full-vocabulary scores after every stage (first: 'input')."""
    scores = scores.float()
    stages = [Stage("input", {}, scores)]
    for name, params, fn in pipeline(cfg):
        scores = fn(scores, input_ids)
        stages.append(Stage(name, params, scores))
    return scores, stages


def pick(scores: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """(batch, vocab) filtered scores -> (batch,) token ids: argmax for greedy, else one multinomial draw
    from the global torch RNG — the same call transformers' `_sample` makes, so seeded runs agree."""
    if not cfg.do_sample:
        return scores.argmax(-1)
    return torch.multinomial(torch.softmax(scores, -1), num_samples=1).squeeze(1)
