"""Where a job's corpus may come from: a built-in name, a file inside the allowed corpus folders, or a
session's upload, kept in that session's own folder (size-limited, checked at once) and removed when the
session ends.

Uploads are removed in two ways, because a server session can end in two ways:
- the app keeps an `UploadGuard` in the session's state; when the server drops the session (Streamlit
  does so when its tab has been gone for its reconnect window), the guard is garbage-collected and its
  finalizer removes the folder (also at the latest when the server process exits);
- `sweep_uploads(live)` removes folders whose marker names a server session that is no longer live, or a
  server process that is gone (a killed server runs no finalizer). The app runs it now and then.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import weakref
from pathlib import Path
from typing import Collection

import psutil

from model.jobs.requests import JobError
from model.registry import PROJECT_ROOT

BUILTIN_CORPORA = ("toyworld", "pydoc")
CORPUS_SUFFIXES = (".txt", ".jsonl")
MAX_UPLOAD_MB = 50  # default upload limit (env LMSCOPE_MAX_UPLOAD_MB); the corpus reader itself stops at 200 MB
UPLOAD_MARKER = ".owner.json"  # {"pid": server process, "session": server session id}
ORPHAN_UPLOAD_S = 24 * 3600  # an upload folder without a marker (not made by the app) is kept this long


def corpus_roots() -> list[Path]:
    """Directories a corpus *path* may come from (LMSCOPE_CORPUS_ROOTS, os.pathsep-separated; default
    `corpora/` in the checkout). A shared server must not let a session train on, and so leak through a
    tokenizer's vocabulary, any file the server can read. Uploads are copied into the job directory."""
    env = os.environ.get("LMSCOPE_CORPUS_ROOTS")
    roots = [Path(p) for p in env.split(os.pathsep) if p] if env else [PROJECT_ROOT / "corpora"]
    return [r.expanduser().resolve() for r in roots]


def check_corpus_path(path: str | Path, session_id: str | None = None, suffixes: tuple[str, ...] = CORPUS_SUFFIXES) -> Path:
    """A corpus path, resolved; raises JobError unless it is a .txt/.jsonl file (or one of `suffixes`) inside
    corpus_roots() (or inside this session's upload directory)."""
    p = Path(os.path.realpath(Path(path).expanduser()))
    roots = corpus_roots() + ([Path(os.path.realpath(upload_dir(session_id)))] if session_id else [])
    if not any(p == r or r in p.parents for r in roots):
        raise JobError(f"{path} is outside the corpus folders this server may read "
                       f"({', '.join(str(r) for r in corpus_roots())}; set LMSCOPE_CORPUS_ROOTS to add more)")
    if p.suffix not in suffixes:
        raise JobError(f"{path}: a corpus must be a {' or '.join(suffixes)} file")
    if not p.is_file():
        raise JobError(f"no such corpus file: {path}")
    return p


def max_upload_bytes() -> int:
    env = os.environ.get("LMSCOPE_MAX_UPLOAD_MB")
    try:
        mb = float(env) if env else MAX_UPLOAD_MB
    except ValueError:
        mb = MAX_UPLOAD_MB
    return int(mb * 2**20)


def uploads_root() -> Path:
    """Where every session's upload directory lives: this OS user's own folder under the system temp dir
    (`lmscope-uploads-UID`), so two users of one machine never share one."""
    return Path(tempfile.gettempdir()) / f"lmscope-uploads-{os.getuid()}"


def _private_root() -> Path:
    """`uploads_root()`, created mode 0700 if missing. Refused when it is a symlink, another user's, or
    writable by others: whoever can write to it could rename a session's folder and put a link in its place."""
    root = uploads_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = root.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise JobError(f"{root} is not a private folder of this user (a link, another owner, or writable by others); "
                       "remove it and try again")
    return root


def _size(n: int) -> str:
    """Bytes for people: `1.5 MB`, `12 KB`, `800 bytes`."""
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB" if n >= 2**10 else f"{n} bytes"


def upload_dir(session_id: str) -> Path:
    """This session's private upload directory (under `uploads_root()`; the name is a hash of the session id)."""
    if not session_id:
        raise JobError("no session id")
    h = hashlib.sha256(session_id.encode()).hexdigest()[:24]
    return _private_root() / h


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class UploadGuard:
    """Owns one session's upload directory and removes it when the guard is closed or garbage-collected.

    server_session: the id the server knows the session by (Streamlit's session id), written into the
    directory so that `sweep_uploads` can tell whether its session is still alive."""

    def __init__(self, session_id: str, server_session: str | None = None):
        self.path = upload_dir(session_id)
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if server_session:
            (self.path / UPLOAD_MARKER).write_text(json.dumps({"pid": os.getpid(), "session": server_session}))
        self._finalizer = weakref.finalize(self, _remove_tree, str(self.path))

    def close(self) -> None:
        """Remove the directory now (idempotent)."""
        self._finalizer()

    @property
    def alive(self) -> bool:
        return self._finalizer.alive


def sweep_uploads(live_sessions: Collection[str] | None, now: float | None = None) -> list[Path]:
    """Remove the upload directories whose session has ended; returns what was removed.

    live_sessions: the server sessions of THIS process that are still alive (None: unknown, so only
    directories of dead server processes and unmarked ones older than ORPHAN_UPLOAD_S are removed).
    Directories that belong to another live server process are never touched."""
    root = uploads_root()
    if not root.is_dir():
        return []
    try:
        _private_root()
    except JobError:
        return []  # not ours to clean
    now = time.time() if now is None else now
    removed = []
    for d in root.iterdir():
        if not d.is_dir() or d.is_symlink():
            continue
        try:
            owner = json.loads((d / UPLOAD_MARKER).read_text())
            pid, session = int(owner["pid"]), str(owner["session"])
        except (OSError, ValueError, KeyError, TypeError):
            try:
                stale = now - d.stat().st_mtime > ORPHAN_UPLOAD_S
            except OSError:
                continue
            if stale:
                _remove_tree(str(d))
                removed.append(d)
            continue
        if pid == os.getpid():
            gone = live_sessions is not None and session not in live_sessions
        else:
            gone = not psutil.pid_exists(pid)  # a process of another user counts as alive
        if gone:
            _remove_tree(str(d))
            removed.append(d)
    return removed


def save_upload(session_id: str, filename: str, data: bytes) -> Path:
    """Store an uploaded corpus in the session's upload directory (one file per kind, replaced by the
    next upload); refuses files over the size limit, of another kind, or that the trainer could not read
    (binary, not UTF-8, bad JSON lines: said at once rather than by a failed job). The file name is never
    used as a path: only its suffix is kept."""
    from model.train.corpus import CorpusError, decode_text, parse_jsonl, parse_txt

    suffix = Path(filename or "").suffix.lower()
    if suffix not in CORPUS_SUFFIXES:
        raise JobError(f"{filename!r}: upload a .txt or .jsonl file")
    limit = max_upload_bytes()
    if len(data) > limit:
        raise JobError(f"{filename!r} is {_size(len(data))}; this server accepts corpora up to {_size(limit)}")
    if not data.strip():
        raise JobError(f"{filename!r} is empty")
    d = upload_dir(session_id)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / f"upload{suffix}"
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return path  # the page calls this on every rerun while the file sits in the uploader
    try:
        text = decode_text(data, Path(filename))  # messages name the file as the user knows it
        docs = parse_jsonl(text, Path(filename)) if suffix == ".jsonl" else parse_txt(text)
    except CorpusError as e:
        raise JobError(str(e)) from None
    if not docs:
        raise JobError(f"{filename!r} has no sentences")
    tmp = d / f"upload{suffix}.part"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
