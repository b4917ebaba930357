"""Sampling filters over next-token scores, each one a pure function, plus a trace of what each did.

Every filter takes scores of shape (batch, vocab) and returns new scores with removed tokens at -inf,
with exactly the semantics (ties, `min_tokens_to_keep`) of transformers' logits processors, applied in
the order `generate()` applies them (`GenerationMixin._get_logits_processor`): repetition penalty, then,
only when sampling, temperature, top-k, top-p, min-p, typical-p. Tests check each filter and the whole
pipeline against transformers.

    >>> s = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    >>> top_k(s, 2)
    tensor([[2., 1., -inf, -inf]])
    >>> cfg = SamplingConfig(temperature=0.5, top_p=0.9)
    >>> final, stages = filter_trace(s[0], torch.tensor([0]), cfg)
    >>> [(st.name, int(st.kept)) for st in stages]
    [('input', 4), ('temperature', 4), ('top_p', 2)]
    >>> round(float(stages[-1].probs.sum()), 4)
    1.0
"""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Callable

import torch

NEG_INF = -float("inf")
MAX_TEMPERATURE = 100.0  # beyond this every distribution is uniform to float32 precision: almost surely a typo
MAX_REPETITION_PENALTY = 10.0  # CTRL suggests ~1.2; 10 already wipes out every repeated token
MAX_SEED = 2**63 - 1  # torch seeds are 64-bit; keep them positive and JSON-friendly


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings. Defaults show the model's own distribution, untouched.

    >>> SamplingConfig(top_p=0.9).validate(vocab_size=100)
    >>> SamplingConfig(top_p=0).validate(vocab_size=100)
    Traceback (most recent call last):
    ValueError: top_p must be in (0, 1], got 0
    """

    temperature: float = 1.0  # 1 = no rescaling; < 1 sharpens, > 1 flattens
    top_k: int = 0  # 0 = off (transformers' generate() defaults to 50; we default to the raw model)
    top_p: float = 1.0  # 1 = off; keep the smallest set of tokens whose mass reaches top_p
    typical_p: float = 1.0  # 1 = off; locally typical sampling (Meister et al. 2022)
    min_p: float = 0.0  # 0 = off; drop tokens below min_p x the top token's probability
    repetition_penalty: float = 1.0  # 1 = off; CTRL-style penalty on tokens already in the text
    do_sample: bool = True  # False = greedy: the warpers (temperature ... typical_p) are skipped, like transformers
    seed: int | None = None  # None = a fresh seed per run (model.generate records the one it drew)

    def validate(self, vocab_size: int) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature} (use greedy for 'temperature 0')")
        if not self.temperature <= MAX_TEMPERATURE:
            raise ValueError(f"temperature must be <= {MAX_TEMPERATURE:g}, got {self.temperature}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, numbers.Integral):
            raise ValueError(f"top_k must be a whole number, got {self.top_k!r}")
        if not 0 <= self.top_k <= vocab_size:
            raise ValueError(f"top_k must be between 0 (off) and the vocabulary size {vocab_size}, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 < self.typical_p <= 1:
            raise ValueError(f"typical_p must be in (0, 1], got {self.typical_p}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p}")
        if not 0 < self.repetition_penalty <= MAX_REPETITION_PENALTY:
            raise ValueError(f"repetition_penalty must be in (0, {MAX_REPETITION_PENALTY:g}], got {self.repetition_penalty}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral)
                                      or not 0 <= self.seed <= MAX_SEED):
            raise ValueError(f"seed must be a whole number between 0 and {MAX_SEED}, got {self.seed!r}")

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------
# The filters. scores: (batch, vocab) float; input_ids: (batch, seq) int64. Each mirrors one transformers
# processor line for line, so that ties and rounding come out identical.


def repetition_penalty(scores: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Divide positive (multiply negative) scores of tokens already present by `penalty` (Keskar et al. 2019).
    Each token is penalised once, however often it occurs."""
    score = torch.gather(scores, 1, input_ids)  # (batch, seq) current score of every token in the text
    score = torch.where(score < 0, score * penalty, score / penalty)
    return scores.scatter(1, input_ids, score)  # (batch, vocab)


def temperature(scores: torch.Tensor, t: float) -> torch.Tensor:
    """softmax(scores / t): t < 1 sharpens the distribution, t > 1 flattens it."""
    return scores / t


def top_k(scores: torch.Tensor, k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the k best scores (and every token tied with the k-th)."""
    k = min(max(k, min_tokens_to_keep), scores.shape[-1])
    kth = torch.topk(scores, k)[0][..., -1, None]  # (batch, 1) the k-th best score
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus (Holtzman et al. 2020): keep the most probable tokens whose cumulative probability reaches p.
    Computed from the unlikely end: drop the tail whose mass is <= 1 - p."""
    sorted_scores, order = torch.sort(scores, descending=False)  # (batch, vocab), ascending
    cum = sorted_scores.softmax(-1).cumsum(-1)  # (batch, vocab) tail mass up to each token
    remove = cum <= (1 - p)
    remove[..., -min_tokens_to_keep:] = False
    return scores.masked_fill(remove.scatter(1, order, remove), NEG_INF)


def min_p(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Drop tokens whose probability is below p times the most probable token's (Nguyen et al. 2024)."""
    probs = torch.softmax(scores, -1)  # (batch, vocab)
    remove = probs < p * probs.amax(-1, keepdim=True)
    keep = torch.topk(probs, min(min_tokens_to_keep, probs.shape[-1]), dim=-1).indices  # (batch, min_tokens)
    remove.scatter_(-1, keep, False)
    return scores.masked_fill(remove, NEG_INF)


def typical_p(scores: torch.Tensor, mass: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep tokens whose surprisal is closest to the distribution's entropy, up to `mass` probability."""
    logp = torch.log_softmax(scores, -1)  # (batch, vocab)
    ent = -(logp * logp.exp()).nansum(-1, keepdim=True)  # (batch, 1) entropy in nats
    shifted = (-logp - ent).abs()  # (batch, vocab) how far each surprisal is from the entropy
    sorted_shift, order = torch.sort(shifted, descending=False)
    cum = scores.gather(-1, order).softmax(-1).cumsum(-1)  # (batch, vocab) mass, most typical first
    last = (cum < mass).sum(1).clamp_(max=sorted_shift.shape[-1] - 1)  # (batch,) index of the last kept
    remove = sorted_shift > sorted_shift.gather(1, last.view(-1, 1))
    remove[..., :min_tokens_to_keep] = False
    return scores.masked_fill(remove.scatter(1, order, remove), NEG_INF)


# ---------------------------------------------------------------------------------------------------
# The pipeline and its trace.


@dataclass(frozen=True)
class Stage:
    """The full vocabulary after one filter.

    scores: (batch, vocab) or (vocab,), -inf where removed.
    probs:  same shape, softmax of the scores (exactly 0 where removed); each row sums to 1.
    kept:   (batch,) or () int64, how many tokens this stage left in play (finite scores).
    """

    name: str
    params: dict
    scores: torch.Tensor
    probs: torch.Tensor
    kept: torch.Tensor


Filter = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (scores, input_ids) -> scores


def pipeline(cfg: SamplingConfig) -> list[tuple[str, dict, Filter]]:
    """The active filters in transformers' order, as (name, params, fn(scores, input_ids)).
    Filters that are off (top_k=0, top_p=1, ...) are left out."""
    steps: list[tuple[str, dict, Filter]] = []
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


def _as_batch(scores: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Accept (vocab,) scores with (seq,) or (1, seq) ids, or (batch, vocab) with (batch, seq)."""
    single = scores.dim() == 1
    if single:
        scores = scores[None]
    if scores.dim() != 2:
        raise ValueError(f"scores must be (vocab,) or (batch, vocab), got shape {tuple(scores.shape)}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.shape[0] != scores.shape[0]:
        raise ValueError(f"input_ids batch {input_ids.shape[0]} does not match scores batch {scores.shape[0]}")
    return scores.float(), input_ids.long(), single


def apply(scores: torch.Tensor, input_ids: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """All active filters: (batch, vocab) -> (batch, vocab), or (vocab,) -> (vocab,)."""
    scores, input_ids, single = _as_batch(scores, input_ids)
    for _, _, fn in pipeline(cfg):
        scores = fn(scores, input_ids)
    return scores[0] if single else scores


def filter_trace(scores: torch.Tensor, input_ids: torch.Tensor, cfg: SamplingConfig) -> tuple[torch.Tensor, list[Stage]]:
    """Like `apply`, but also returns the full vocabulary after every stage; the first stage, 'input',
    is the model's own distribution. Shapes follow `scores`: (vocab,) or (batch, vocab)."""
    scores, input_ids, single = _as_batch(scores, input_ids)

    def stage(name: str, params: dict, s: torch.Tensor) -> Stage:
        probs = torch.softmax(s, -1)  # (batch, vocab) exp(-inf) = 0 exactly
        kept = torch.isfinite(s).sum(-1)  # (batch,)
        return Stage(name, params, *((s[0], probs[0], kept[0]) if single else (s, probs, kept)))

    stages = [stage("input", {}, scores)]
    for name, params, fn in pipeline(cfg):
        scores = fn(scores, input_ids)
        stages.append(stage(name, params, scores))
    return (scores[0] if single else scores), stages


def pick(scores: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Filtered scores (batch, vocab) -> (batch,) token ids ((vocab,) -> () likewise).

    Greedy: argmax. Sampling: one `torch.multinomial` draw from softmax(scores), the very call transformers'
    `_sample` makes. transformers draws from the global torch RNG; a CPU `torch.Generator` seeded with s
    yields the same stream as `torch.manual_seed(s)`, so passing `generator` reproduces
    `torch.manual_seed(s); model.generate(do_sample=True)` without touching the global RNG (None = global)."""
    single = scores.dim() == 1
    if single:
        scores = scores[None]
    if not cfg.do_sample:
        ids = scores.argmax(-1)  # (batch,)
    else:
        ids = torch.multinomial(torch.softmax(scores.float(), -1), num_samples=1, generator=generator).squeeze(1)
    return ids[0] if single else ids
