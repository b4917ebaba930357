"""Pretraining corruption: BERT's masked-LM selection (15%, then 80% [MASK] / 10% random / 10% kept),
whole-word masking, RoBERTa's dynamic masking, and the sentence pairs of NSP (BERT) and SOP (ALBERT).

Every function returns what it chose *and why*, so the app can show a student the corruption step.
Selection follows transformers' `DataCollatorForLanguageModeling`: each non-special position is chosen
independently with probability p (Bernoulli), then 80% of the chosen become the mask token, 10% a
uniformly random token, and the remaining 10% stay unchanged (each chosen position draws its own branch).

    >>> ids = torch.tensor([[101, 7, 8, 9, 102]])
    >>> special = torch.tensor([[True, False, False, False, True]])
    >>> r = mlm_mask(ids, special, vocab_size=200, mask_token_id=103, mlm_probability=1.0,
    ...              generator=torch.Generator().manual_seed(0))
    >>> r.selected.tolist()
    [[False, True, True, True, False]]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

T = TypeVar("T")

UNTOUCHED, MASKED, RANDOM, KEPT = 0, 1, 2, 3
ACTION_NAMES = {UNTOUCHED: "untouched", MASKED: "mask", RANDOM: "random", KEPT: "kept"}


@dataclass
class MaskingResult:
    input_ids: torch.Tensor  # (batch, seq) int64 corrupted inputs
    labels: torch.Tensor  # (batch, seq) int64 original id where selected, -100 elsewhere
    selected: torch.Tensor  # (batch, seq) bool: chosen for prediction
    action: torch.Tensor  # (batch, seq) int8: 0 untouched, 1 [MASK], 2 random token, 3 kept unchanged
    # what explain() needs to say why; filled by mlm_mask
    special: torch.Tensor | None = None  # (batch, seq) bool: never-masked positions
    mlm_probability: float = 0.15
    mask_ratio: float = 0.8
    random_ratio: float = 0.1
    whole_word: bool = False


def _word_select(word_ids: torch.Tensor, p: float, generator) -> torch.Tensor:
    """Whole-word selection: draw once per (row, word), then spread the choice to every piece.
    word_ids: (batch, seq) int64, -1 for specials. Returns (batch, seq) bool."""
    n_words = int(word_ids.max().item()) + 1 if word_ids.numel() and word_ids.max() >= 0 else 0
    chosen = torch.bernoulli(torch.full((word_ids.shape[0], max(n_words, 1)), float(p)), generator=generator).bool()  # (batch, word)
    safe = word_ids.clamp(min=0)  # (batch, seq)
    return chosen.gather(1, safe) & (word_ids >= 0)  # (batch, seq)


def mlm_mask(
    input_ids: torch.Tensor,
    special_mask: torch.Tensor,
    *,
    vocab_size: int,
    mask_token_id: int,
    mlm_probability: float = 0.15,
    mask_ratio: float = 0.8,
    random_ratio: float = 0.1,
    word_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    random_token_low: int = 0,
) -> MaskingResult:
    """Choose positions to predict and corrupt them.

    input_ids, special_mask: (batch, seq); special positions ([CLS], [SEP], padding) are never chosen.
    word_ids: (batch, seq) with -1 for specials enables whole-word masking. Selection is one Bernoulli
        draw per word, spread to all its pieces, exactly as transformers' current whole-word path
        (`DataCollatorForLanguageModeling(whole_word_mask=True)`, which replaced DataCollatorForWholeWordMask
        in v5). Each selected piece then draws its OWN 80/10/10 branch, as the old
        DataCollatorForWholeWordMask and Google's original BERT `do_whole_word_mask` did, so one word can
        show "[MASK] ##ing". transformers v5 instead forces every selected piece to [MASK]; to get that,
        pass mask_ratio=1.0, random_ratio=0.0.
    random_token_low: random replacements are drawn uniformly from [random_token_low, vocab_size)
        (transformers draws from the whole vocabulary, specials included; pass the first ordinary id to
        avoid replacing a word by [PAD] or [CLS]).

    Example (whole words, 3 pieces each, everything selected and masked):
        >>> w = torch.tensor([[-1, 0, 0, 1, -1]])
        >>> r = mlm_mask(torch.tensor([[1, 5, 6, 7, 2]]), w < 0, vocab_size=10, mask_token_id=3,
        ...              mlm_probability=1.0, mask_ratio=1.0, random_ratio=0.0, word_ids=w)
        >>> r.input_ids.tolist(), r.labels.tolist()
        ([[1, 3, 3, 3, 2]], [[-100, 5, 6, 7, -100]])
    """
    if not 0 <= mlm_probability <= 1:
        raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
    if mask_ratio < 0 or random_ratio < 0 or mask_ratio + random_ratio > 1:
        raise ValueError("mask_ratio and random_ratio must be >= 0 and sum to at most 1")
    if special_mask.shape != input_ids.shape or (word_ids is not None and word_ids.shape != input_ids.shape):
        raise ValueError(f"input_ids {tuple(input_ids.shape)}, special_mask {tuple(special_mask.shape)} and word_ids "
                         f"{None if word_ids is None else tuple(word_ids.shape)} must have the same (batch, seq) shape")
    if not 0 <= random_token_low < vocab_size:
        raise ValueError(f"random tokens are drawn from [{random_token_low}, {vocab_size}): that range is empty")
    input_ids = input_ids.long()
    special = special_mask.bool()
    if word_ids is not None:
        selected = _word_select(word_ids, mlm_probability, generator) & ~special
    else:
        selected = torch.bernoulli(torch.full(input_ids.shape, float(mlm_probability)), generator=generator).bool() & ~special
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    u = torch.rand(input_ids.shape, generator=generator)  # one draw per position decides its branch
    to_mask = selected & (u < mask_ratio)
    to_random = selected & (u >= mask_ratio) & (u < mask_ratio + random_ratio)
    random_tokens = torch.randint(random_token_low, vocab_size, input_ids.shape, generator=generator)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    corrupted = torch.where(to_random, random_tokens, corrupted)
    action = torch.zeros(input_ids.shape, dtype=torch.int8)
    action[selected] = KEPT
    action[to_mask] = MASKED
    action[to_random] = RANDOM
    return MaskingResult(corrupted, labels, selected, action, special, float(mlm_probability), float(mask_ratio),
                         float(random_ratio), word_ids is not None)


class DynamicMasker:
    """RoBERTa-style dynamic masking: a fresh mask every call (every epoch sees new masks), reproducible
    from the seed. Static masking (BERT's original) is `static_mask`: one fixed mask per example.

        >>> m = DynamicMasker(0, vocab_size=100, mask_token_id=3, mlm_probability=0.5)
        >>> ids, special = torch.arange(10, 42).view(1, 32), torch.zeros(1, 32, dtype=torch.bool)
        >>> torch.equal(m(ids, special).selected, m(ids, special).selected)  # second call: a new mask
        False
    """

    def __init__(self, seed: int, **mask_kwargs):
        self.generator = torch.Generator().manual_seed(seed)
        self.kwargs = mask_kwargs

    def __call__(self, input_ids, special_mask, word_ids=None) -> MaskingResult:
        return mlm_mask(input_ids, special_mask, word_ids=word_ids, generator=self.generator, **self.kwargs)


def static_mask(input_ids, special_mask, example_seed: int, word_ids=None, **mask_kwargs) -> MaskingResult:
    """BERT's static masking: the same mask every time for the same example (seeded by the example's own
    seed, e.g. its index), so every epoch sees identical corruption."""
    return mlm_mask(input_ids, special_mask, word_ids=word_ids,
                    generator=torch.Generator().manual_seed(example_seed), **mask_kwargs)


def explain(result: MaskingResult, tokens: list[str], special: list[bool] | None = None, *, row: int = 0,
            id_to_token=None) -> list[dict]:
    """Per position of one row: what happened to it and why, for the app's "how BERT was trained" panel.

    Each dict: {"token", "action" (untouched / mask / random / kept / special), "shown" (what the model
    sees), "reason"}. special defaults to the mask mlm_mask recorded; id_to_token maps a random
    replacement id to its string.

        >>> r = mlm_mask(torch.tensor([[1, 9, 2]]), torch.tensor([[True, False, True]]), vocab_size=10,
        ...              mask_token_id=3, mlm_probability=1.0, mask_ratio=1.0, random_ratio=0.0)
        >>> [d["reason"] for d in explain(r, ["[CLS]", "cat", "[SEP]"])][:2]
        ['special token: never masked', "selected (100%) -> replaced by the mask token (100% branch); the model must predict 'cat'"]
    """
    if special is None:
        special = result.special[row].tolist() if result.special is not None else [False] * len(tokens)
    if len(tokens) != result.input_ids.shape[1] or len(special) != len(tokens):
        raise ValueError(f"explain needs one token and one special flag per position ({result.input_ids.shape[1]}), "
                         f"got {len(tokens)} tokens and {len(special)} flags")
    pct = lambda x: f"{x:.0%}"  # noqa: E731
    p, m, rnd = result.mlm_probability, result.mask_ratio, result.random_ratio
    why = f"its word was selected ({pct(p)}, whole-word masking)" if result.whole_word else f"selected ({pct(p)})"
    out = []
    for i, tok in enumerate(tokens):
        a = int(result.action[row, i])
        shown_id = int(result.input_ids[row, i])
        shown = id_to_token(shown_id) if id_to_token else str(shown_id)
        if special[i]:
            out.append({"token": tok, "action": "special", "shown": tok, "reason": "special token: never masked"})
        elif a == UNTOUCHED:
            unit = "word" if result.whole_word else "token"
            out.append({"token": tok, "action": "untouched", "shown": tok,
                        "reason": f"not selected (each {unit} is selected with probability {pct(p)})"})
        elif a == MASKED:
            out.append({"token": tok, "action": "mask", "shown": shown,
                        "reason": f"{why} -> replaced by the mask token ({pct(m)} branch); the model must predict '{tok}'"})
        elif a == RANDOM:
            out.append({"token": tok, "action": "random", "shown": shown,
                        "reason": f"{why} -> replaced by a random token ({pct(rnd)} branch); the model must still predict '{tok}'"})
        else:
            out.append({"token": tok, "action": "kept", "shown": tok,
                        "reason": f"{why} -> left unchanged ({pct(1 - m - rnd)} branch); the model must predict it anyway"})
    return out


# ---------------------------------------------------------------------------------------------------
# Sentence pairs


@dataclass
class SentencePair(Generic[T]):
    """label 0 = IsNext / in order; 1 = random / swapped (transformers' next_sentence_label and
    sentence_order_label conventions)."""

    a: T
    b: T
    label: int
    reason: str


def nsp_pairs(documents: list[list[T]], generator: torch.Generator, p_next: float = 0.5) -> list[SentencePair[T]]:
    """BERT next-sentence prediction: for every sentence that has a successor, pair it with that successor
    (probability p_next, label 0) or with a random sentence from another document (label 1).

    A one-sentence document gives no pair of its own (it has no "next"), but its sentence can still be
    drawn as the random B of another document's pair. Pairs are sentence-level; BERT packed several
    sentences into each segment up to the block length.

        >>> ps = nsp_pairs([["a1", "a2"], ["b1"]], torch.Generator().manual_seed(0))
        >>> [(p.a, p.b, p.label) for p in ps]  # one pair: only "a1" has a successor
        [('a1', 'a2', 0)]
    """
    docs = [(di, d) for di, d in enumerate(documents) if d]
    if len(docs) < 2:
        raise ValueError("next-sentence pairs need at least two non-empty documents")
    if all(len(d) < 2 for _, d in docs):
        raise ValueError("next-sentence pairs need a document with at least two sentences")
    pairs = []
    for k, (di, doc) in enumerate(docs):
        for si in range(len(doc) - 1):
            if torch.rand(1, generator=generator).item() < p_next:
                pairs.append(SentencePair(doc[si], doc[si + 1], 0, f"IsNext: B is sentence {si + 1} of document {di}, right after A"))
                continue
            kj = int(torch.randint(len(docs) - 1, (1,), generator=generator))
            kj += kj >= k  # any document but this one
            dj, other = docs[kj]
            sj = int(torch.randint(len(other), (1,), generator=generator))
            pairs.append(SentencePair(doc[si], other[sj], 1, f"NotNext: B is a random sentence ({sj}) from another document ({dj})"))
    return pairs


def sop_pairs(documents: list[list[T]], generator: torch.Generator, p_swap: float = 0.5) -> list[SentencePair[T]]:
    """ALBERT sentence-order prediction: two consecutive segments of one document, kept in order (label 0)
    or swapped (label 1) with probability p_swap. Both halves always come from the same document, so the
    model must learn order, not topic."""
    pairs = []
    for di, doc in enumerate(documents):
        for si in range(len(doc) - 1):
            if torch.rand(1, generator=generator).item() < p_swap:
                pairs.append(SentencePair(doc[si + 1], doc[si], 1, f"swapped: sentences {si + 1} then {si} of document {di}"))
            else:
                pairs.append(SentencePair(doc[si], doc[si + 1], 0, f"in order: sentences {si} then {si + 1} of document {di}"))
    if not pairs:
        raise ValueError("sentence-order pairs need a document with at least two sentences")
    return pairs
