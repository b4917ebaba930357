"""A run killed with SIGKILL after its first checkpoint and resumed ends with bit-identical weights to a
run that never stopped (same seed), and leaves no temp files behind."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model.train.config import TrainConfig
from model.train.toyworld import generate_corpus
from model.train.trainer import train

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import json, sys, time
from model.train.trainer import TrainConfig, train
def slow(event):  # give the parent time to kill us between checkpoints
    if event["type"] == "step":
        time.sleep(0.03)
train(TrainConfig(**json.loads(sys.argv[1])), callbacks=[slow])
"""


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "toy.txt"
    p.write_text("\n\n".join("\n".join(d) for d in generate_corpus(150, seed=31)), encoding="utf-8")
    return p


def _steps_logged(out: Path) -> int:
    try:
        lines = (out / "events.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for ln in lines if '"type": "step"' in ln)


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
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while _steps_logged(out) < 15:  # past the first checkpoint (step 10), before the second
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the child never reached step 15"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith("."))
    assert checkpoints[0] == "step-0000010" and "step-0000030" not in checkpoints
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
