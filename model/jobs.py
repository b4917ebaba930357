"""A training job queue for one app server shared by many browser sessions, kept entirely on disk.

Every job is a directory `ROOT/<job_id>/` (ROOT = `registry.runs_dir()`, i.e. `runs/` or LMSCOPE_RUNS) that
is also the training run's `--out`: when training finishes, the model files land there and the registry
lists it as `runs/<job_id>` beside the demo models. The queue's own bookkeeping is `job.json` (who owns the
job, its request, state, pid) and `train.log` (the process's stdout and stderr) in the same directory.

Jobs run as separate processes (`python -m app.cli train ...`, i.e. `lmscope train`) started with
`start_new_session=True`; at most `max_running` at once (env LMSCOPE_MAX_TRAINING_JOBS, default 1), the rest
wait in order of submission with their place shown. There is no scheduler thread: every call that reads
the queue (`jobs`, `status`, `submit`, ...) first reaps finished processes and starts waiting jobs, under
a file lock, so any number of sessions (or server processes) can poll it.

    >>> q = JobQueue("/tmp/runs", max_running=1)                                   # doctest: +SKIP
    >>> jid = q.submit("session-a", TrainRequest(arch="gpt2", steps=50))           # doctest: +SKIP
    >>> q.status(jid).state, [j.id for j in q.jobs("session-b")]                   # doctest: +SKIP
    ('running', [])

States: queued (with `place` 1, 2, ... among all queued jobs) -> running -> finished | failed | stopped.
`stop` writes `OUT/STOP` (the trainer checkpoints and exits) or cancels a queued job; `resume` puts a
stopped or failed job back in the queue, continuing from its newest checkpoint (`--resume`).

Corpora: "toyworld" / "pydoc", a file inside `corpus_roots()`, or a session's upload (`save_upload`, size-
limited, in that session's own temp directory, removed when the session ends: `UploadGuard`,
`sweep_uploads`). Any file is copied into the job directory at submit time, so a job never depends on a
temp file or on a file that changes later. Limits per session and in total
keep one browser tab from filling the queue.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Collection

from model.errors import LmscopeError
from model.registry import PROJECT_ROOT, runs_dir
from model.train.layout import complete_checkpoints

ARCHS = ("bert", "roberta", "albert", "gpt2", "elmo")  # what `lmscope train` accepts
PRESETS = ("tiny", "small")
BUILTIN_CORPORA = ("toyworld", "pydoc")
CORPUS_SUFFIXES = (".txt", ".jsonl")
STATES = ("queued", "running", "finished", "failed", "stopped")
ACTIVE = ("queued", "running")
JOB_ID = re.compile(r"^[a-z0-9]+-\d{8}-\d{6}-[0-9a-f]{6}$")
MAX_STEPS = 100_000  # a shared server should not accept a week-long job from a typo
MAX_ACTIVE_PER_SESSION = 3  # queued + running jobs one session may hold
MAX_QUEUED = 50  # all sessions together
MAX_UPLOAD_MB = 50  # default upload limit (env LMSCOPE_MAX_UPLOAD_MB); the corpus reader itself stops at 200 MB


class JobError(LmscopeError):
    """A queue request cannot be honoured (unknown job, someone else's job, wrong state, bad setting)."""


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


# ---- removing uploads when their session ends ------------------------------------------------------
# Two mechanisms, because a server session can end in two ways:
# - the app keeps an `UploadGuard` in the session's state; when the server drops the session (Streamlit
#   does so when its tab has been gone for its reconnect window), the guard is garbage-collected and its
#   finalizer removes the directory (also at the latest when the server process exits);
# - `sweep_uploads(live)` removes directories whose marker names a server session that is no longer
#   live, or a server process that is gone (a killed server runs no finalizer). The app runs it now and then.

UPLOAD_MARKER = ".owner.json"  # {"pid": server process, "session": server session id}
ORPHAN_UPLOAD_S = 24 * 3600  # an upload directory without a marker (not made by the app) is kept this long


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


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
            gone = not _pid_alive(pid)
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
        from model.train.presets import PRESETS as P  # the one place the preset values live

        return self.steps if self.steps is not None else P[self.preset].steps

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


@dataclass
class Job:
    """One job as stored in `job.json` plus what the queue derived (place, progress)."""

    id: str
    session: str
    request: dict
    state: str = "queued"
    queued_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None
    pid_start: str | None = None  # /proc start time of pid: a recycled pid is not our process
    returncode: int | None = None
    stop_requested: bool = False
    resume_next: bool = False  # the next start continues from the newest checkpoint
    message: str = ""
    runs: int = 0  # how many times a process was started (1 + resumes)
    place: int | None = None  # 1-based place among all queued jobs (derived, not stored)
    step: int = 0  # last logged step (derived while running, stored when the process ends)
    total_steps: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        """`queued (place 2)`, `running 120/200`, `finished`..."""
        if self.state == "queued":
            return f"queued (place {self.place})" if self.place else "queued"
        if self.state == "running":
            return f"running {self.step}/{self.total_steps}"
        return self.state


# ---------------------------------------------------------------------------------------------------
# Reading what a run wrote (the app polls these).

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


def checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as (step, directory), oldest first."""
    return complete_checkpoints(out_dir)


def _proc_start(pid: int) -> str | None:
    """Start time of a live, non-zombie process, else None: with the pid it names one process for good
    (a pid alone may be reused by another process after the job's has ended)."""
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        return repr(p.create_time())
    except psutil.Error:
        return None


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
    import importlib

    module, name = REQUEST_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)(**d)


def _default_command(request: TrainRequest, out: Path, resume: bool) -> list[str]:
    command = getattr(request, "command", "train")  # the lmscope subcommand the request runs
    return [sys.executable, "-m", "app.cli", command, *request.argv(out, resume)]


# ---------------------------------------------------------------------------------------------------


_CHILDREN: dict[int, subprocess.Popen] = {}  # processes started by this server process, to reap them


class JobQueue:
    """The queue rooted at `root` (default: the registry's runs directory).

    command(request, out_dir, resume) -> argv lets tests run a quick fake trainer.
    """

    def __init__(self, root: str | Path | None = None, max_running: int | None = None,
                 command: Callable[[TrainRequest, Path, bool], list[str]] | None = None):
        self.root = Path(root) if root is not None else runs_dir()
        if max_running is None:
            env = os.environ.get("LMSCOPE_MAX_TRAINING_JOBS", "1")
            try:
                max_running = int(env)
            except ValueError:
                raise JobError(f"LMSCOPE_MAX_TRAINING_JOBS must be a whole number, got {env!r}") from None
        if max_running < 1:
            raise JobError(f"max_running must be at least 1, got {max_running}")
        self.max_running = max_running
        self.command = command or _default_command
        self._lock = threading.Lock()  # flock is per open file: threads of one process need this too

    # ---- public API -------------------------------------------------------------------------------

    def submit(self, session_id: str, request: TrainRequest | dict) -> str:
        """Queue a training job for this session; returns its id. A corpus file is copied into the job."""
        req = request_from(request) if isinstance(request, dict) else request
        req.validate()
        if not session_id:
            raise JobError("no session id")
        builtin = getattr(req, "builtin", BUILTIN_CORPORA)  # data names that are not files
        if req.corpus not in builtin:
            suffixes = getattr(req, "suffixes", CORPUS_SUFFIXES)
            req = replace(req, corpus=str(check_corpus_path(req.corpus, session_id, suffixes)))
        with self._locked():
            jobs = self._refresh()
            mine = [j for j in jobs if j.session == session_id and j.state in ACTIVE]
            if len(mine) >= MAX_ACTIVE_PER_SESSION:
                raise JobError(f"you already have {len(mine)} jobs queued or running (at most {MAX_ACTIVE_PER_SESSION}); "
                               "stop one or wait for it to finish")
            if sum(j.state == "queued" for j in jobs) >= MAX_QUEUED:
                raise JobError(f"the training queue is full ({MAX_QUEUED} jobs waiting); try again later")
            job_id = f"{req.arch}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            out = self.root / job_id
            out.mkdir(parents=True)
            try:
                if req.corpus not in builtin:
                    src = Path(req.corpus)
                    dst = out / f"corpus{src.suffix}"
                    shutil.copyfile(src, dst)
                    req = replace(req, corpus=str(dst))
                job = Job(id=job_id, session=session_id, request=asdict(req), queued_at=time.time(),
                          total_steps=req.total_steps())
                self._write(job)
            except BaseException:
                shutil.rmtree(out, ignore_errors=True)
                raise
            self._start_waiting(self._all())
        return job_id

    def jobs(self, session_id: str) -> list[Job]:
        """This session's jobs, newest first (no session ever sees another's)."""
        with self._locked():
            jobs = self._refresh()
        return sorted((j for j in jobs if j.session == session_id), key=lambda j: j.queued_at, reverse=True)

    def status(self, job_id: str, session_id: str | None = None) -> Job:
        """One job, with `place` when queued and `step` when running. With session_id: only its own."""
        with self._locked():
            jobs = self._refresh()
        return self._find(jobs, job_id, session_id)

    def stop(self, job_id: str, session_id: str) -> Job:
        """Cancel a queued job, or ask a running one to checkpoint and exit (OUT/STOP)."""
        with self._locked():
            job = self._find(self._refresh(), job_id, session_id)
            if job.state == "queued":
                job.state, job.message, job.ended_at = "stopped", "cancelled before it started", time.time()
            elif job.state == "running":
                job.stop_requested = True
                (self.dir(job.id) / "STOP").write_text("stop requested from the app\n")
                if not self._trainer_started(job):
                    # still reading the corpus or training the tokenizer: nothing to checkpoint yet
                    self._signal(job, signal.SIGTERM)
                job.message = "stopping: saving a checkpoint"
            else:
                raise JobError(f"job {job_id} is {job.state}, not queued or running")
            self._write(job)
            self._start_waiting(self._all())
            return self._find(self._refresh(), job_id, session_id)

    def resume(self, job_id: str, session_id: str) -> Job:
        """Put a stopped or failed job back in the queue; it continues from its newest checkpoint (or
        starts over when it never wrote one)."""
        with self._locked():
            job = self._find(self._refresh(), job_id, session_id)
            if job.state not in ("stopped", "failed"):
                raise JobError(f"job {job_id} is {job.state}; only a stopped or failed job can be resumed")
            active = [j for j in self._all() if j.session == session_id and j.state in ACTIVE]
            if len(active) >= MAX_ACTIVE_PER_SESSION:
                raise JobError(f"you already have {len(active)} jobs queued or running (at most {MAX_ACTIVE_PER_SESSION})")
            out = self.dir(job.id)
            if (out / "config.json").exists() and not checkpoints(out):
                raise JobError(f"job {job_id} has a model but no checkpoint to continue from")
            (out / "STOP").unlink(missing_ok=True)
            job.resume_next = bool(checkpoints(out))
            if not job.resume_next and (out / "events.jsonl").exists():  # starting over: keep the old log aside
                os.replace(out / "events.jsonl", out / f"events.run{job.runs}.jsonl")
            job.state, job.stop_requested, job.message = "queued", False, ""
            job.queued_at, job.pid, job.pid_start, job.returncode, job.ended_at = time.time(), None, None, None, None
            self._write(job)
            self._start_waiting(self._all())
            return self._find(self._refresh(), job_id, session_id)

    def dir(self, job_id: str) -> Path:
        """The job's directory (= the run's --out). Validates the id: no path tricks."""
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise JobError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def model_name(self, job_id: str) -> str:
        """The name the registry lists the finished model under."""
        return f"runs/{self.dir(job_id).name}"

    # ---- internals ----------------------------------------------------------------------------------

    @contextmanager
    def _locked(self):
        """One queue operation at a time: a thread lock for this process's sessions, flock across processes."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / ".jobs.lock", "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _all(self) -> list[Job]:
        jobs = []
        if not self.root.is_dir():
            return jobs
        for p in self.root.iterdir():
            f = p / "job.json"
            if not JOB_ID.match(p.name) or not f.is_file():
                continue
            try:
                d = json.loads(f.read_text(encoding="utf-8"))
                jobs.append(Job(**{k: v for k, v in d.items() if k in Job.__dataclass_fields__}))
            except (OSError, ValueError, TypeError):
                continue  # a damaged job file: skip it rather than break every session's page
        return jobs

    def _write(self, job: Job) -> None:
        d = job.to_json()
        d.pop("place")  # derived on read
        path = self.dir(job.id) / "job.json"
        tmp = path.with_name(f"job.json.new-{os.getpid()}-{threading.get_ident()}")  # never `.tmp*`: the trainer sweeps those
        tmp.write_text(json.dumps(d, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    def _find(self, jobs: list[Job], job_id: str, session_id: str | None) -> Job:
        self.dir(job_id)  # validates
        for j in jobs:
            if j.id == job_id:
                if session_id is not None and j.session != session_id:
                    break  # someone else's job looks exactly like a missing one
                return j
        raise JobError(f"no such job: {job_id}")

    def _trainer_started(self, job: Job) -> bool:
        return any(e.get("type") in ("start", "resume") and e.get("time", 0) >= (job.started_at or 0) - 1
                   for e in read_events(self.dir(job.id)))

    def _signal(self, job: Job, sig: int) -> None:
        if job.pid and _proc_start(job.pid) == job.pid_start:
            try:
                os.killpg(job.pid, sig)  # start_new_session: the pid is its own process group
            except ProcessLookupError:
                pass

    def _refresh(self) -> list[Job]:
        """Reap ended processes, start waiting jobs, derive place and progress. Caller holds the lock."""
        jobs = self._all()
        for job in jobs:
            if job.state == "running" and not self._alive(job):
                self._finish(job)
                self._write(job)
        self._start_waiting(jobs)
        queued = sorted((j for j in jobs if j.state == "queued"), key=lambda j: (j.queued_at, j.id))
        for i, j in enumerate(queued):
            j.place = i + 1
        for j in jobs:
            if j.state == "running":
                j.step = self._last_step(j)
        return jobs

    def _last_step(self, job: Job) -> int:
        return next((e["step"] for e in reversed(read_events(self.dir(job.id))) if e.get("type") == "step"), 0)

    def _alive(self, job: Job) -> bool:
        child = _CHILDREN.get(job.pid) if job.pid else None
        if child is not None:
            rc = child.poll()
            if rc is None:
                return True
            job.returncode = rc
            _CHILDREN.pop(job.pid, None)
            return False
        return job.pid is not None and job.pid_start is not None and _proc_start(job.pid) == job.pid_start

    def _finish(self, job: Job) -> None:
        """A job's process has ended: decide finished / stopped / failed from what it wrote."""
        job.ended_at = time.time()
        job.step = self._last_step(job)
        since = (job.started_at or 0) - 1
        terminal = [e for e in read_events(self.dir(job.id))
                    if e.get("type") in ("done", "stopped", "error") and e.get("time", 0) >= since]
        last = terminal[-1] if terminal else None
        rc = job.returncode
        if last and last["type"] == "done" and rc in (0, None):
            job.state, job.message = "finished", f"finished: the model is listed as {self.model_name(job.id)}"
        elif (last and last["type"] == "stopped") or (job.stop_requested and not (last and last["type"] == "error")):
            job.state = "stopped"
            job.message = f"stopped at step {last['step']}" if last else "stopped before training began"
        else:
            job.state = "failed"
            job.message = (last or {}).get("message") or self._log_error(job) or \
                (f"the training process exited with status {rc}" if rc is not None else "the training process ended")

    def _log_error(self, job: Job) -> str:
        """The `error: ...` line `lmscope train` printed (or the log's last line)."""
        try:
            lines = (self.dir(job.id) / "train.log").read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        errors = [ln for ln in lines if ln.startswith("error:")]
        if errors:
            return errors[-1][len("error:"):].strip()
        rest = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("$ ")]
        return rest[-1][:300] if rest else ""

    def _start_waiting(self, jobs: list[Job]) -> None:
        running = sum(j.state == "running" for j in jobs)
        for job in sorted((j for j in jobs if j.state == "queued"), key=lambda j: (j.queued_at, j.id)):
            if running >= self.max_running:
                break
            self._launch(job)
            running += 1

    def _launch(self, job: Job) -> None:
        out = self.dir(job.id)
        req = request_from(job.request)
        argv = self.command(req, out, job.resume_next)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   PYTHONUNBUFFERED="1")
        job.started_at = time.time()
        with open(out / "train.log", "ab") as log:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=str(PROJECT_ROOT), env=env, start_new_session=True)
            except OSError as e:
                job.state, job.message, job.ended_at = "failed", f"could not start training: {e}", time.time()
                self._write(job)
                return
        _CHILDREN[proc.pid] = proc
        job.state, job.pid, job.pid_start, job.returncode = "running", proc.pid, _proc_start(proc.pid), None
        job.runs += 1
        job.message = "continuing from the newest checkpoint" if job.resume_next else ""
        self._write(job)
