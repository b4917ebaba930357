"""Fine-tuning and distillation as jobs of the app's training queue (model.jobs): what a session asks
for, checked at submit time, turned into `lmscope finetune ...` / `lmscope distill ...` arguments, and
labelled uploads or typed examples stored like corpus uploads (size-limited, in the session's own folder).

    >>> q = JobQueue()                                                                        # doctest: +SKIP
    >>> q.submit(owner, {"kind": "finetune", "base": "demo/bert", "corpus": "toy-agreement"}) # doctest: +SKIP

The queue stores `asdict(request)` in job.json; `model.jobs.request_from` rebuilds the request by its `kind`.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from model.jobs.requests import MAX_STEPS, JobError
from model.jobs.uploads import BUILTIN_CORPORA, max_upload_bytes, upload_dir
from model.train.labelled import BUILTIN_TASKS, MAX_BYTES, parse_labelled

MAX_TYPED = 2000  # typed examples per request
DEFAULT_THREADS = max(1, (os.cpu_count() or 2) // 2)


def _check_model(ref: str, what: str) -> None:
    """A model the server may read (a listed name or a path inside the allowed folders), not ELMo/ONNX."""
    from model.errors import ModelLoadError
    from model.modelfiles import read_config
    from model.registry import resolve

    try:
        path, name = resolve(ref, restrict=True)
        if path.suffix == ".onnx":
            raise JobError(f"{name} is an ONNX export (inference only): choose the model directory it came from")
        if read_config(path)["model_type"] == "lmscope-elmo":
            raise JobError(f"{name} is an ELMo model (lmscope's own LSTM, not a transformers model): it cannot be "
                           f"the {what}; choose a BERT, RoBERTa, ALBERT or GPT-2 model")
    except ModelLoadError as e:
        raise JobError(str(e)) from None


def _check_common(steps: int, lr: float, batch_size: int, threads: int) -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise JobError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    if not 0 < lr < 1:
        raise JobError(f"learning rate must be in (0, 1), got {lr}")
    if not 1 <= batch_size <= 1024:
        raise JobError(f"batch size must be between 1 and 1024, got {batch_size}")
    if not 1 <= threads <= 256:
        raise JobError(f"threads must be between 1 and 256, got {threads}")


@dataclass(frozen=True)
class FinetuneRequest:
    """`lmscope finetune BASE --data CORPUS --task TASK ...`. corpus: a built-in task / corpus or a file."""

    base: str
    corpus: str = "toy-agreement"
    task: str = "classify"
    steps: int = 60
    lr: float = 1e-4
    batch_size: int = 16
    freeze_layers: int = 0
    head_only: bool = False
    seed: int = 0
    threads: int = DEFAULT_THREADS
    kind: str = "finetune"
    arch: str = "finetune"  # the job id's prefix and the Train page's "model" column

    command = "finetune"

    @property
    def builtin(self) -> tuple[str, ...]:
        return tuple(BUILTIN_TASKS) if self.task == "classify" else BUILTIN_CORPORA

    @property
    def suffixes(self) -> tuple[str, ...]:
        return (".csv", ".jsonl") if self.task == "classify" else (".txt", ".jsonl")

    def validate(self) -> None:
        if self.task not in ("classify", "lm"):
            raise JobError(f"unknown task {self.task!r}; choose classify or lm")
        _check_common(self.steps, self.lr, self.batch_size, self.threads)
        if self.freeze_layers < 0 or self.freeze_layers > 1000:
            raise JobError(f"layers to freeze must be between 0 and 1000, got {self.freeze_layers}")
        _check_model(self.base, "base model")

    def total_steps(self) -> int:
        return self.steps

    def argv(self, out: Path, resume: bool = False) -> list[str]:
        a = [self.base, "--data", self.corpus, "--task", self.task, "--out", str(out), "--steps", str(self.steps),
             "--lr", str(self.lr), "--batch-size", str(self.batch_size), "--seed", str(self.seed),
             "--threads", str(self.threads), "--checkpoint-every", str(max(1, self.steps // 5)),
             "--eval-every", str(max(1, self.steps // 10)), "--quiet"]
        if self.head_only:
            a.append("--head-only")
        elif self.freeze_layers:
            a += ["--freeze-layers", str(self.freeze_layers)]
        return a + (["--resume"] if resume else [])


@dataclass(frozen=True)
class DistillRequest:
    """`lmscope distill TEACHER --corpus CORPUS ...`."""

    teacher: str
    corpus: str = "toyworld"
    layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    steps: int = 200
    lr: float = 1e-3
    batch_size: int = 16
    temperature: float = 1.0
    alpha: float = 0.5
    seed: int = 0
    threads: int = DEFAULT_THREADS
    kind: str = "distill"
    arch: str = "distill"

    command = "distill"
    builtin = BUILTIN_CORPORA

    def validate(self) -> None:
        _check_common(self.steps, self.lr, self.batch_size, self.threads)
        if not 0 <= self.alpha <= 1:
            raise JobError(f"alpha must be between 0 and 1, got {self.alpha}")
        if not 0 < self.temperature <= 100:
            raise JobError(f"temperature must be in (0, 100], got {self.temperature}")
        for name in ("layers", "hidden", "heads"):
            v = getattr(self, name)
            if v is not None and not 1 <= v <= 4096:
                raise JobError(f"{name} must be between 1 and 4096, got {v}")
        _check_model(self.teacher, "teacher")

    def total_steps(self) -> int:
        return self.steps

    def argv(self, out: Path, resume: bool = False) -> list[str]:
        a = [self.teacher, "--corpus", self.corpus, "--out", str(out), "--steps", str(self.steps), "--lr", str(self.lr),
             "--batch-size", str(self.batch_size), "--temperature", str(self.temperature), "--alpha", str(self.alpha),
             "--seed", str(self.seed), "--threads", str(self.threads), "--checkpoint-every", str(max(1, self.steps // 5)),
             "--eval-every", str(max(1, self.steps // 10)), "--quiet"]
        for name in ("layers", "hidden", "heads"):
            if getattr(self, name) is not None:
                a += [f"--{name}", str(getattr(self, name))]
        return a + (["--resume"] if resume else [])


def _store(session_id: str, name: str, data: bytes) -> Path:
    d = upload_dir(session_id)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / name
    if path.is_file() and path.read_bytes() == data:
        return path  # the page calls this on every rerun
    tmp = d / f"{name}.part"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def save_labelled_upload(session_id: str, filename: str, data: bytes) -> Path:
    """Store an uploaded .csv / .jsonl of (text, label) in the session's upload folder, after checking it
    (size, encoding, columns `text` and `label`, at least two labels): a bad file is refused now."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise JobError(f"{filename!r}: upload a .csv or .jsonl file of (text, label) examples")
    limit = min(max_upload_bytes(), MAX_BYTES)
    if len(data) > limit:
        raise JobError(f"{filename!r} is {len(data) / 2**20:.1f} MB; this server accepts labelled data up to "
                       f"{limit / 2**20:.1f} MB")
    try:
        parse_labelled(data, filename)
    except ValueError as e:
        raise JobError(str(e)) from None
    return _store(session_id, f"labelled{suffix}", data)


def save_typed_examples(session_id: str, text: str) -> Path:
    """Typed examples, one per line `label: text`, stored as a CSV in the session's upload folder."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        label, sep, body = line.partition(":")
        if not sep or not label.strip() or not body.strip():
            raise JobError(f"typed example line {n} is not `label: text`")
        rows.append((body.strip(), label.strip()))
    if len(rows) > MAX_TYPED:
        raise JobError(f"{len(rows)} typed examples; type at most {MAX_TYPED} (upload a file for more)")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "label"])
    w.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    try:
        parse_labelled(data, "typed examples.csv")
    except ValueError as e:
        raise JobError(str(e).replace("typed examples.csv", "the typed examples")) from None
    return _store(session_id, "typed.csv", data)
