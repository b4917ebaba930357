"""`lmscope train ...`: the CLI face of model.train.trainer, with a progress bar on stderr.

    lmscope train gpt2 --corpus toyworld --out runs/gpt2-toy --preset small
    lmscope train bert --corpus notes.txt --out runs/bert-notes --steps 2000 --seq-len 64
    lmscope train bert --corpus notes.txt --out runs/bert-notes --resume        # after a crash or a stop
    torchrun --nproc_per_node=2 -m model.train.run gpt2 --out runs/gpt2-ddp    # DistributedDataParallel

Exit status 0 when training finished or stopped on request (SIGINT / SIGTERM / OUT/STOP, after a
checkpoint); a user error (bad corpus, bad setting, diverging loss) is one `error: ...` line, status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from model.train.config import ARCHS, TrainConfig
from model.train.presets import PRESETS
from model.train.trainer import train


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
    p.add_argument("--mlm-probability", type=float, default=None, help="masked-LM selection rate (default: the preset's, 0.3)")
    p.add_argument("--dropout", type=float, default=None, help="default: the preset's")
    p.add_argument("--whole-word", action="store_true", help="whole-word masking")
    p.add_argument("--char-cnn", action="store_true", help="ELMo: token vectors from their characters (char-CNN)")
    p.add_argument("--static-masking", dest="dynamic_masking", action="store_const", const=False, default=None)
    p.add_argument("--dynamic-masking", dest="dynamic_masking", action="store_const", const=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16", dest="bf16", action="store_const", const=True, default=None,
                   help="bfloat16 autocast for matmuls (default: on when hidden >= 128 and a short matmul measurement finds bf16 faster on this CPU)")
    p.add_argument("--no-bf16", dest="bf16", action="store_const", const=False, help="train in float32 throughout")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--quiet", action="store_true")


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        arch=a.arch, out_dir=a.out, corpus=a.corpus, preset=a.preset, steps=a.steps, batch_size=a.batch_size,
        seq_len=a.seq_len, lr=a.lr, warmup=a.warmup, layers=a.layers, heads=a.heads, hidden=a.hidden,
        vocab_size=a.vocab_size, seed=a.seed, checkpoint_every=a.checkpoint_every, keep_last=a.keep_last,
        eval_every=a.eval_every, mlm_probability=a.mlm_probability, dropout=a.dropout, whole_word=a.whole_word, char_cnn=a.char_cnn,
        dynamic_masking=a.dynamic_masking, threads=a.threads, bf16=a.bf16, resume=a.resume,
    )


_last_draw = [0.0]


def progress_bar(event: dict) -> None:
    """A one-line progress bar on stderr (redrawn at most 10 times a second), eval lines below it."""
    import time

    t = event.get("type")
    if t == "step":
        n, total = event["step"], event["total_steps"]
        if n < total and time.monotonic() - _last_draw[0] < 0.1:
            return
        _last_draw[0] = time.monotonic()
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
    """Train as the arguments say; 0 when done or stopped on request (resume with --resume).
    ValueErrors (bad corpus, bad settings, a diverging run) propagate for the CLI to print."""
    cfg = config_from_args(args)
    record = train(cfg, callbacks=[] if args.quiet else [progress_bar])
    if os.environ.get("RANK", "0") == "0":
        print(f"{record['status']}: {cfg.out_dir} ({record['steps']} steps)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m model.train.run ...` (what `torchrun --nproc_per_node=2 -m model.train.run ...` starts):
    the same arguments as `lmscope train`, errors as one `error: ...` line and exit status 2."""
    p = argparse.ArgumentParser(prog="lmscope train")
    add_train_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_train(args)
    except ValueError as e:
        print(f"error: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}", file=sys.stderr)
        return 2


def _exit_worker(status: int) -> None:
    """End a torchrun worker without interpreter finalization, where torch's C++ side (gloo's threads,
    the store client) is torn down by static destructors racing Python's own teardown. A worker was
    once killed by SIGABRT in CI ("terminate called without an active exception", no Python traceback;
    40 repeats here did not reproduce it), and the teardown is the one stretch of a worker's life that
    is not our code. Nothing of ours is left to finalize by then: the event log is closed, checkpoints
    and the model are renamed into place, the process group is destroyed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _exit_worker(code)
    sys.exit(code)
