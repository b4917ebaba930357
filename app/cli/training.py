"""The commands that train: `lmscope train`, `finetune`, `distill` (running model.train's trainers) and
`demo-models`, plus `classify` (a fine-tuned classifier's labels).

    lmscope finetune demo/bert --data assets/data/topics.csv --out runs/bert-topics
    lmscope finetune demo/gpt2 --data toy-agreement --out runs/gpt2-agree --head-only
    lmscope finetune demo/gpt2 --task lm --data pydoc --out runs/gpt2-pydoc --steps 200
    lmscope classify runs/bert-topics "the striker scored twice" --json
    lmscope distill demo/gpt2 --corpus toyworld --out runs/gpt2-student --layers 2 --hidden 128 --heads 2

Exit status 0 when done or stopped on request (SIGINT / SIGTERM / OUT/STOP: continue with --resume);
a user error is one `error: ...` line, status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Callable

from app.cli.io import emit, quiet_transformers, read_text


def config_from(cls, a: argparse.Namespace):
    """A run's config dataclass from the parsed arguments: every field that is an argument of the same name
    (`out_dir` from --out); the others keep their defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(a).items() if k in names}
    return cls(out_dir=a.out, **values)


def config_from_args(a: argparse.Namespace):
    """`lmscope train`'s arguments as a TrainConfig."""
    from model.train.config import TrainConfig

    return config_from(TrainConfig, a)


def cmd_train(args):
    from model.train.run import run_train

    return run_train(config_from_args(args), quiet=args.quiet)


def progress(event: dict) -> None:
    """A progress line on stderr per step (redrawn), eval lines below it."""
    t = event.get("type")
    if t == "step":
        n, total = event["step"], event["total_steps"]
        sys.stderr.write(f"\r{n}/{total} loss {event['loss']:.4f} eta {event['eta_s']:.0f} s ")
    elif t == "eval":
        parts = [f"{k} {v:.4f}" for k, v in event.items() if k in ("loss", "accuracy", "perplexity", "agreement")]
        sys.stderr.write(f"\n  held-out {', '.join(parts)}\n")
    elif t in ("done", "stopped", "error"):
        sys.stderr.write(f"\n{event.get('message', t)}\n")
    sys.stderr.flush()


def run_job(run: Callable, cfg, a: argparse.Namespace, numbers: Callable[[dict, dict], str | None]) -> int:
    """Run a trainer (`run(cfg, callbacks=...)`, progress on stderr unless --quiet) and print its status
    line; `numbers(record, heldout)` gives the held-out figures it ends with (None: there are none)."""
    rec = run(cfg, callbacks=[] if a.quiet else [progress])
    said = numbers(rec, rec.get("heldout") or {})
    print(f"{rec['status']}: {a.out} ({rec['steps']} steps)" + (f": {said}" if said else ""))
    return 0


def cmd_finetune(a: argparse.Namespace) -> int:
    from model.train.finetune import FinetuneConfig, finetune

    quiet_transformers()
    cfg = config_from(FinetuneConfig, a)

    def numbers(rec: dict, h: dict) -> str | None:
        if cfg.task == "classify" and "accuracy" in h:
            return f"held-out accuracy {h['accuracy']:.3f} (majority class {rec['majority_baseline']:.3f})"
        if "perplexity" in h:
            return f"held-out perplexity {rec['heldout_before']['perplexity']:.2f} -> {h['perplexity']:.2f}"
        return None

    return run_job(finetune, cfg, a, numbers)


def cmd_distill(a: argparse.Namespace) -> int:
    from model.train.distill import DistillConfig, distill

    quiet_transformers()
    cfg = config_from(DistillConfig, a)

    def numbers(rec: dict, h: dict) -> str | None:
        if "perplexity" not in h:
            return None
        return (f"student perplexity {h['perplexity']:.2f} (teacher {rec['teacher_heldout']['perplexity']:.2f}), "
                f"top-1 agreement {h['agreement']:.3f}")

    return run_job(distill, cfg, a, numbers)


def cmd_classify(args):
    """The JSON payload: {"model", "predictions": [{"label", "prob"}, ...]}."""
    from model.classify import classify, load_classifier

    quiet_transformers()
    text = read_text(args)
    clf = load_classifier(args.model)
    preds = classify(clf, [text])[0]
    payload = {"model": clf.name, "predictions": [p.to_json() for p in preds]}
    emit(args, payload, lambda: "\n".join(f"{p['label']:<16} {p['prob']:.4f}" for p in payload["predictions"]))
    return 0


def cmd_demo_models(args):
    from model.train.demo import build_demo_models

    build_demo_models(args.out, only=args.only, scale=args.scale)
    return 0
