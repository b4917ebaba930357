"""How BERT was trained, on the user's own sentence: the masked-LM corruption step as plain rows, and
the text a user gets by masking picked words.

`corrupt` runs `kernels.masking.mlm_mask` once over one sentence (15% of the tokens chosen; of those 80%
become the mask token, 10% a random token, 10% stay) and returns what happened to every token and why.
The same seed gives the same corruption; a new seed is a new draw, like a new epoch of RoBERTa's
dynamic masking.

    >>> demo = corrupt(load_model("demo/bert"), "the cat sat on the mat .", seed=3)   # doctest: +SKIP
    >>> [(r.token, r.action) for r in demo.rows][:3]                                 # doctest: +SKIP
    [('[CLS]', 'special'), ('the', 'untouched'), ('cat', 'mask')]

    >>> toks = [Token("[CLS]", 1, 0, 0, True), Token("un", 5, 0, 2, False, 0), Token("##real", 6, 2, 6, False, 0),
    ...         Token("cat", 7, 7, 10, False, 1), Token("[SEP]", 2, 0, 0, True)]
    >>> mask_positions("unreal cat", toks, [2], "[MASK]", whole_word=True)
    ('[MASK][MASK] cat', {0: 'un', 6: '##real'})
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from kernels.masking import ACTION_NAMES, explain, mlm_mask
from model.inspect import InputError, encode
from model.modelinfo import LoadedModel
from model.results import Token


@dataclass(frozen=True)
class CorruptionRow:
    """One token of the corrupted sentence.

    action: "special" (never chosen), "untouched" (not chosen), "mask", "random" or "kept" (chosen: the
    model must predict the original token there). shown: what the model sees at this position.
    """

    position: int
    token: str
    action: str
    shown: str
    reason: str

    @property
    def predicted(self) -> bool:
        """True where the training loss is computed (the chosen positions)."""
        return self.action in ("mask", "random", "kept")


@dataclass(frozen=True)
class CorruptionDemo:
    """One corruption draw over one sentence. rows: one per token, specials included."""

    text: str
    rows: list[CorruptionRow]
    seed: int
    mlm_probability: float
    whole_word: bool

    def counts(self) -> dict[str, int]:
        """How many tokens took each action (every action name present, zeros included)."""
        out = {name: 0 for name in ("special", *ACTION_NAMES.values())}
        for r in self.rows:
            out[r.action] += 1
        return out


def corrupt(loaded: LoadedModel, text: str, seed: int = 0, *, mlm_probability: float = 0.15,
            whole_word: bool = False) -> CorruptionDemo:
    """Apply BERT's pretraining corruption to `text` with a seeded generator.

    whole_word: choose whole words (every piece of a chosen word is chosen), as BERT's later
    whole-word-masking checkpoints did. Raises InputError for an empty text or a model without a mask
    token (GPT-2 was never trained this way).
    """
    mask_id = getattr(loaded.tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise InputError(f"{loaded.info.name} has no mask token: it was not trained with masked-LM corruption")
    if not 0 <= mlm_probability <= 1:
        raise InputError(f"the masking probability must be between 0 and 1, got {mlm_probability}")
    enc = encode(loaded, text)
    tokens = [t.text for t in enc.tokens]
    special = [t.special for t in enc.tokens]
    ids = torch.from_numpy(enc.input_ids)[None, :]  # (1, N)
    special_mask = torch.tensor([special])  # (1, N) bool
    word_ids = None
    if whole_word:
        # One id per (segment, word), -1 for specials: pieces of one word share an id.
        keys: dict[tuple[int, int], int] = {}
        wid = [-1 if t.special or t.word is None else keys.setdefault((t.segment, t.word), len(keys)) for t in enc.tokens]
        word_ids = torch.tensor([wid])  # (1, N) int64
    result = mlm_mask(ids, special_mask, vocab_size=loaded.info.vocab_size, mask_token_id=int(mask_id),
                      mlm_probability=mlm_probability, word_ids=word_ids,
                      generator=torch.Generator().manual_seed(int(seed)))
    rows = explain(result, tokens, special, id_to_token=loaded.tokenizer.convert_ids_to_tokens)
    return CorruptionDemo(
        text=text,
        rows=[CorruptionRow(i, r["token"], r["action"], r["shown"], r["reason"]) for i, r in enumerate(rows)],
        seed=int(seed), mlm_probability=mlm_probability, whole_word=whole_word,
    )


def mask_positions(text: str, tokens: list[Token], positions: Iterable[int], mask_token: str,
                   whole_word: bool = False) -> tuple[str, dict[int, str]]:
    """`text` with the character span of every picked token replaced by `mask_token`, and what each
    inserted mask hides: {character offset of the mask in the new text: the original piece}.

    positions index `tokens` (as `encode` returned them for `text`); special tokens are ignored.
    whole_word: also mask every other piece of a picked token's word (one mask per piece, so the model
    predicts each piece). Spans are replaced right to left, so earlier offsets stay valid.
    """
    picked = {p for p in positions if 0 <= p < len(tokens) and not tokens[p].special}
    if whole_word:
        words = {(tokens[p].segment, tokens[p].word) for p in picked if tokens[p].word is not None}
        picked |= {i for i, t in enumerate(tokens) if not t.special and (t.segment, t.word) in words}
    spans = {}
    for p in sorted(picked):
        t = tokens[p]
        if t.end > t.start:
            spans.setdefault((t.start, t.end), t.text)
    out = text
    kept: list[tuple[int, int, str]] = []
    last_start = len(text) + 1
    for (start, end), piece in sorted(spans.items(), reverse=True):
        if end > last_start:  # overlapping spans (byte pieces of one character): mask the character once
            continue
        out = out[:start] + mask_token + out[end:]
        kept.append((start, end, piece))
        last_start = start
    # New offsets: each mask left of a span shifts it by len(mask) - len(replaced span).
    truths, shift = {}, 0
    for start, end, piece in sorted(kept):
        truths[start + shift] = piece
        shift += len(mask_token) - (end - start)
    return out, truths
