"""The training job queue of one app server shared by many browser sessions, kept entirely on disk.

Every job is a directory `ROOT/<job_id>/` (ROOT = `registry.runs_dir()`, i.e. `runs/` or LMSCOPE_RUNS) that
is also the training run's `--out`: when training finishes, the model files land there and the registry
lists it as `runs/<job_id>` beside the demo models. The queue's own bookkeeping is `job.json` (who owns the
job, its request, state, pid) and `train.log` (the process's stdout and stderr) in the same directory.

Jobs run as separate processes (model.jobs.workers); at most `max_running` at once (env
LMSCOPE_MAX_TRAINING_JOBS, default 1), the rest wait in order of submission with their place shown. There is
no scheduler thread: every call that reads the queue (`jobs`, `status`, `submit`, ...) first reaps finished
processes and starts waiting jobs, under a file lock, so any number of sessions (or server processes) can
poll it.

    >>> q = JobQueue("/tmp/runs", max_running=1)                                   # doctest: +SKIP
    >>> jid = q.submit("session-a", TrainRequest(arch="gpt2", steps=50))           # doctest: +SKIP
    >>> q.status(jid).state, [j.id for j in q.jobs("session-b")]                   # doctest: +SKIP
    ('running', [])

States: queued (with `place` 1, 2, ... among all queued jobs) -> running -> finished | failed | stopped.
`stop` writes `OUT/STOP` (the trainer checkpoints and exits) or cancels a queued job; `resume` puts a
stopped or failed job back in the queue, continuing from its newest checkpoint (`--resume`). A corpus file
(model.jobs.uploads) is copied into the job directory at submit time, so a job never depends on a temp file
or on a file that changes later. Limits per session and in total keep one browser tab from filling the queue.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from model.jobs import workers
from model.jobs.events import events_since, last_step, log_error
from model.jobs.requests import JobError, TrainRequest, request_from
from model.jobs.uploads import BUILTIN_CORPORA, CORPUS_SUFFIXES, check_corpus_path
from model.registry import runs_dir
from model.train.layout import complete_checkpoints

STATES = ("queued", "running", "finished", "failed", "stopped")
ACTIVE = ("queued", "running")
JOB_ID = re.compile(r"^[a-z0-9]+-\d{8}-\d{6}-[0-9a-f]{6}$")
MAX_ACTIVE_PER_SESSION = 3  # queued + running jobs one session may hold
MAX_QUEUED = 50  # all sessions together


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
    pid_start: str | None = None  # the process's start time (workers.process_start): a recycled pid is not ours
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
        self.command = command or workers.default_command
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
                    workers.signal_group(job.pid, job.pid_start, signal.SIGTERM)
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
            if (out / "config.json").exists() and not complete_checkpoints(out):
                raise JobError(f"job {job_id} has a model but no checkpoint to continue from")
            (out / "STOP").unlink(missing_ok=True)
            job.resume_next = bool(complete_checkpoints(out))
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
        return bool(events_since(self.dir(job.id), ("start", "resume"), (job.started_at or 0) - 1))

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
                j.step = last_step(self.dir(j.id))
        return jobs

    def _alive(self, job: Job) -> bool:
        alive, rc = workers.poll(job.pid, job.pid_start)
        if rc is not None:
            job.returncode = rc
        return alive

    def _finish(self, job: Job) -> None:
        """A job's process has ended: decide finished / stopped / failed from what it wrote."""
        job.ended_at = time.time()
        job.step = last_step(self.dir(job.id))
        since = (job.started_at or 0) - 1
        terminal = events_since(self.dir(job.id), ("done", "stopped", "error"), since)
        last = terminal[-1] if terminal else None
        rc = job.returncode
        if last and last["type"] == "done" and rc in (0, None):
            job.state, job.message = "finished", f"finished: the model is listed as {self.model_name(job.id)}"
        elif (last and last["type"] == "stopped") or (job.stop_requested and not (last and last["type"] == "error")):
            job.state = "stopped"
            job.message = f"stopped at step {last['step']}" if last else "stopped before training began"
        else:
            job.state = "failed"
            job.message = (last or {}).get("message") or log_error(self.dir(job.id) / "train.log") or \
                (f"the training process exited with status {rc}" if rc is not None else "the training process ended")

    def _start_waiting(self, jobs: list[Job]) -> None:
        running = sum(j.state == "running" for j in jobs)
        for job in sorted((j for j in jobs if j.state == "queued"), key=lambda j: (j.queued_at, j.id)):
            if running >= self.max_running:
                break
            self._launch(job)
            running += 1

    def _launch(self, job: Job) -> None:
        out = self.dir(job.id)
        argv = self.command(request_from(job.request), out, job.resume_next)
        job.started_at = time.time()
        try:
            pid = workers.start(argv, out / "train.log")
        except OSError as e:
            job.state, job.message, job.ended_at = "failed", f"could not start training: {e}", time.time()
            self._write(job)
            return
        job.state, job.pid, job.pid_start, job.returncode = "running", pid, workers.process_start(pid), None
        job.runs += 1
        job.message = "continuing from the newest checkpoint" if job.resume_next else ""
        self._write(job)
