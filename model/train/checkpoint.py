"""The files of one training run, written so that a crash at any instant leaves something usable.

    OUT/events.jsonl                  one JSON object per line (the app tails it from another process)
    OUT/checkpoints/step-0000500/     config.json, model.safetensors, tokenizer files, trainer_state.pt
    OUT/config.json, model.safetensors, tokenizer files, training_record.json   the finished model

A checkpoint is written into `checkpoints/.tmp-step-...` beside its final name, fsynced, then renamed
with os.replace: it is either complete or absent. trainer_state.pt holds only tensors, numbers and
strings (optimizer, scheduler, per-rank RNG states, step) and is read with torch.load(weights_only=True).

    >>> run = RunDir(Path("runs/x"))     # doctest: +SKIP
    >>> run.latest_checkpoint()          # doctest: +SKIP
    PosixPath('runs/x/checkpoints/step-0000500')
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import torch

from model.train.layout import CHECKPOINTS, STATE_FILE, TMP_PREFIX, complete_checkpoints


class RunDir:
    """One run directory. Only rank 0 writes; other ranks get rank != 0 and write nothing."""

    def __init__(self, out: Path, rank: int = 0):
        self.out, self.rank = Path(out), rank
        self.ckpt = self.out / CHECKPOINTS
        self.events = self.out / "events.jsonl"
        self._events_fh = None

    def has_results(self) -> bool:
        return bool(self.checkpoints()) or (self.out / "model.safetensors").exists()

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (model.train.layout says what complete means)."""
        return [p for _, p in complete_checkpoints(self.out)]

    def latest_checkpoint(self) -> Path | None:
        ck = self.checkpoints()
        return ck[-1] if ck else None

    def clean_temp(self) -> list[Path]:
        """Remove temp files / dirs a crashed run left behind. Returns what was removed."""
        removed = []
        for parent in (self.out, self.ckpt):
            if not parent.is_dir():
                continue
            for p in parent.iterdir():
                if p.name.startswith(TMP_PREFIX):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                    removed.append(p)
        return removed

    def append_event(self, event: dict) -> None:
        """One JSON line, flushed at once (another process tails the file). The file stays open."""
        if self.rank != 0:
            return
        if self._events_fh is None:
            self._events_fh = open(self.events, "a", encoding="utf-8", buffering=1)  # line-buffered
        self._events_fh.write(json.dumps(event) + "\n")

    def close(self) -> None:
        if self._events_fh is not None:
            self._events_fh.close()
            self._events_fh = None

    def truncate_events(self, step: int) -> None:
        """On resume: drop events logged after the checkpoint we continue from (they will happen again)."""
        if self.rank != 0 or not self.events.exists():
            return
        self.close()
        kept = []
        for line in self.events.read_text(encoding="utf-8").splitlines():
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                continue
            if ev.get("step", 0) <= step and ev.get("type") not in ("done", "stopped", "error"):
                kept.append(line)
        _atomic_write_text(self.events, "".join(k + "\n" for k in kept))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}-{path.name}-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_tree(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_model_dir(model: torch.nn.Module, tok, path: Path) -> None:
    """save_pretrained (safetensors) + tokenizer files, no progress bars."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path)
        tok.save_pretrained(path)
    finally:
        if was:
            hf_logging.enable_progress_bar()


def write_checkpoint(run: RunDir, model, tok, state: dict, step: int, keep_last: int) -> Path:
    """model: the bare model (not DDP). state: trainer state (tensors / numbers / strings only).
    Keeps the newest keep_last checkpoints."""
    run.ckpt.mkdir(parents=True, exist_ok=True)
    final = run.ckpt / f"step-{step:07d}"
    tmp = run.ckpt / f"{TMP_PREFIX}-step-{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_model_dir(model, tok, tmp)
        torch.save(state, tmp / STATE_FILE)
        _fsync_tree(tmp)
        if final.exists():  # the same step again (a resumed run re-reaching it): replace it whole
            old = run.ckpt / f"{TMP_PREFIX}-old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_tree(run.ckpt)
    except BaseException as e:
        free = _free_bytes(run.ckpt)
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. disk full: the previous checkpoints stay intact
        _raise_if_disk_full(e, free, f"checkpoint {final.name} in {run.ckpt}")
        raise
    for old in run.checkpoints()[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


DISK_FULL_BYTES = 2**20  # a write that fails with less than this left on the device failed for want of space


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _raise_if_disk_full(e: BaseException, free: int | None, what: str) -> None:
    """A full disk (or quota) while writing is something the user can fix: say so in one line. safetensors
    reports it as its own SafetensorError and torch.save as a RuntimeError ("file write failed"), neither
    an OSError: the free space measured before cleaning up tells."""
    if not isinstance(e, Exception):
        return  # KeyboardInterrupt and the like pass through untouched
    full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
    full = full or any(s in str(e) for s in ("No space left on device", "os error 28", "Disk quota exceeded"))
    full = full or (free is not None and free < DISK_FULL_BYTES and not isinstance(e, ValueError))
    if full:
        from model.train.config import TrainingError

        raise TrainingError(f"the disk is full: could not write {what} (No space left on device); the earlier "
                            "checkpoints are intact: free some space and continue with --resume") from None


def read_state(checkpoint: Path) -> dict:
    """trainer_state.pt, tensors and plain values only (weights_only=True: nothing is unpickled)."""
    import pickle

    try:
        return torch.load(checkpoint / STATE_FILE, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        from model.train.config import TrainingError

        raise TrainingError(f"cannot resume from {checkpoint}: {STATE_FILE} is damaged or holds objects other than "
                            f"tensors and numbers, and lmscope never unpickles those ({str(e).splitlines()[0][:120]})") from None


def load_weights(model: torch.nn.Module, checkpoint: Path) -> None:
    """Load model.safetensors into an already-built model (tied weights are saved once)."""
    from safetensors.torch import load_file

    state = load_file(str(checkpoint / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(_tied_keys(model))
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        from model.train.config import TrainingError

        raise TrainingError(f"checkpoint {checkpoint} does not fit the model ({len(missing)} missing, "
                            f"{len(unexpected)} unexpected weights)")


def _tied_keys(model) -> list[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    keys = list(tied) if isinstance(tied, (dict, list, tuple, set)) else []
    # a parameter shared under two names appears once in the file
    seen, shared = {}, []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            shared.append(name)
        seen.setdefault(id(p), name)
    return keys + shared


def write_final(run: RunDir, model, tok, record: dict) -> None:
    """The finished model into OUT itself: every file is written in a temp dir and renamed into place,
    so a reader never sees half a file; training_record.json comes last and marks completion."""
    tmp = run.out / f"{TMP_PREFIX}-final-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_model_dir(model, tok, tmp)
        (tmp / "training_record.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        _fsync_tree(tmp)
    except BaseException as e:
        free = _free_bytes(run.out)
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. disk full: no half-written model; the checkpoints stay
        _raise_if_disk_full(e, free, f"the finished model into {run.out}")
        raise
    files = sorted(tmp.iterdir(), key=lambda f: f.name == "training_record.json")
    for f in files:
        os.replace(f, run.out / f.name)
    tmp.rmdir()
