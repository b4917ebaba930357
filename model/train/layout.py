"""Where a training run keeps its files, torch-free, so the app's job queue and the trainer agree on what
a complete checkpoint is without the app importing torch.

    OUT/checkpoints/step-0000500/     config.json, model.safetensors, tokenizer files, trainer_state.pt

A checkpoint is complete when its folder is named step-N and holds both trainer_state.pt and config.json
(the trainer renames a finished temp folder into place, so a crash leaves complete folders or none).

    >>> import tempfile; out = Path(tempfile.mkdtemp())
    >>> for n in (500, 1000):
    ...     d = out / "checkpoints" / f"step-{n:07d}"; d.mkdir(parents=True)
    ...     _ = (d / STATE_FILE).write_bytes(b""), (d / "config.json").write_text("{}")
    >>> [step for step, _ in complete_checkpoints(out)]
    [500, 1000]
"""
from __future__ import annotations

import re
from pathlib import Path

TMP_PREFIX = ".tmp"
STATE_FILE = "trainer_state.pt"
CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"step-(\d+)")


def complete_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as (step, folder), oldest first."""
    ck = Path(out_dir) / CHECKPOINTS
    if not ck.is_dir():
        return []
    found = []
    for p in ck.iterdir():
        m = _STEP_DIR.fullmatch(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file() and (p / "config.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)
