"""Model-size and schedule presets: `tiny` for tests, `small` for the demo models. Every field can be
overridden one by one (TrainConfig(layers=..., hidden=...)); None there means "the preset's value".

    >>> PRESETS["small"].seq_len, PRESETS["small"].mlm_probability
    (64, 0.3)
    >>> preset("huge")
    Traceback (most recent call last):
    ...
    model.errors.InputError: unknown preset 'huge'; choose one of tiny, small
"""
from __future__ import annotations

from dataclasses import dataclass

from model.errors import InputError


@dataclass(frozen=True)
class Preset:
    layers: int
    hidden: int
    heads: int
    vocab_size: int
    seq_len: int
    batch_size: int
    steps: int
    lr: float
    warmup: int
    mlm_probability: float
    dropout: float


PRESETS = {
    # Tests and a first look: a few seconds per hundred steps on one core.
    "tiny": Preset(
        layers=2,  # the smallest stack where "layer" still means something
        hidden=64,
        heads=2,  # 32-dim heads: fewer, wider heads learn faster at this size
        vocab_size=1000,  # the tokenizer trainer stops early on small corpora anyway
        seq_len=32,
        batch_size=16,
        steps=200,
        lr=2e-3,  # small models tolerate (and need) a high learning rate
        warmup=20,
        mlm_probability=0.3,  # see "small"
        dropout=0.0,  # a few hundred steps cannot overfit; dropout would only slow the loss down in tests
    ),
    # The demo models: 1-4 M parameters (ALBERT's shared layer ~1 M, BERT ~4 M; ELMo's LSTMs ~7 M),
    # about 10k tokens/s with bf16 on 2 AVX-512 cores: 5-10 minutes per model.
    "small": Preset(
        layers=4,
        hidden=256,
        heads=4,  # 64-dim heads, as in BERT-base
        vocab_size=2000,  # the toy world has ~300 words: whole words plus some pieces, never [UNK]
        # Short sequences: BERT with 128-token inputs and 15% masking sat on the "predict the most frequent
        # token" plateau at this scale; 64 tokens hold one toy document or one sentence pair.
        seq_len=64,
        batch_size=32,  # many small steps beat few big ones at a fixed CPU budget
        steps=3000,
        lr=1e-3,
        warmup=200,  # ~7% of the steps: enough for Adam's second-moment estimates to settle
        # A higher mask rate than BERT's 15% gives twice the training signal per sequence and measurably
        # pulled the masked-LM models off the unigram plateau sooner (Wettig et al. 2023 report the same).
        mlm_probability=0.3,
        dropout=0.1,  # transformers' default; the toy world is repetitive enough to memorise
    ),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
