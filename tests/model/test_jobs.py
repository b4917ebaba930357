"""The training job queue: ordering, places, per-session ownership, stop / resume, failures; the queue logic
with a quick fake trainer (it writes the same events.jsonl as the real one), plus one real tiny run."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from model import jobs as J
from model.jobs import JobError, JobQueue, TrainRequest, workers
from model.train.layout import complete_checkpoints

# A stand-in for `lmscope train`: the same files (events with "time", a checkpoint dir, STOP honoured, final
# config.json), `error: ...` and exit 2 for a corpus file reading "bad", and it records its argv.
FAKE = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path
    args = sys.argv[1:]
    out = Path(args[args.index("--out") + 1])
    steps = int(args[args.index("--steps") + 1])
    delay = float(os.environ.get("FAKE_DELAY", "0.05"))
    (out / "argv.txt").open("a").write(" ".join(args) + "\\n")
    corpus = Path(args[args.index("--corpus") + 1])
    if corpus.is_file() and corpus.read_text() == "bad":
        print("error: the corpus has no sentences", file=sys.stderr)
        sys.exit(2)
    time.sleep(float(os.environ.get("FAKE_PREPARE", "0")))  # reading the corpus, training the tokenizer
    ev = out / "events.jsonl"
    def emit(**e):
        with open(ev, "a") as f:
            f.write(json.dumps({"time": time.time(), **e}) + "\\n")
    start = 0
    if "--resume" in args:
        start = max(int(p.name[5:]) for p in (out / "checkpoints").iterdir())
    emit(type="resume" if start else "start", step=start, total_steps=steps)
    for s in range(start + 1, steps + 1):
        if (out / "STOP").exists():
            ck = out / "checkpoints" / f"step-{s - 1:07d}"
            ck.mkdir(parents=True, exist_ok=True)
            (ck / "config.json").write_text("{}")
            (ck / "trainer_state.pt").write_text("")
            emit(type="stopped", step=s - 1, message=f"training stopped at step {s - 1}")
            sys.exit(0)
        time.sleep(delay)
        emit(type="step", step=s, loss=5.0 / s, lr=1e-3, tokens_per_s=100.0, eta_s=(steps - s) * delay, total_steps=steps)
    (out / "config.json").write_text("{}")
    emit(type="done", step=steps, message=f"training done at step {steps}")
''')


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE)

    def command(req: TrainRequest, out: Path, resume: bool) -> list[str]:
        return [sys.executable, str(script), *req.argv(out, resume)]

    return command


def wait_for(queue: JobQueue, job_id: str, states, timeout: float = 20.0):
    end = time.time() + timeout
    while time.time() < end:
        job = queue.status(job_id)
        if job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{job_id} stayed {queue.status(job_id).state}")


def test_queue_order_places_and_sessions(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("FAKE_DELAY", "0.15")
    q = JobQueue(tmp_path / "runs", max_running=1, command=fake)
    a1 = q.submit("alice", TrainRequest(arch="gpt2", steps=4))
    a2 = q.submit("alice", {"arch": "bert", "steps": 2})
    b1 = q.submit("bob", TrainRequest(arch="gpt2", steps=2))
    assert [q.status(j).state for j in (a1, a2, b1)] == ["running", "queued", "queued"]
    assert (q.status(a2).place, q.status(b1).place) == (1, 2)  # places count every session's waiting jobs
    assert q.status(a2).label == "queued (place 1)"
    assert {j.id for j in q.jobs("alice")} == {a1, a2}
    assert [j.id for j in q.jobs("bob")] == [b1]
    assert q.jobs("carol") == []
    # one at a time, in submission order
    for jid in (a1, a2, b1):
        wait_for(q, jid, ("finished",))
        others = [q.status(j) for j in (a1, a2, b1) if j != jid]
        assert sum(o.state == "running" for o in others) <= 1
    done = q.status(a1)
    assert done.step == 4 and done.total_steps == 4
    assert done.message.endswith(q.model_name(a1)) and q.model_name(a1) == f"runs/{a1}"
    assert (q.dir(a1) / "config.json").is_file()


def test_max_running_two_starts_two(tmp_path, fake):
    q = JobQueue(tmp_path / "runs", max_running=2, command=fake)
    ids = [q.submit("s", TrainRequest(arch="gpt2", steps=20)) for _ in range(3)]
    assert [q.status(j).state for j in ids] == ["running", "running", "queued"]
    for j in ids[:2]:
        q.stop(j, "s")
    wait_for(q, ids[2], ("running", "finished"))


def test_env_sets_max_running(tmp_path, monkeypatch, fake):
    monkeypatch.setenv("LMSCOPE_MAX_TRAINING_JOBS", "3")
    assert JobQueue(tmp_path, command=fake).max_running == 3
    monkeypatch.setenv("LMSCOPE_MAX_TRAINING_JOBS", "lots")
    with pytest.raises(JobError, match="whole number"):
        JobQueue(tmp_path)


def test_stop_and_resume_continue_from_checkpoint(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("FAKE_DELAY", "0.1")
    q = JobQueue(tmp_path / "runs", command=fake)
    jid = q.submit("s", TrainRequest(arch="gpt2", steps=30))
    end = time.time() + 20
    while q.status(jid).step < 2 and time.time() < end:
        time.sleep(0.05)
    q.stop(jid, "s")
    assert (q.dir(jid) / "STOP").is_file()
    job = wait_for(q, jid, ("stopped", "failed"))
    assert job.state == "stopped" and job.message.startswith("stopped at step")
    stopped_at = job.step
    assert complete_checkpoints(q.dir(jid))[-1][0] == stopped_at
    with pytest.raises(JobError, match="not queued or running"):
        q.stop(jid, "s")
    monkeypatch.setenv("FAKE_DELAY", "0.01")
    q.resume(jid, "s")
    assert not (q.dir(jid) / "STOP").exists()
    job = wait_for(q, jid, ("finished",))
    argv = (q.dir(jid) / "argv.txt").read_text().splitlines()
    assert "--resume" not in argv[0] and argv[1].endswith("--resume")
    assert job.runs == 2 and job.step == 30
    steps = [e["step"] for e in J.read_events(q.dir(jid)) if e["type"] == "step"]
    assert steps[-1] == 30 and min(steps[stopped_at:]) == stopped_at + 1
    with pytest.raises(JobError, match="only a stopped or failed job"):
        q.resume(jid, "s")


def test_stop_queued_job_cancels_it_and_resume_requeues(tmp_path, fake):
    q = JobQueue(tmp_path / "runs", command=fake)
    first = q.submit("s", TrainRequest(arch="gpt2", steps=200))
    second = q.submit("s", TrainRequest(arch="gpt2", steps=2))
    job = q.stop(second, "s")
    assert job.state == "stopped" and "cancelled" in job.message
    assert not (q.dir(second) / "events.jsonl").exists()  # it never ran
    job = q.resume(second, "s")
    assert job.state == "queued" and job.place == 1
    q.stop(first, "s")
    wait_for(q, second, ("finished",))
    assert "--resume" not in (q.dir(second) / "argv.txt").read_text()  # no checkpoint: it starts over


def test_stop_while_preparing_terminates_the_process(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("FAKE_PREPARE", "300")  # far longer than any wait below: only SIGTERM ends it early
    q = JobQueue(tmp_path / "runs", command=fake)
    jid = q.submit("s", TrainRequest(arch="gpt2", steps=3))
    argv = q.dir(jid) / "argv.txt"  # the fake writes it on start, then "prepares"
    end = time.time() + 60
    while not argv.exists() and time.time() < end:
        time.sleep(0.02)
    assert argv.exists(), "the job's process never started"
    q.stop(jid, "s")  # no "start" event yet: nothing to checkpoint, so SIGTERM
    job = wait_for(q, jid, ("stopped", "failed"), timeout=60)
    assert job.state == "stopped" and job.message == "stopped before training began" and job.returncode == -15


def test_failure_shows_the_error_line(tmp_path, fake, monkeypatch):
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    (corpora / "bad.txt").write_text("bad")
    monkeypatch.setenv("LMSCOPE_CORPUS_ROOTS", str(corpora))
    q = JobQueue(tmp_path / "runs", command=fake)
    jid = q.submit("s", TrainRequest(arch="gpt2", steps=3, corpus=str(J.check_corpus_path(corpora / "bad.txt"))))
    job = wait_for(q, jid, ("failed", "finished"))
    assert job.state == "failed" and job.message == "the corpus has no sentences"
    assert job.returncode == 2


def test_ownership_and_bad_ids(tmp_path, fake):
    q = JobQueue(tmp_path / "runs", command=fake)
    jid = q.submit("alice", TrainRequest(arch="gpt2", steps=50))
    for call in (lambda: q.stop(jid, "mallory"), lambda: q.resume(jid, "mallory"), lambda: q.status(jid, "mallory")):
        with pytest.raises(JobError, match="no such job"):
            call()
    assert q.status(jid, "alice").state == "running"
    for bad in ("../alice", "gpt2-20250101-000000-zzzzzz/..", "", "/etc/passwd"):
        with pytest.raises(JobError, match="not a job id"):
            q.status(bad)
    q.stop(jid, "alice")


def test_limits_and_request_validation(tmp_path, fake):
    q = JobQueue(tmp_path / "runs", command=fake)
    for _ in range(J.MAX_ACTIVE_PER_SESSION):
        q.submit("greedy", TrainRequest(arch="gpt2", steps=500))
    with pytest.raises(JobError, match="at most"):
        q.submit("greedy", TrainRequest(arch="gpt2", steps=5))
    q.submit("other", TrainRequest(arch="gpt2", steps=5))  # other sessions are not blocked
    for j in q.jobs("greedy") + q.jobs("other"):
        if j.state in J.ACTIVE:
            q.stop(j.id, j.session)
    for bad, msg in [(dict(arch="t5"), "unknown architecture"), (dict(arch="gpt2", preset="huge"), "unknown preset"),
                     (dict(arch="gpt2", steps=0), "steps must be between"), (dict(arch="gpt2", lr=5.0), "learning rate"),
                     (dict(arch="gpt2", char_cnn=True), "ELMo option")]:
        with pytest.raises(JobError, match=msg):
            q.submit("s", TrainRequest(**bad))


def test_character_input_reaches_the_trainer_command(tmp_path):
    argv = TrainRequest(arch="elmo", steps=5, char_cnn=True).argv(tmp_path / "out")
    assert argv[0] == "elmo" and "--char-cnn" in argv
    assert "--char-cnn" not in TrainRequest(arch="elmo", steps=5).argv(tmp_path / "out")
    from app.cli.arguments import add_train_arguments
    from app.cli.training import config_from_args
    import argparse

    p = argparse.ArgumentParser()
    add_train_arguments(p)
    assert config_from_args(p.parse_args(argv)).resolved().char_cnn is True


def test_corpus_paths_are_confined_and_copied(tmp_path, monkeypatch, fake):
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    good = corpora / "mine.txt"
    good.write_text("the cat sat.\n")
    (tmp_path / "secret.txt").write_text("password\n")
    (corpora / "link.txt").symlink_to(tmp_path / "secret.txt")
    monkeypatch.setenv("LMSCOPE_CORPUS_ROOTS", str(corpora))
    assert J.check_corpus_path(good) == good.resolve()
    for bad, msg in [(tmp_path / "secret.txt", "outside"), (corpora / "link.txt", "outside"),
                     (corpora / "../secret.txt", "outside"), (corpora / "nope.txt", "no such corpus"),
                     (corpora / "x.pdf", "must be a .txt or .jsonl")]:
        with pytest.raises(JobError, match=msg):
            J.check_corpus_path(bad)
    monkeypatch.setenv("FAKE_DELAY", "0")
    q = JobQueue(tmp_path / "runs", command=fake)
    jid = q.submit("s", TrainRequest(arch="gpt2", steps=1, corpus=str(good)))
    copied = q.dir(jid) / "corpus.txt"
    assert copied.read_text() == "the cat sat.\n"
    assert q.status(jid).request["corpus"] == str(copied)
    with pytest.raises(JobError, match="outside"):  # the queue checks too, not only the page
        q.submit("s", TrainRequest(arch="gpt2", steps=1, corpus=str(tmp_path / "secret.txt")))


def test_uploads_are_per_session_and_size_limited(tmp_path, monkeypatch, fake):
    monkeypatch.setenv("LMSCOPE_MAX_UPLOAD_MB", "0.001")  # ~1 KB
    monkeypatch.setenv("FAKE_DELAY", "0")
    path = J.save_upload("alice", "../../etc/my notes.TXT", b"the cat sat.\n")
    assert path.parent == J.upload_dir("alice") and path.name == "upload.txt"  # only the suffix is kept
    assert J.upload_dir("alice") != J.upload_dir("bob")
    for name, data, msg in [("big.txt", b"x" * 2000, "accepts corpora up to"), ("a.pdf", b"x", ".txt or .jsonl"),
                            ("e.jsonl", b"  \n", "empty")]:
        with pytest.raises(JobError, match=msg):
            J.save_upload("alice", name, data)
    q = JobQueue(tmp_path / "runs", command=fake)
    jid = q.submit("alice", TrainRequest(arch="gpt2", steps=1, corpus=str(path)))
    assert (q.dir(jid) / "corpus.txt").read_bytes() == b"the cat sat.\n"
    with pytest.raises(JobError, match="outside"):  # another session cannot train on alice's upload
        q.submit("bob", TrainRequest(arch="gpt2", steps=1, corpus=str(path)))


def test_another_server_process_sees_and_reaps_the_same_jobs(tmp_path, fake, monkeypatch):
    """A second queue object without the Popen handles (a restarted server) decides from the pid, its start
    time and the files."""
    monkeypatch.setenv("FAKE_DELAY", "0.2")
    q = JobQueue(tmp_path / "runs", command=fake)
    jid = q.submit("s", TrainRequest(arch="gpt2", steps=2))
    child = workers._CHILDREN.pop(q.status(jid).pid)  # forget the handle, as a new process would not have it
    child.wait()  # it ends (and is reaped) behind the queue's back
    other = JobQueue(tmp_path / "runs", command=fake)
    job = other.status(jid)
    assert job.state == "finished" and job.returncode is None


def test_read_events_is_incremental_and_skips_partial_lines(tmp_path):
    ev = tmp_path / "events.jsonl"
    ev.write_text(json.dumps({"type": "step", "step": 1}) + "\n" + '{"type": "st')
    assert [e["step"] for e in J.read_events(tmp_path)] == [1]
    with open(ev, "a") as f:
        f.write('ep", "step": 2}\n')
    assert [e["step"] for e in J.read_events(tmp_path)] == [1, 2]
    tmp = tmp_path / "new"
    tmp.write_text(json.dumps({"type": "resume", "step": 1}) + "\n")
    os.replace(tmp, ev)  # the trainer rewrites the log on resume
    assert [e["type"] for e in J.read_events(tmp_path)] == ["resume"]
    assert J.read_events(tmp_path / "missing") == []


def test_real_tiny_training_run(tmp_path, monkeypatch):
    """The default command really runs `lmscope train`; the finished model is listed and loads."""
    monkeypatch.setenv("LMSCOPE_RUNS", str(tmp_path / "runs"))
    q = JobQueue()
    assert q.root == tmp_path / "runs"
    jid = q.submit("s", TrainRequest(arch="gpt2", corpus="pydoc", steps=4, batch_size=4, seq_len=16, threads=1))
    job = wait_for(q, jid, ("finished", "failed", "stopped"), timeout=60)
    assert job.state == "finished", (job.message, (q.dir(jid) / "train.log").read_text()[-2000:])
    from model.load import load_model
    from model.registry import list_models

    assert q.model_name(jid) in [e.name for e in list_models()]
    assert load_model(q.model_name(jid)).info.task == "causal-lm"
    assert [s for s, _ in complete_checkpoints(q.dir(jid))][-1] == 4
    evals = [e for e in J.read_events(q.dir(jid)) if e["type"] == "eval"]
    assert evals and {"loss", "perplexity"} <= set(evals[-1])
