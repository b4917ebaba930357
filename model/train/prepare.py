"""From a corpus to ready tensors: split documents, train the tokenizer, build the examples of the
architecture's objective (examples.py), precompute masks, and measure the trivial baselines a trained
model must beat.

Everything that can go wrong with a user's corpus goes wrong here, before the trainer writes a file.

    >>> prep = prepare(TrainConfig(arch="gpt2", out_dir="x", corpus="notes.txt").resolved())  # doctest: +SKIP
    >>> batch = batch_for_step(prep, cfg, step=0)                                              # doctest: +SKIP
    >>> batch["input_ids"].shape                                                               # doctest: +SKIP
    torch.Size([16, 32])
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from model.train import examples as D
from model.train.config import MLM_ARCHS, TrainConfig
from model.train.corpus import Corpus, CorpusError, load_corpus
from model.train.tokenizer import train_tokenizer

HELDOUT_MASK_SEED = 99  # held-out examples get one fixed mask (seed + this), so every eval sees the same task
MODEL_FIELDS = ("input_ids", "attention_mask", "token_type_ids", "labels", "pair_labels")


@dataclass
class Prepared:
    tok: object  # a transformers fast tokenizer
    train: dict[str, torch.Tensor]  # examples, first axis = example
    heldout: dict[str, torch.Tensor]
    corpus: Corpus
    masking: D.Masking | None  # None for causal models
    baselines: dict = field(default_factory=dict)  # see baselines()
    heldout_source: str = "held-out documents"

    @property
    def num_train(self) -> int:
        return self.train["input_ids"].shape[0]


def split_documents(docs: list, share: float, seed: int) -> tuple[list, list]:
    """(train, held-out) documents: a seeded random share held out, at least 2 documents when there are
    10 or more, none below that (tiny corpora are evaluated on training examples, and the record says so)."""
    if len(docs) < 10:
        return docs, []
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    n_held = max(2, round(len(docs) * share))
    return [docs[i] for i in order[n_held:]], [docs[i] for i in order[:n_held]]


def build_examples(cfg: TrainConfig, tok, docs: list[list[str]], seed: int) -> dict[str, torch.Tensor]:
    """The objective's examples from documents of sentences (see examples.py for each layout)."""
    ids = D.tokenize_documents(tok, docs, cfg.arch)
    n = cfg.seq_len
    try:
        if cfg.arch in ("gpt2", "elmo"):
            return D.packed_blocks(ids, n, tok.eos_token_id, name=str(cfg.corpus))
        if cfg.arch == "roberta":
            return D.full_sentences(ids, n, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, name=str(cfg.corpus))
        kind = "nsp" if cfg.arch == "bert" else "sop"
        return D.sentence_pairs(ids, n, tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, kind, seed)
    except CorpusError:
        raise
    except ValueError as e:  # e.g. "next-sentence pairs need at least two non-empty documents"
        raise CorpusError(f"corpus {cfg.corpus}: {e}") from None


def prepare(cfg: TrainConfig, tok=None, corpus: Corpus | None = None) -> Prepared:
    """cfg must be resolved. tok: reuse a tokenizer (resume); None trains one on the training documents.
    corpus: documents already read (e.g. model.train.english); None reads cfg.corpus.
    Raises CorpusError (a ValueError) with a clear message."""
    corpus = corpus if corpus is not None else load_corpus(cfg.corpus)
    train_docs, held_docs = split_documents(corpus.documents, cfg.heldout_share, cfg.seed)
    if tok is None:
        tok = train_tokenizer(cfg.arch, (s for d in train_docs for s in d), cfg.vocab_size, max_length=cfg.seq_len)
    train = build_examples(cfg, tok, train_docs, cfg.seed)
    if train["input_ids"].shape[0] < cfg.batch_size:
        raise CorpusError(f"corpus {corpus.name} gives {train['input_ids'].shape[0]} training examples of "
                          f"{cfg.seq_len} tokens; one batch needs {cfg.batch_size} (use a bigger corpus or a "
                          f"smaller --batch-size / --seq-len)")
    source = "held-out documents"
    try:
        heldout = build_examples(cfg, tok, held_docs, cfg.seed + 1) if held_docs else None
    except CorpusError:
        heldout = None
    if heldout is None or heldout["input_ids"].shape[0] == 0:
        heldout = {k: v[-cfg.batch_size:] for k, v in train.items()}
        source = "training examples (the corpus is too small to hold documents out)"
    masking = None
    if cfg.arch in MLM_ARCHS:
        masking = D.Masking.for_tokenizer(tok, cfg.mlm_probability)
        for ex in (train, heldout):
            D.add_mlm_fields(ex, tok, arch=cfg.arch, whole_word=cfg.whole_word)
        if not cfg.dynamic_masking:
            D.add_static_masks(train, masking, cfg.seed)
        D.add_static_masks(heldout, masking, cfg.seed + HELDOUT_MASK_SEED)
    prep = Prepared(tok, train, heldout, corpus, masking, heldout_source=source)
    prep.baselines = baselines(cfg, prep)
    return prep


def batch_for_step(prep: Prepared, cfg: TrainConfig, step: int, rank: int = 0, world: int = 1) -> dict:
    """The examples of optimizer step `step` with their masks: a pure function of (seed, step).
    The global batch is built (and masked) whole, then each of `world` processes takes its share."""
    rows = D.batch_indices(prep.num_train, cfg.batch_size, step, cfg.seed)
    batch = {k: v[rows] for k, v in prep.train.items()}
    if prep.masking is not None:
        if cfg.dynamic_masking:
            r = D.dynamic_mask(batch, prep.masking, cfg.seed, step)
            batch["input_ids"], batch["labels"] = r.input_ids, r.labels
        else:
            batch["input_ids"] = batch["masked_input_ids"]
    return trim_padding({k: v[rank::world] for k, v in batch.items() if k in MODEL_FIELDS})


def trim_padding(batch: dict) -> dict:
    """Drop trailing columns that are padding in every row. Exact: padded keys get no attention and
    padded positions are never predicted, so the loss is the same, for less compute."""
    if "attention_mask" not in batch:
        return batch
    width = int(batch["attention_mask"].sum(1).max())
    return {k: (v[:, :width] if v.ndim == 2 else v) for k, v in batch.items()}


def heldout_batches(prep: Prepared, batch_size: int, max_batches: int):
    """Fixed held-out batches (fixed masks) for evaluation."""
    ex = prep.heldout
    n = ex["input_ids"].shape[0]
    for b in range(min(max_batches, math.ceil(n / batch_size))):
        sl = slice(b * batch_size, min(n, (b + 1) * batch_size))
        batch = {k: v[sl] for k, v in ex.items()}
        if "masked_input_ids" in batch:
            batch["input_ids"] = batch["masked_input_ids"]
        yield trim_padding({k: v for k, v in batch.items() if k in MODEL_FIELDS})


def eval_targets(prep: Prepared, cfg: TrainConfig, max_batches: int) -> torch.Tensor:
    """(n,) every token id the evaluation scores: masked labels (MLM) or next tokens (causal)."""
    out = []
    for batch in heldout_batches(prep, cfg.batch_size, max_batches):
        if "labels" in batch:
            out.append(batch["labels"][batch["labels"] != -100])
        else:
            out.append(batch["input_ids"][:, 1:].reshape(-1))
    return torch.cat(out)


def baselines(cfg: TrainConfig, prep: Prepared) -> dict:
    """What a model that ignores context scores on exactly the held-out targets the evaluation uses.

    unigram_loss: cross-entropy (nats) of the training-set token frequencies (add-one smoothed);
    most_frequent_accuracy: top-1 accuracy of always predicting the most frequent training token.
    A model whose held-out loss is near unigram_loss has learned token frequencies and nothing else.
    """
    ids = prep.train["input_ids"].reshape(-1)
    if prep.tok.pad_token_id is not None and cfg.arch in MLM_ARCHS:
        ids = ids[ids != prep.tok.pad_token_id]
    counts = torch.bincount(ids, minlength=len(prep.tok)).double() + 1.0
    if cfg.arch in MLM_ARCHS:  # masked positions are never special tokens
        counts[torch.tensor(prep.tok.all_special_ids)] = 0.0
    logp = (counts / counts.sum()).log()
    targets = eval_targets(prep, cfg, cfg.eval_batches)
    loss = float(-logp[targets].mean())
    top = int(counts.argmax())
    return {"unigram_loss": loss, "unigram_perplexity": math.exp(loss),
            "most_frequent_token": prep.tok.convert_ids_to_tokens(top),
            "most_frequent_accuracy": float((targets == top).double().mean()), "heldout_targets": int(targets.numel())}
