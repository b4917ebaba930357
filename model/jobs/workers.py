"""The processes that run the queue's jobs: `python -m app.cli <command> ...` (i.e. `lmscope train`, ...)
started in a session of their own (so a stop reaches the whole process group), stdout and stderr appended
to the job's log. A process is known later by its pid together with its start time (psutil), so a pid
that the system has given to another process after the job's ended is never taken for the job's.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from model.registry import PROJECT_ROOT

_CHILDREN: dict[int, subprocess.Popen] = {}  # processes started by this server process, to reap them


def default_command(request, out: Path, resume: bool) -> list[str]:
    """The argv that runs `request` into `out` (the request's `command` is the lmscope subcommand)."""
    command = getattr(request, "command", "train")
    return [sys.executable, "-m", "app.cli", command, *request.argv(out, resume)]


def process_start(pid: int) -> str | None:
    """Start time of a live, non-zombie process, else None: with the pid it names one process for good
    (a pid alone may be reused by another process after the job's has ended)."""
    try:
        p = psutil.Process(pid)
        if p.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        return repr(p.create_time())
    except psutil.Error:
        return None


def start(argv: list[str], log: Path) -> int:
    """Start `argv` in its own session with the checkout as working folder, offline, its output appended
    to `log` after a `$ argv` line; returns its pid. Raises OSError when it cannot start."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1")
    with open(log, "ab") as fh:
        fh.write(f"$ {' '.join(argv)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                cwd=str(PROJECT_ROOT), env=env, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    return proc.pid


def poll(pid: int | None, pid_start: str | None) -> tuple[bool, int | None]:
    """(still running, exit status): the status is known only for a process this server process started
    (it reaps it); another's is seen alive or gone through its pid and start time."""
    child = _CHILDREN.get(pid) if pid else None
    if child is not None:
        rc = child.poll()
        if rc is None:
            return True, None
        _CHILDREN.pop(pid, None)
        return False, rc
    return pid is not None and pid_start is not None and process_start(pid) == pid_start, None


def signal_group(pid: int | None, pid_start: str | None, sig: int) -> None:
    """Send `sig` to the process group of the job's process, if that process still runs."""
    if pid and process_start(pid) == pid_start:
        try:
            os.killpg(pid, sig)  # start_new_session: the pid is its own process group
        except ProcessLookupError:
            pass
