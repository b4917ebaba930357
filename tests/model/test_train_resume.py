"""A run killed with SIGKILL after its first checkpoint and resumed ends with bit-identical weights to a
run that never stopped (same seed), and leaves no temp files behind."""
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from model.train.config import TrainConfig
from model.train.toyworld import generate_corpus
from model.train.trainer import train

ROOT = Path(__file__).resolve().parents[2]
# At step 15 (past the first checkpoint at 10, before the second at 20) the child says so on stdout and
# waits to be killed: the parent kills it on that line, not after a guessed delay.
CHILD = """
import json, sys, threading
from model.train.trainer import TrainConfig, train
def kill_me_here(event):
    if event["type"] == "step" and event["step"] == 15:
        print("step 15", flush=True)
        threading.Event().wait(120)
train(TrainConfig(**json.loads(sys.argv[1])), callbacks=[kill_me_here])
"""


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "toy.txt"
    p.write_text("\n\n".join("\n".join(d) for d in generate_corpus(150, seed=31)), encoding="utf-8")
    return p


# bert: static masks + NSP pairs; elmo: LSTMs; both with dropout, so the RNG state must be restored too
@pytest.mark.parametrize("arch", ["bert", "elmo"])
def test_sigkill_then_resume_is_bit_identical(arch, corpus_file, tmp_path):
    kw = dict(arch=arch, corpus=str(corpus_file), preset="tiny", vocab_size=300, steps=30, checkpoint_every=10,
              eval_every=10, eval_batches=1, dropout=0.1, seed=7, threads=1)
    ref = tmp_path / "uninterrupted"
    train(TrainConfig(out_dir=str(ref), **kw))

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps({**kw, "out_dir": str(out)})], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 300)  # the child's line, its death, or a deadline
        assert ready, "the child never reached step 15 within 300 s"
        line = child.stdout.readline()  # "" if it died first
        assert line == "step 15\n", child.stderr.read()[-2000:]
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith("."))
    assert checkpoints == ["step-0000010"]  # killed at step 15
    # as if the kill had hit in the middle of writing the next checkpoint
    stale = out / "checkpoints" / ".tmp-step-0000020-99999"
    stale.mkdir(exist_ok=True)
    (stale / "model.safetensors").write_bytes(b"half a file")

    record = train(TrainConfig(out_dir=str(out), resume=True, **kw))
    assert record["status"] == "done" and record["resumed_from"].endswith(checkpoints[-1])
    assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert not [p for p in out.rglob(".tmp*")]
    steps = [json.loads(ln)["step"] for ln in (out / "events.jsonl").read_text().splitlines()
             if json.loads(ln)["type"] == "step"]
    assert steps == list(range(1, 31))


def test_resume_keeps_the_bf16_choice_the_run_started_with(corpus_file, tmp_path, monkeypatch):
    """bf16=None is decided by a timing measurement, which may change between processes: --resume must not."""
    import model.train.config as config

    out = tmp_path / "run"
    common = dict(arch="gpt2", out_dir=str(out), corpus=str(corpus_file), preset="tiny", hidden=128, heads=2,
                  layers=1, seq_len=16, batch_size=4, checkpoint_every=2, eval_every=50, seed=3)
    monkeypatch.setattr(config, "_bf16_is_fast", lambda: True)
    first = train(TrainConfig(steps=2, **common))
    assert first["config"]["bf16"] is True
    monkeypatch.setattr(config, "_bf16_is_fast", lambda: False)  # the measurement now says otherwise
    resumed = train(TrainConfig(steps=4, resume=True, **common))
    assert resumed["steps"] == 4 and resumed["config"]["bf16"] is True
