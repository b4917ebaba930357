"""Training examples from documents of sentences, one builder per objective.

Every example set is a dict of equally long int64 tensors (first axis = example). The order in which
examples are visited and the masks applied to them are pure functions of (seed, step): that is what
makes a resumed run end with exactly the weights of an uninterrupted one.

    gpt2 / elmo  packed blocks of seq_len tokens, documents joined by the end-of-text token
    roberta      whole sentences packed up to seq_len - 2 tokens, <s> ... </s>, dynamic masking, no NSP
    bert         [CLS] A [SEP] B [SEP] next-sentence pairs (50% next / 50% random), masked LM
    albert       [CLS] A [SEP] B [SEP] sentence-order pairs (50% swapped), masked LM
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from kernels.masking import MaskingResult, mlm_mask, nsp_pairs, sop_pairs
from model.train.corpus import check_min_tokens

BYTE_LEVEL = ("gpt2", "roberta", "elmo")


def tokenize_documents(tok, documents: list[list[str]], arch: str) -> list[list[list[int]]]:
    """Documents of sentences -> documents of token-id lists (no special tokens). Byte-level BPE
    sentences after the first get their leading space, as in running text."""
    flat, shape = [], []
    for doc in documents:
        shape.append(len(doc))
        for i, s in enumerate(doc):
            flat.append((" " + s) if (arch in BYTE_LEVEL and i > 0) else s)
    ids = tok(flat, add_special_tokens=False, verbose=False)["input_ids"] if flat else []
    out, k = [], 0
    for n in shape:
        out.append(ids[k:k + n])
        k += n
    return out


def packed_blocks(docs: list[list[list[int]]], seq_len: int, sep_id: int, name: str = "corpus") -> dict[str, torch.Tensor]:
    """Concatenate documents (each followed by sep_id) and cut into (n, seq_len) blocks; the tail that
    does not fill a block is dropped.

        >>> packed_blocks([[[5, 6], [7]], [[8, 9, 10]]], seq_len=4, sep_id=0)["input_ids"].tolist()
        [[5, 6, 7, 0], [8, 9, 10, 0]]
    """
    stream: list[int] = []
    for doc in docs:
        for s in doc:
            stream += s
        stream.append(sep_id)
    n = len(stream) // seq_len
    check_min_tokens(len(stream), seq_len, name)
    return {"input_ids": torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)}


def full_sentences(docs, seq_len: int, bos: int, eos: int, pad: int, name: str = "corpus") -> dict[str, torch.Tensor]:
    """RoBERTa FULL-SENTENCES: whole sentences packed contiguously (crossing documents, with </s> between
    documents) up to seq_len - 2 tokens, wrapped in <s> ... </s>, padded.

        >>> full_sentences([[[5, 6], [7]], [[8, 9, 10]]], seq_len=7, bos=1, eos=2, pad=0)["input_ids"].tolist()
        [[1, 5, 6, 7, 2, 2, 0], [1, 8, 9, 10, 2, 2, 0]]
    """
    room = seq_len - 2
    rows, cur = [], []
    for doc in docs:
        for s in doc:
            s = s[:room]
            if len(cur) + len(s) > room:
                rows.append(cur)
                cur = []
            cur += s
        if cur and len(cur) < room:
            cur.append(eos)  # document boundary
    if cur:
        rows.append(cur)
    check_min_tokens(sum(map(len, rows)), seq_len, name)
    ids = torch.full((len(rows), seq_len), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        r = [bos] + r[:room] + [eos]
        ids[i, : len(r)] = torch.tensor(r)
    return {"input_ids": ids, "attention_mask": (ids != pad).long()}


def sentence_pairs(docs, seq_len: int, cls: int, sep: int, pad: int, kind: str, seed: int) -> dict[str, torch.Tensor]:
    """[CLS] A [SEP] B [SEP] pairs for NSP (kind="nsp") or SOP (kind="sop"), truncated longest-first.
    A and B are single sentences (BERT packed multi-sentence segments; the toy world's sentences are
    short, and trailing padding is trimmed per batch, so the cost is small). pair_labels: 0 = IsNext /
    in order, 1 = random / swapped."""
    g = torch.Generator().manual_seed(seed)
    pairs = nsp_pairs(docs, g) if kind == "nsp" else sop_pairs(docs, g)
    n = len(pairs)
    if n == 0:
        raise ValueError("no sentence pairs: the corpus needs documents with at least two sentences")
    ids = torch.full((n, seq_len), pad, dtype=torch.long)
    types = torch.zeros((n, seq_len), dtype=torch.long)
    labels = torch.empty(n, dtype=torch.long)
    room = seq_len - 3
    for i, p in enumerate(pairs):
        a, b = list(p.a), list(p.b)
        while len(a) + len(b) > room:
            (a if len(a) >= len(b) else b).pop()
        row = [cls] + a + [sep] + b + [sep]
        ids[i, : len(row)] = torch.tensor(row)
        types[i, len(a) + 2: len(row)] = 1
        labels[i] = p.label
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": (ids != pad).long(), "pair_labels": labels}


def special_mask(tok, ids: torch.Tensor) -> torch.Tensor:
    """(n, seq) bool: positions holding a special token ([CLS], [SEP], <s>, padding ...): never masked."""
    return torch.isin(ids, torch.tensor(tok.all_special_ids))


def word_ids_for(tok, ids: torch.Tensor, special: torch.Tensor, wordpiece: bool) -> torch.Tensor:
    """(n, seq) word index per piece for whole-word masking (-1 for specials): a piece starts a new word
    unless it is a WordPiece continuation (##...) or a byte-level / SentencePiece piece without its
    word-start mark (Ġ / ▁)."""
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    if wordpiece:
        starts_of = torch.tensor([not p.startswith("##") for p in vocab])
    else:
        starts_of = torch.tensor([p.startswith(("Ġ", "▁")) for p in vocab])
    starts = starts_of[ids] & ~special  # (n, seq)
    after_special = torch.ones_like(special)
    after_special[:, 1:] = special[:, :-1]
    starts |= after_special & ~special  # a piece right after [CLS] / </s> / [SEP] always starts a word
    word = starts.long().cumsum(1) - 1
    return torch.where(special, torch.full_like(word, -1), word.clamp(min=0))


@lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Which of n examples step `step` trains on: epochs are seeded permutations, visited in order.
    A pure function of its arguments, so a resumed run sees exactly the batches it would have seen.

        >>> batch_indices(10, 4, 0, seed=0).tolist() == batch_indices(10, 4, 0, seed=0).tolist()
        True
    """
    first, last = step * batch_size, (step + 1) * batch_size - 1
    if first // n == last // n:  # the whole batch lies in one epoch (the common case): a slice
        return _epoch_permutation(n, seed, first // n)[first % n: last % n + 1]
    offsets = torch.arange(first, last + 1)
    epochs, pos = offsets // n, offsets % n
    out = torch.empty(batch_size, dtype=torch.long)
    for e in epochs.unique().tolist():
        sel = epochs == e
        out[sel] = _epoch_permutation(n, seed, e)[pos[sel]]
    return out


@dataclass
class Masking:
    """How masked-LM batches are corrupted (see kernels.masking)."""

    vocab_size: int
    mask_token_id: int
    mlm_probability: float
    random_token_low: int  # random replacements never draw a special token

    @classmethod
    def for_tokenizer(cls, tok, mlm_probability: float) -> "Masking":
        return cls(len(tok), tok.mask_token_id, mlm_probability, max(tok.all_special_ids) + 1)

    def __call__(self, examples: dict, generator: torch.Generator) -> MaskingResult:
        return mlm_mask(examples["input_ids"], examples["special"], word_ids=examples.get("word_ids"),
                        generator=generator, vocab_size=self.vocab_size, mask_token_id=self.mask_token_id,
                        mlm_probability=self.mlm_probability, random_token_low=self.random_token_low)


def add_mlm_fields(examples: dict, tok, *, arch: str, whole_word: bool) -> dict:
    """Precompute what masking needs per example: the special-token mask and (whole-word) word ids."""
    examples["special"] = special_mask(tok, examples["input_ids"])
    if whole_word:
        examples["word_ids"] = word_ids_for(tok, examples["input_ids"], examples["special"],
                                            wordpiece=arch in ("bert", "distilbert"))
    return examples


def add_static_masks(examples: dict, masking: Masking, seed: int) -> dict:
    """BERT's original static masking: every example gets one mask, drawn once, reused every epoch."""
    r = masking(examples, torch.Generator().manual_seed(seed * 7_919 + 1_000_000_007))
    examples["masked_input_ids"], examples["labels"] = r.input_ids, r.labels
    return examples


def dynamic_mask(batch: dict, masking: Masking, seed: int, step: int) -> MaskingResult:
    """RoBERTa's dynamic masking: a fresh mask for every batch, a pure function of (seed, step)."""
    return masking(batch, torch.Generator().manual_seed(seed * 7_919 + step))
