"""What a session may ask the training queue for: a TrainRequest (checked before it is queued) or another
kind of request named by its `kind`, and the `lmscope` command line each becomes.

    >>> TrainRequest(arch="gpt2", steps=50).argv(Path("runs/x"))[:4]
    ['gpt2', '--corpus', 'toyworld', '--out']
    >>> TrainRequest(arch="gpt3").validate()
    Traceback (most recent call last):
    ...
    model.jobs.requests.JobError: unknown architecture 'gpt3'; choose one of bert, roberta, albert, gpt2, elmo
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from model.errors import LmscopeError
from model.train.config import ARCHS
from model.train.presets import PRESETS as PRESET_VALUES

PRESETS = tuple(PRESET_VALUES)
MAX_STEPS = 100_000  # a shared server should not accept a week-long job from a typo


class JobError(LmscopeError):
    """A queue request cannot be honoured (unknown job, someone else's job, wrong state, bad setting)."""


@dataclass(frozen=True)
class TrainRequest:
    """What a session asks to train; becomes `lmscope train ARCH --corpus ... --out JOBDIR ...`.

    corpus: "toyworld", "pydoc", or a .txt/.jsonl path (copied into the job directory at submit time).
    None for a number means "the preset's value".
    """

    arch: str
    corpus: str = "toyworld"  # the embedded corpus: works with no file at all
    preset: str = "tiny"  # seconds to minutes on a laptop CPU
    steps: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    seed: int = 0
    checkpoint_every: int | None = None  # None: about 10 checkpoints over the run, for the history slider
    eval_every: int | None = None  # None: about 20 held-out evaluations over the run, for the curve
    threads: int = max(1, (os.cpu_count() or 2) // 2)  # leave the other cores to the app's own sessions
    char_cnn: bool = False  # ELMo only: token vectors from their characters

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise JobError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.preset not in PRESETS:
            raise JobError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every", "eval_every"):
            v = getattr(self, name)
            if v is not None and not 1 <= v <= MAX_STEPS:
                raise JobError(f"{name.replace('_', ' ')} must be between 1 and {MAX_STEPS}, got {v}")
        if self.lr is not None and not 0 < self.lr < 1:
            raise JobError(f"learning rate must be in (0, 1), got {self.lr}")
        if not 1 <= self.threads <= 256:
            raise JobError(f"threads must be between 1 and 256, got {self.threads}")
        if self.char_cnn and self.arch != "elmo":
            raise JobError(f"character-CNN input is an ELMo option, not {self.arch}'s")

    def total_steps(self) -> int:
        return self.steps if self.steps is not None else PRESET_VALUES[self.preset].steps

    def argv(self, out: Path, resume: bool = False) -> list[str]:
        """The `lmscope train` arguments (after `train`)."""
        total = self.total_steps()
        a = [self.arch, "--corpus", self.corpus, "--out", str(out), "--preset", self.preset, "--seed", str(self.seed),
             "--checkpoint-every", str(self.checkpoint_every or max(1, total // 10)),
             "--eval-every", str(self.eval_every or max(1, total // 20)), "--threads", str(self.threads), "--quiet"]
        for name in ("steps", "batch_size", "seq_len", "lr"):
            v = getattr(self, name)
            if v is not None:
                a += [f"--{name.replace('_', '-')}", str(v)]
        return a + (["--char-cnn"] if self.char_cnn else []) + (["--resume"] if resume else [])


# Other kinds of job: a request's `kind` -> "module:Class" of its request (imported when first needed); a
# request without a kind is a TrainRequest. A request class has validate(), total_steps(), argv(out, resume),
# `command` (the lmscope subcommand), and may name `builtin` data names and allowed file `suffixes`.
REQUEST_KINDS = {"finetune": "model.finetune_jobs:FinetuneRequest", "distill": "model.finetune_jobs:DistillRequest"}


def request_from(d: dict):
    """A stored or submitted request dict -> its request object."""
    kind = d.get("kind")
    if kind is None:
        return TrainRequest(**d)
    if kind not in REQUEST_KINDS:
        raise JobError(f"unknown kind of job {kind!r}")
    module, name = REQUEST_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)(**d)
