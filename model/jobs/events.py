"""Reading what a training run writes into its folder, from another process while it runs: the events it
appends to OUT/events.jsonl and the error line of its log (its complete checkpoints:
`model.train.layout.complete_checkpoints`). The app's pages and the job queue poll these.

    >>> import tempfile; out = Path(tempfile.mkdtemp())
    >>> _ = (out / "events.jsonl").write_text('{"type": "step", "step": 1}\\n{"type": "step", "st')
    >>> read_events(out), last_step(out)                     # a line still being written waits
    ([{'type': 'step', 'step': 1}], 1)
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

_EVENTS_CACHE: "OrderedDict[str, tuple[int, int, list[dict]]]" = OrderedDict()  # path -> (inode, bytes parsed, events)
_EVENTS_KEPT = 32  # runs whose parsed events stay in memory (a 3000-step run is ~1 MB of dicts)
_EVENTS_LOCK = threading.Lock()


def read_events(out_dir: str | Path) -> list[dict]:
    """All complete JSON lines of OUT/events.jsonl, oldest first ([] when absent). Incremental: only the
    bytes appended since the last call are parsed; a rewritten (resumed) file is read again."""
    path = Path(out_dir) / "events.jsonl"
    try:
        st = path.stat()
    except OSError:
        return []
    key = str(path)
    with _EVENTS_LOCK:
        ino, done, events = _EVENTS_CACHE.get(key, (st.st_ino, 0, []))
        if ino != st.st_ino or st.st_size < done:  # replaced by os.replace on resume
            done, events = 0, []
        if st.st_size > done:
            with open(path, "rb") as f:
                f.seek(done)
                chunk = f.read(st.st_size - done)
            end = chunk.rfind(b"\n") + 1  # a line still being written is left for next time
            new = []
            for line in chunk[:end].splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if isinstance(ev, dict):
                    new.append(ev)
            events = events + new
            done += end
        _EVENTS_CACHE[key] = (st.st_ino, done, events)
        _EVENTS_CACHE.move_to_end(key)
        while len(_EVENTS_CACHE) > _EVENTS_KEPT:
            _EVENTS_CACHE.popitem(last=False)
        return events


def last_step(out_dir: str | Path) -> int:
    """The step of the newest `step` event (0 before the first)."""
    return next((e["step"] for e in reversed(read_events(out_dir)) if e.get("type") == "step"), 0)


def events_since(out_dir: str | Path, types: tuple[str, ...], since: float) -> list[dict]:
    """The events of these types logged at `since` or later (one process's run of a resumed job)."""
    return [e for e in read_events(out_dir) if e.get("type") in types and e.get("time", 0) >= since]


def log_error(log: Path) -> str:
    """The `error: ...` line `lmscope train` printed into its log (or the log's last line, cut at 300 characters)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:")]
    if errors:
        return errors[-1][len("error:"):].strip()
    rest = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("$ ")]
    return rest[-1][:300] if rest else ""
