"""The app's training jobs: one queue on disk shared by every session of a server, each job a process.

    requests   what a session may ask for (TrainRequest, other kinds by name) and the checks on it
    uploads    where a corpus may come from: the allowed folders and each session's private uploads
    queue      the queue itself: submit, status, stop, resume (Job, JobQueue)
    workers    the processes that run jobs: start, poll, signal
    events     reading what a run writes while it runs (events.jsonl, its log)

The front ends use the names below (`from model import jobs as J; J.JobQueue(...)`).
"""
from model.jobs.events import read_events
from model.jobs.queue import ACTIVE, MAX_ACTIVE_PER_SESSION, MAX_QUEUED, STATES, Job, JobQueue
from model.jobs.requests import ARCHS, MAX_STEPS, PRESETS, REQUEST_KINDS, JobError, TrainRequest, request_from
from model.jobs.uploads import (
    BUILTIN_CORPORA,
    CORPUS_SUFFIXES,
    MAX_UPLOAD_MB,
    ORPHAN_UPLOAD_S,
    UPLOAD_MARKER,
    UploadGuard,
    check_corpus_path,
    corpus_roots,
    max_upload_bytes,
    save_upload,
    sweep_uploads,
    upload_dir,
    uploads_root,
)

__all__ = [
    "ACTIVE", "ARCHS", "BUILTIN_CORPORA", "CORPUS_SUFFIXES", "MAX_ACTIVE_PER_SESSION", "MAX_QUEUED", "MAX_STEPS",
    "MAX_UPLOAD_MB", "ORPHAN_UPLOAD_S", "PRESETS", "REQUEST_KINDS", "STATES", "UPLOAD_MARKER", "Job", "JobError",
    "JobQueue", "TrainRequest", "UploadGuard", "check_corpus_path", "corpus_roots", "max_upload_bytes",
    "read_events", "request_from", "save_upload", "sweep_uploads", "upload_dir", "uploads_root",
]
