"""`lmscope train ...`: the CLI face of model.train.trainer, with a progress bar on stderr."""
from __future__ import annotations

import argparse
import sys

from model.train.trainer import ARCHS, PRESETS, TrainConfig, train


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", choices=ARCHS)
    p.add_argument("--corpus", default="toyworld", help="a .txt/.jsonl file, or toyworld / pydoc (built in)")
    p.add_argument("--out", required=True, help="output directory (runs/NAME makes it appear in `lmscope models`)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    for name, typ in (("steps", int), ("batch-size", int), ("seq-len", int), ("lr", float), ("warmup", int),
                      ("layers", int), ("heads", int), ("hidden", int), ("vocab-size", int)):
        p.add_argument(f"--{name}", type=typ, default=None, help="default: the preset's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--keep-last", type=int, default=5)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--mlm-probability", type=float, default=0.3)
    p.add_argument("--whole-word", action="store_true", help="whole-word masking")
    p.add_argument("--static-masking", dest="dynamic_masking", action="store_const", const=False, default=None)
    p.add_argument("--dynamic-masking", dest="dynamic_masking", action="store_const", const=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fast on AVX-512 CPUs)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--quiet", action="store_true")


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        arch=a.arch, out_dir=a.out, corpus=a.corpus, preset=a.preset, steps=a.steps, batch_size=a.batch_size,
        seq_len=a.seq_len, lr=a.lr, warmup=a.warmup, layers=a.layers, heads=a.heads, hidden=a.hidden,
        vocab_size=a.vocab_size, seed=a.seed, checkpoint_every=a.checkpoint_every, keep_last=a.keep_last,
        eval_every=a.eval_every, mlm_probability=a.mlm_probability, whole_word=a.whole_word,
        dynamic_masking=a.dynamic_masking, threads=a.threads, bf16=a.bf16, resume=a.resume,
    )


def progress_bar(event: dict) -> None:
    t = event.get("type")
    if t == "step":
        n, total = event["step"], event["total_steps"]
        filled = int(30 * n / total)
        eta = event["eta_s"]
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {n}/{total} loss {event['loss']:.3f} "
                         f"{event['tokens_per_s']:.0f} tok/s eta {eta / 60:.1f} min ")
        sys.stderr.flush()
    elif t == "eval":
        acc = f" acc {event['accuracy']:.3f}" if "accuracy" in event else ""
        note = " (still on the unigram plateau)" if event.get("plateau") else ""
        sys.stderr.write(f"\n  held-out loss {event['loss']:.3f} ppl {event['perplexity']:.2f}{acc} "
                         f"(unigram ppl {event['unigram_perplexity']:.1f}){note}\n")
    elif t in ("done", "stopped", "error"):
        sys.stderr.write(f"\n{event.get('message', t)}\n")


def run_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    record = train(cfg, callbacks=[] if args.quiet else [progress_bar])
    print(f"{record['status']}: {cfg.out_dir} ({record['steps']} steps)")
    return 0
