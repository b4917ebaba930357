"""Language-model examples for fine-tuning and distillation: a corpus cut into fixed-length token blocks,
masked-LM masks that are a pure function of (seed, step), and held-out perplexity.

    >>> blocks = lm_blocks(tok, docs, 64, masked=False)     # (n, 64) ids, -100-free  # doctest: +SKIP
    >>> b = lm_batch(blocks, idx, tok, masked=True, seed=0, step=3)                    # doctest: +SKIP
    >>> b["labels"].ne(-100).float().mean()   # ~0.15 of the positions are predicted  # doctest: +SKIP

Causal models predict every next token of a block (labels = input_ids; the model shifts them);
masked models predict 15% of the non-special positions (80% [MASK], 10% a random token, 10% kept).
"""
from __future__ import annotations

import math

import torch

MLM_PROBABILITY = 0.15
MAX_BLOCKS = 20000  # training blocks kept from a large corpus (a CPU fine-tune never gets through more)
MAX_HELDOUT_BLOCKS = 128


def lm_blocks(tok, docs: list[list[str]], length: int, masked: bool, limit: int = MAX_BLOCKS) -> torch.Tensor:
    """(n, length) token ids: the documents' tokens packed end to end (an end-of-text token between
    documents for causal models) and cut into blocks; masked models' blocks are framed by [CLS] ... [SEP]."""
    inner = length - 2 if masked else length
    sep = [] if masked else [tok.eos_token_id] if tok.eos_token_id is not None else []
    stream: list[int] = []
    need = inner * limit
    for i in range(0, len(docs), 500):  # batched: the Rust tokenizer works on many documents at once
        for ids in tok([" ".join(d) for d in docs[i:i + 500]], add_special_tokens=False)["input_ids"]:
            stream += ids + sep
        if len(stream) >= need:
            break
    n = min(limit, len(stream) // inner)
    blocks = torch.tensor(stream[: n * inner], dtype=torch.long).view(n, inner)
    if masked:
        cls = torch.full((n, 1), tok.cls_token_id, dtype=torch.long)
        end = torch.full((n, 1), tok.sep_token_id, dtype=torch.long)
        blocks = torch.cat([cls, blocks, end], dim=1)
    return blocks


def mask_batch(ids: torch.Tensor, tok, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) of a masked-LM batch; labels are -100 where nothing is predicted."""
    special = torch.zeros_like(ids, dtype=torch.bool)
    for t in tok.all_special_ids:
        special |= ids == t
    chosen = (torch.rand(ids.shape, generator=generator) < MLM_PROBABILITY) & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    r = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(len(tok), ids.shape, generator=generator)
    inputs = torch.where(chosen & (r < 0.8), torch.full_like(ids, tok.mask_token_id), ids)
    inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_ids, inputs)
    return inputs, labels


def lm_batch(blocks: torch.Tensor, idx: list[int], tok, masked: bool, seed: int, step: int) -> dict:
    """The batch of blocks[idx] for a training step: masks depend on (seed, step) only."""
    ids = blocks[idx]
    if not masked:
        return {"input_ids": ids, "labels": ids}
    inputs, labels = mask_batch(ids, tok, torch.Generator().manual_seed(seed * 1_000_003 + step))
    return {"input_ids": inputs, "labels": labels}


def heldout_batches(blocks: torch.Tensor, tok, masked: bool, seed: int, batch_size: int = 32) -> list[dict]:
    """Fixed held-out batches (masks drawn once from the seed), so before/after numbers compare."""
    g = torch.Generator().manual_seed(seed + 999)
    out = []
    for i in range(0, len(blocks), batch_size):
        ids = blocks[i:i + batch_size]
        if masked:
            inputs, labels = mask_batch(ids, tok, g)
            out.append({"input_ids": inputs, "labels": labels})
        else:
            out.append({"input_ids": ids, "labels": ids})
    return out


def predicted_logits(logits: torch.Tensor, labels: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions, vocab) logits and (positions,) targets of the positions a batch predicts."""
    if causal:
        logits, labels = logits[:, :-1], labels[:, 1:]
    keep = labels != -100
    return logits[keep], labels[keep]


def perplexity(model, batches: list[dict], causal: bool) -> dict:
    """{"loss", "perplexity", "tokens"} of a model over fixed batches (mean cross-entropy per predicted token)."""
    total, n = 0.0, 0
    with torch.no_grad():
        for b in batches:
            logits = model(input_ids=b["input_ids"]).logits
            lg, tg = predicted_logits(logits, b["labels"], causal)
            total += float(torch.nn.functional.cross_entropy(lg.float(), tg, reduction="sum"))
            n += int(tg.numel())
    loss = total / max(n, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": n}


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The examples of step `step`: a fresh seeded permutation of range(n) every epoch.

        >>> sorted(batch_indices(4, 2, 0, 0) + batch_indices(4, 2, 1, 0))
        [0, 1, 2, 3]
    """
    out = []
    for i in range(step * batch_size, (step + 1) * batch_size):
        epoch, j = divmod(i, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        out.append(int(perm[j]))
    return out
