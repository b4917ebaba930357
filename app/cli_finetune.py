"""`lmscope finetune`, `lmscope distill` and `lmscope classify`: their arguments and the commands that run
model.train.finetune, model.train.distill and model.classify (the rest of the CLI: app/cli.py).

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
import sys


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    from model.train.labelled import BUILTIN_TASKS

    p.add_argument("base", help="the model to start from (a path or a name from `lmscope models`)")
    p.add_argument("--data", required=True, help=f"a .csv/.jsonl file (text, label), or a built-in task: "
                   f"{', '.join(BUILTIN_TASKS)}; with --task lm a .txt/.jsonl corpus, toyworld or pydoc")
    p.add_argument("--out", required=True, help="output directory (runs/NAME makes it appear in `lmscope models`)")
    p.add_argument("--task", choices=["classify", "lm"], default="classify")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--steps", type=int, default=None, help="default: --epochs passes over the training examples")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--freeze-layers", type=int, default=0, help="freeze the embeddings and the lowest K layers")
    p.add_argument("--head-only", action="store_true", help="train only the new head (a linear probe of the base)")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--quiet", action="store_true")


def add_distill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("teacher", help="the model to distill (a path or a name from `lmscope models`)")
    p.add_argument("--corpus", default="toyworld", help="a .txt/.jsonl file, or toyworld / pydoc")
    p.add_argument("--out", required=True)
    p.add_argument("--student", default=None, help="start the student from this model (same tokenizer) instead of "
                   "a fresh smaller one")
    for name, help_ in (("layers", "default: half the teacher's"), ("hidden", "default: half the teacher's"),
                        ("heads", "default: half the teacher's")):
        p.add_argument(f"--{name}", type=int, default=None, help=help_)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the teacher's soft targets (0: no teacher)")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true")


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


def quiet_transformers() -> None:
    """No load reports or progress bars from transformers (the base's unused LM head is expected)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def run_finetune(a: argparse.Namespace) -> int:
    from model.train.finetune import FinetuneConfig, finetune

    quiet_transformers()
    cfg = FinetuneConfig(base=a.base, data=a.data, out_dir=a.out, task=a.task, text_column=a.text_column,
                         label_column=a.label_column, steps=a.steps, epochs=a.epochs, lr=a.lr, batch_size=a.batch_size,
                         freeze_layers=a.freeze_layers, head_only=a.head_only, checkpoint_every=a.checkpoint_every,
                         eval_every=a.eval_every, seed=a.seed, threads=a.threads, resume=a.resume)
    rec = finetune(cfg, callbacks=[] if a.quiet else [progress])
    h = rec.get("heldout") or {}
    if cfg.task == "classify" and "accuracy" in h:
        print(f"{rec['status']}: {a.out} ({rec['steps']} steps): held-out accuracy {h['accuracy']:.3f} "
              f"(majority class {rec['majority_baseline']:.3f})")
    elif "perplexity" in h:
        print(f"{rec['status']}: {a.out} ({rec['steps']} steps): held-out perplexity "
              f"{rec['heldout_before']['perplexity']:.2f} -> {h['perplexity']:.2f}")
    else:
        print(f"{rec['status']}: {a.out} ({rec['steps']} steps)")
    return 0


def run_distill(a: argparse.Namespace) -> int:
    from model.train.distill import DistillConfig, distill

    quiet_transformers()
    cfg = DistillConfig(teacher=a.teacher, corpus=a.corpus, out_dir=a.out, student=a.student, layers=a.layers,
                        hidden=a.hidden, heads=a.heads, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                        temperature=a.temperature, alpha=a.alpha, checkpoint_every=a.checkpoint_every,
                        eval_every=a.eval_every, seed=a.seed, threads=a.threads, resume=a.resume)
    rec = distill(cfg, callbacks=[] if a.quiet else [progress])
    h = rec.get("heldout") or {}
    if "perplexity" in h:
        print(f"{rec['status']}: {a.out} ({rec['steps']} steps): student perplexity {h['perplexity']:.2f} "
              f"(teacher {rec['teacher_heldout']['perplexity']:.2f}), top-1 agreement {h['agreement']:.3f}")
    else:
        print(f"{rec['status']}: {a.out} ({rec['steps']} steps)")
    return 0


def run_classify(a: argparse.Namespace, text: str) -> dict:
    """The JSON payload of `lmscope classify`: {"model", "predictions": [{"label", "prob"}, ...]}."""
    from model.classify import classify, load_classifier

    clf = load_classifier(a.model)
    preds = classify(clf, [text])[0]
    return {"model": clf.name, "predictions": [p.to_json() for p in preds]}


def human_classify(payload: dict) -> str:
    return "\n".join(f"{p['label']:<16} {p['prob']:.4f}" for p in payload["predictions"])

