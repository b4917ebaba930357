"""The real-English demo models (demo/en-bert, demo/en-gpt2): trained by lmscope on the English of
model.train.english (WordNet glosses, fortunes, CPython's help text), measured on its held-out documents
and on hand-written probes (english_eval), stored in fp16 in assets/models next to the toy-world models.

    lmscope demo-models --out assets/models --only en-bert     # one model, one seeded command

Budgets were chosen by measuring tokens/s on this 2-core machine with both recipes training side by side
(one thread each): see docs/demo-models-english.md.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from model.train.corpus import Corpus
from model.train.trainer import TrainConfig, TrainingError, train

# name -> TrainConfig fields. seq_len is also the number of positions: 320 reads a 300-token text whole
# (plus [CLS] / [SEP]). 8k-piece vocabularies give ~1.2 tokens per word on an ordinary paragraph. float32
# only: the CPU this was built on has no AVX-512 (bf16 measured 35x slower than fp32 there). Steps set by
# measuring on the quiet 2-core machine (2 threads, nothing else running): 0.265 s per BERT step and 0.395 s
# per GPT-2 step at 4 x 256, so each recipe trains in ~25 minutes alone, ~45 side by side on one core each;
# the training text (everyday WordNet senses, fortunes, pydoc: ~1 M tokens) is seen ~10-13 times.
ENGLISH_RECIPES: dict[str, dict] = {
    # dynamic masking (a fresh mask every batch, as RoBERTa): with BERT's static masks the ~10 passes over ~1 M
    # tokens were memorised (held-out masked loss 6.46, training 5.0); dynamic: held-out 6.09
    "en-bert": dict(arch="bert", steps=5600, seq_len=320, batch_size=8, lr=5e-4, warmup=200, vocab_size=8000,
                    mlm_probability=0.25, dynamic_masking=True, layers=4, hidden=256, heads=4, dropout=0.1),
    "en-gpt2": dict(arch="gpt2", steps=3800, seq_len=320, batch_size=8, lr=1e-3, warmup=150, vocab_size=8000,
                    layers=4, hidden=256, heads=4, dropout=0.1),
}
# Written next to each English model (the WordNet licence asks for its notice on all copies, modifications
# included; a model trained on the glosses is treated as one).
NOTICE = """This model was trained by lmscope (`lmscope demo-models --only NAME`) on text read from:

- WordNet 3.0 (Debian package wordnet-base): glosses and example sentences.
  WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.
  THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR
  WARRANTIES, EXPRESS OR IMPLIED. BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON UNIVERSITY MAKES NO
  REPRESENTATIONS OR WARRANTIES OF MERCHANTABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE OF THE
  LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS,
  TRADEMARKS OR OTHER RIGHTS. (The full WordNet 3.0 licence: /usr/share/doc/wordnet-base/copyright.)
- Debian's fortune files (packages fortunes, fortunes-min; BSD fortune-mod collection; the offensive set and
  the files named in model/train/english.py SKIP_FORTUNES were not read).
- CPython's help text (pydoc_data.topics), Python Software Foundation License.
"""
SEGMENT_WORDS = 120  # BERT segments: up to this many words each, so a pair fills ~300 of the 320 positions
SEGMENT_SEED = 5


def english_training_corpus(arch: str, split) -> Corpus:
    """The training documents; for BERT their sentences joined into multi-sentence segments."""
    from model.train.english import segments

    corpus = split.train_corpus()
    if arch == "bert":
        corpus = Corpus(corpus.name, segments(corpus.documents, SEGMENT_WORDS, SEGMENT_SEED), corpus.fingerprint)
    return corpus


def train_english(name: str, run_dir: str | Path, *, bf16: bool | None = None, scale: float = 1.0,
                  threads: int | None = None, callbacks=None, resume: bool = False) -> dict:
    """Train one recipe into run_dir (removed first, unless resume: continue from its newest checkpoint;
    the corpus and tokenizer are rebuilt, identically); returns the training record."""
    from model.train.prepare import prepare
    from model.train.english import english_split
    from model.train.run import progress_bar

    if name not in ENGLISH_RECIPES:
        raise TrainingError(f"unknown English demo model {name!r}; choose one of {', '.join(ENGLISH_RECIPES)}")
    r = dict(ENGLISH_RECIPES[name])
    r["steps"] = max(10, int(r["steps"] * scale))
    run_dir = Path(run_dir)
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    split = english_split()
    cfg = TrainConfig(out_dir=str(run_dir), corpus="english", preset="small", seed=0, bf16=bf16, threads=threads,
                      checkpoint_every=max(10, r["steps"] // 4), eval_every=max(50, r["steps"] // 10), keep_last=1,
                      heldout_share=0.01, resume=resume, **r)
    prep = prepare(cfg.resolved(), corpus=english_training_corpus(r["arch"], split))
    record = train(cfg, callbacks=[progress_bar] if callbacks is None else callbacks, prepared=prep)
    record["english_corpus"] = split.stats
    (run_dir / "training_record.json").write_text(json.dumps(record, indent=2, default=str))
    return record


def install_english(name: str, run_dir: str | Path, out_root: str | Path) -> dict:
    """Evaluate a trained run (english_eval), store it in fp16 as out_root/name and merge its quality into
    out_root/DEMO_QUALITY.json (the other entries are kept)."""
    from model.train.demo import merge_quality, to_fp16
    from model.train.english_eval import evaluate_english

    run_dir, out_root = Path(run_dir), Path(out_root)
    if not (run_dir / "model.safetensors").exists():
        model_from_checkpoint(run_dir)
    quality = evaluate_english(run_dir)
    rec_path = run_dir / "training_record.json"
    record = json.loads(rec_path.read_text())
    record["demo_quality"] = quality
    rec_path.write_text(json.dumps(record, indent=2, default=str))
    to_fp16(run_dir)
    target = out_root / name
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("checkpoints", "events.jsonl", ".tmp*", "STOP"))
    (target / "NOTICE.txt").write_text(NOTICE.replace("NAME", name))
    merge_quality(out_root / "DEMO_QUALITY.json", {name: quality})
    return quality


def model_from_checkpoint(run_dir: Path) -> None:
    """A run stopped before its last step (OUT/STOP, SIGTERM): its newest checkpoint becomes the model, and
    its training record says where it stopped (the learning rate had not decayed to 0 there)."""
    from model.train.checkpoint import STATE_FILE, RunDir

    ckpt = RunDir(run_dir).latest_checkpoint()
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} holds neither a finished model nor a checkpoint")
    for f in ckpt.iterdir():
        if f.is_file() and f.name != STATE_FILE:
            shutil.copy2(f, run_dir / f.name)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    start = next(e for e in events if e["type"] in ("start", "resume"))
    evals = [e for e in events if e["type"] == "eval"]
    record = {"status": "stopped", "arch": start["config"]["arch"], "config": start["config"],
              "steps": int(ckpt.name.split("-")[1]), "total_steps": start["total_steps"],
              "heldout": evals[-1] if evals else None, "baselines": start.get("baselines"),
              "parameters": start.get("parameters"), "checkpoint": ckpt.name}
    old = run_dir / "training_record.json"
    if old.exists():
        record = {**json.loads(old.read_text()), **record}
    old.write_text(json.dumps(record, indent=2, default=str))


def build_english(name: str, out_root: str | Path, work: str | Path, *, bf16: bool | None = None,
                  scale: float = 1.0) -> dict:
    """Train, evaluate and install one English demo model."""
    run_dir = Path(work) / name
    train_english(name, run_dir, bf16=bf16, scale=scale)
    quality = install_english(name, run_dir, out_root)
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"\n{name}: {json.dumps(quality)}", flush=True)
    return quality


__all__ = ["ENGLISH_RECIPES", "build_english", "train_english", "install_english"]
