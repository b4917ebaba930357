"""The job widgets the Train and Fine-tune pages share: this session's owner id and the server's job queue,
the Start / Stop / Resume callbacks (their outcome shown as a note on the next run), a file upload into this
session's folder, this session's job list and select box, and the Stop / Resume buttons. `prefix` ("train",
"ft") keeps each page's session keys and widget keys apart.
"""
from __future__ import annotations

import secrets
from typing import Callable, Sequence

import streamlit as st

from app import common, frame
from model import jobs as J
from model.errors import LmscopeError
from model.registry import runs_dir

OWNER = "train_owner"  # session_state: this session's random owner id (jobs are per session, on both pages)
LISTED = "train_listed"  # session_state: finished jobs whose model the pickers were told about
NO_JOBS = "None yet. Jobs belong to this browser session; finished models stay listed under runs/ for everyone."


@st.cache_resource(show_spinner=False)
def _queue(root: str) -> J.JobQueue:
    """One queue object per server process and runs folder (its lock serialises this process's sessions)."""
    return J.JobQueue(root)


def queue() -> J.JobQueue:
    return _queue(str(runs_dir()))


def owner() -> str:
    if OWNER not in st.session_state:
        st.session_state[OWNER] = secrets.token_hex(16)
    return st.session_state[OWNER]


def note(prefix: str, kind: str, text: str) -> None:
    """A message for the next run of the page (`kind`: an st function name, "error", "success")."""
    st.session_state[f"{prefix}_note"] = (kind, text)


def show_note(prefix: str) -> None:
    shown = st.session_state.pop(f"{prefix}_note", None)
    if shown:
        getattr(st, shown[0])(shown[1])


# Callbacks (run before the script: a click is never lost to a rerun)


def submit(queue: J.JobQueue, owner: str, request: dict, prefix: str) -> None:
    try:
        job_id = queue.submit(owner, request)
    except LmscopeError as e:
        note(prefix, "error", str(e))
        return
    st.session_state[f"{prefix}_job"] = job_id
    note(prefix, "success", f"Submitted {job_id}.")


def control(fn: Callable[[J.JobQueue, str, str], object], queue: J.JobQueue, owner: str, job_id: str, prefix: str) -> None:
    """`fn(queue, job_id, owner)`: J.JobQueue.stop or J.JobQueue.resume."""
    try:
        fn(queue, job_id, owner)
    except LmscopeError as e:
        note(prefix, "error", str(e))


# Widgets


def upload(owner: str, label: str, types: Sequence[str], key: str, missing: str,
           save: Callable[[str, str, bytes], object] = J.save_upload) -> str | None:
    """A file uploader (`label` says `{limit}`, the server's upload limit) whose file `save(owner, name,
    data)` writes into this session's upload folder, removed when the session ends. The saved path, or
    None after a message (`missing` while no file is given)."""
    limit_mb = J.max_upload_bytes() / 2**20
    f = st.file_uploader(label.format(limit=f"{limit_mb:g} MB"), type=list(types), key=key,
                         max_upload_size=max(1, int(limit_mb + 0.999)))
    if f is None:
        st.info(missing)
        return None
    try:
        guard_uploads(owner)
        return str(save(owner, f.name, f.getvalue()))
    except LmscopeError as e:
        st.error(str(e))
        return None


def guard_uploads(owner: str) -> None:
    """Remove this session's upload folder when the session ends."""
    guard = st.session_state.get("_upload_guard")
    if guard is None or not guard.alive:
        st.session_state["_upload_guard"] = J.UploadGuard(owner, frame.server_session_id())


def my_jobs(queue: J.JobQueue, owner: str, title: str, kinds: Sequence[str] | None = None) -> list[J.Job] | None:
    """This session's jobs (of `kinds` when given) under the heading `title`; None after a message when
    there are none or the queue cannot be read."""
    try:
        jobs = [j for j in queue.jobs(owner) if kinds is None or j.request.get("kind") in kinds]
    except LmscopeError as e:
        st.error(str(e))
        return None
    st.subheader(title)
    if not jobs:
        st.caption(NO_JOBS)
        return None
    return jobs


def pick_job(jobs: Sequence[J.Job], prefix: str) -> J.Job:
    """The job select box, on the first job until one is picked (no status in the labels: it would go stale
    between reruns)."""
    ids = [j.id for j in jobs]
    key = f"{prefix}_job"
    if st.session_state.get(key) not in ids:
        st.session_state[key] = ids[0]
    job_id = st.selectbox("Job", ids, key=key)
    return next(j for j in jobs if j.id == job_id)


def list_once(job: J.Job) -> None:
    """A finished job's model appears in every picker now, not after the model list's 15 s cache."""
    seen = st.session_state.setdefault(LISTED, set())
    if job.state == "finished" and job.id not in seen:
        seen.add(job.id)
        common.listed_models.clear()


def stop_resume(queue: J.JobQueue, owner: str, job: J.Job, prefix: str) -> None:
    """The Stop and Resume buttons of one job."""
    c = st.columns([1, 1, 4])
    c[0].button("Stop", disabled=job.state not in J.ACTIVE, key=f"{prefix}_stop_{job.id}", on_click=control,
                args=(J.JobQueue.stop, queue, owner, job.id, prefix),
                help="Saves a checkpoint, then stops; Resume continues from it")
    c[1].button("Resume", disabled=job.state not in ("stopped", "failed"), key=f"{prefix}_resume_{job.id}",
                on_click=control, args=(J.JobQueue.resume, queue, owner, job.id, prefix))
