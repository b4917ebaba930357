"""`torchrun --nproc_per_node=2` runs the same trainer with DistributedDataParallel (gloo, CPU): rank 0
alone writes, and with dropout off the result equals a single-process run on the same global batches."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from model.train.config import TrainConfig
from model.train.toyworld import generate_corpus
from model.train.trainer import train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "toy.txt"
    p.write_text("\n\n".join("\n".join(d) for d in generate_corpus(150, seed=41)), encoding="utf-8")
    return p


def _torchrun(args, env):
    # --standalone: a local rendezvous on a free port; own session, so a hang can be killed as a group
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "app.cli", "train", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 0, stderr[-3000:]
    assert stdout.count("done:") == 1  # only rank 0 reports


def test_torchrun_two_processes_and_resume(corpus_file, tmp_path):
    out = tmp_path / "ddp"
    args = ["gpt2", "--corpus", str(corpus_file), "--out", str(out), "--vocab-size", "300",
            "--checkpoint-every", "10", "--eval-every", "10", "--seed", "3", "--quiet"]
    # PYTHONFAULTHANDLER: should a rank die by a signal, its Python stack is in the failure message
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONFAULTHANDLER": "1"}
    _torchrun([*args, "--steps", "10"], env)
    _torchrun([*args, "--steps", "20", "--resume"], env)  # every rank restores its own RNG state
    record = json.loads((out / "training_record.json").read_text())
    assert record["world_size"] == 2 and record["steps"] == 20 and record["resumed_from"].endswith("step-0000010")
    events = [json.loads(ln) for ln in (out / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["type"] == "step"] == list(range(1, 21))  # one writer
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000010", "step-0000020"]

    # the same global batches in one process: the same weights (dropout is off at the tiny preset)
    single, half = tmp_path / "single", dict(arch="gpt2", corpus=str(corpus_file), vocab_size=300,
                                               checkpoint_every=10, eval_every=10, seed=3)
    train(TrainConfig(out_dir=str(single), steps=10, **half))
    train(TrainConfig(out_dir=str(single), steps=20, resume=True, **half))
    a, b = load_file(str(out / "model.safetensors")), load_file(str(single / "model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
