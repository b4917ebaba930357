"""TrainConfig: everything one training run depends on, each default with its reason.

Fields left at None take the preset's value (see presets.py); `resolved()` fills them in and checks
every value a user can get wrong, raising ValueError with a one-line message. Importing it does not import
torch: the app's job queue (model.jobs) checks requests against ARCHS.

    >>> cfg = TrainConfig(arch="bert", out_dir="runs/b", preset="tiny", steps=50).resolved()
    >>> cfg.steps, cfg.seq_len, cfg.dynamic_masking
    (50, 32, False)
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from model.errors import LmscopeError
from model.train.presets import preset

ARCHS = ("bert", "roberta", "albert", "gpt2", "elmo")
MLM_ARCHS = ("bert", "roberta", "albert")
BF16_MIN_HIDDEN = 128  # below this, bf16 autocast is slower than float32 on CPU (see TrainConfig.bf16)


class TrainingError(LmscopeError):
    """Training refused or stopped because of something the user can fix (a bad setting, a diverging run, a
    bad --resume)."""


@functools.lru_cache(maxsize=1)
def _bf16_is_fast() -> bool:
    """Whether this CPU runs bfloat16 matmuls clearly faster than float32, measured once per process
    (~0.1 s). The CPU's reported capability is not enough: two hosts of the same VM type, both "AVX512",
    ran bf16 at ~4x and at ~0.5x their fp32 peak."""
    import time

    import torch

    a, b = torch.randn(512, 1024), torch.randn(1024, 512)

    def best(x, y) -> float:
        x @ y  # warm-up
        times = []
        for _ in range(3):
            t = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - t)
        return min(times)

    return best(a.bfloat16(), b.bfloat16()) * 1.25 <= best(a, b)


@dataclass
class TrainConfig:
    arch: str  # bert | roberta | albert | gpt2 | elmo
    out_dir: str
    corpus: str = "toyworld"  # a .txt / .jsonl path, or a built-in name: toyworld | pydoc
    preset: str = "tiny"  # tiny (tests) | small (demo models)
    # ---- None = the preset's value
    steps: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    warmup: int | None = None
    layers: int | None = None
    heads: int | None = None
    hidden: int | None = None
    vocab_size: int | None = None
    mlm_probability: float | None = None
    # None = the preset's, except ALBERT: 0, as in ALBERT v2 (Lan et al. 2020 found dropout hurts its
    # masked LM). Measured here: with the small preset's 0.1 the demo ALBERT never learned subject-verb
    # agreement (71%, the singular prior); with 0 it reached 99.9% at the same budget.
    dropout: float | None = None
    # ---- optimisation
    weight_decay: float = 0.01  # AdamW's usual value for transformers; not applied to biases and norms
    grad_clip: float = 1.0  # max global gradient norm: keeps the first steps of small models stable
    seed: int = 0  # model init, data order, masks and dropout all derive from it
    # ---- objectives
    whole_word: bool = False  # BERT's later whole-word masking: all pieces of a chosen word are predicted
    dynamic_masking: bool | None = None  # None: as published (RoBERTa dynamic, BERT / ALBERT static)
    char_cnn: bool = False  # ELMo only: token vectors from their characters (ELMo's char-CNN), not a table
    # a trained model directory of the same architecture and shape whose tokenizer and weights start the
    # run (continued training on another corpus); None = fresh weights and a tokenizer trained on the corpus
    init_from: str | None = None
    # ---- bookkeeping
    checkpoint_every: int = 500  # a killed run loses at most this many steps
    keep_last: int = 5  # checkpoints kept (the app's training-history slider shows them)
    eval_every: int = 250  # held-out metrics this often, and always at the end
    eval_batches: int = 8  # held-out batches per evaluation: enough for a stable curve, cheap to compute
    heldout_share: float = 0.02  # documents kept out of training for the held-out metrics
    # ---- speed
    threads: int | None = None  # torch threads; None = torch's default (one per core)
    # bfloat16 autocast for matmuls (weights, optimizer and losses stay float32). None = auto: on where
    # hidden >= 128 and bf16 matmuls measure faster here (_bf16_is_fast); a resumed run keeps the choice it
    # started with. Measured on 2 AVX-512 cores with fast bf16: 1.7x tokens/s at the small preset (hidden
    # 256), but 0.7x at tiny (hidden 64), where casts cost more than the matmuls save.
    bf16: bool | None = None
    resume: bool = False  # continue from the newest checkpoint in out_dir

    def resolved(self) -> "TrainConfig":
        """A copy with every None filled in and every value checked."""
        if self.arch not in ARCHS:
            raise TrainingError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        p = asdict(preset(self.preset))
        filled = {k: (getattr(self, k) if getattr(self, k) is not None else v) for k, v in p.items()}
        dyn = self.dynamic_masking if self.dynamic_masking is not None else self.arch == "roberta"
        if self.dropout is None and self.arch == "albert":
            filled["dropout"] = 0.0
        cfg = replace(self, dynamic_masking=dyn, **filled)
        cfg.bf16 = self.bf16 if self.bf16 is not None else (cfg.hidden >= BF16_MIN_HIDDEN and _bf16_is_fast())
        for name in ("steps", "batch_size", "layers", "heads", "hidden", "vocab_size", "checkpoint_every",
                     "keep_last", "eval_every", "eval_batches"):
            if getattr(cfg, name) < 1:
                raise TrainingError(f"{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
        if cfg.hidden % cfg.heads:
            raise TrainingError(f"hidden size {cfg.hidden} must be divisible by the number of heads {cfg.heads}")
        if not 8 <= cfg.seq_len <= 4096:
            raise TrainingError(f"seq-len must be between 8 and 4096, got {cfg.seq_len}")
        if cfg.vocab_size < 100:
            raise TrainingError(f"vocab-size must be at least 100 (the byte-level alphabet alone is 256), got {cfg.vocab_size}")
        if not 0 < cfg.lr < float("inf"):  # too high a rate is allowed: the run stops at the first non-finite loss
            raise TrainingError(f"lr must be a positive number, got {cfg.lr}")
        if cfg.warmup < 0:
            raise TrainingError(f"warmup must be >= 0, got {cfg.warmup}")
        if not 0 < cfg.mlm_probability < 1:
            raise TrainingError(f"mlm-probability must be in (0, 1), got {cfg.mlm_probability}")
        if not 0 <= cfg.dropout < 1:
            raise TrainingError(f"dropout must be in [0, 1), got {cfg.dropout}")
        if not 0 < cfg.heldout_share < 0.5:
            raise TrainingError(f"heldout-share must be in (0, 0.5), got {cfg.heldout_share}")
        if cfg.grad_clip <= 0:
            raise TrainingError(f"grad-clip must be positive, got {cfg.grad_clip}")
        if cfg.char_cnn and cfg.arch != "elmo":
            raise TrainingError(f"character-CNN input is an ELMo option; {cfg.arch} reads token embeddings")
        if cfg.init_from is not None and not (Path(cfg.init_from) / "model.safetensors").is_file():
            raise TrainingError(f"init-from {cfg.init_from} is not a trained model directory (no model.safetensors)")
        if cfg.threads is not None and cfg.threads < 1:
            raise TrainingError(f"threads must be at least 1, got {cfg.threads}")
        return cfg

    # Fields that must match between a checkpoint and a --resume (anything that changes data or shapes).
    RESUME_KEYS = ("arch", "seed", "batch_size", "seq_len", "layers", "heads", "hidden", "vocab_size", "lr",
                   "warmup", "weight_decay", "grad_clip", "mlm_probability", "whole_word", "dynamic_masking",
                   "heldout_share", "dropout", "char_cnn")
