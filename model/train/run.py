"""Running a training job from a front end: `run_train(config)` with a progress bar on stderr, and the
clean exit a torchrun worker needs. The arguments live in the CLI (app/cli/arguments.py, `lmscope train`).

Exit status 0 when training finished or stopped on request (SIGINT / SIGTERM / OUT/STOP, after a
checkpoint); a user error (bad corpus, bad setting, diverging loss) raises ValueError for the caller.
"""
from __future__ import annotations

import os
import sys

from model.train.config import TrainConfig
from model.train.trainer import train


class ProgressBar:
    """The trainer's events as a tqdm bar on stderr (redrawn at most 10 times a second), held-out
    evaluations printed above it. One instance serves consecutive runs: a run's end closes its bar."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, event: dict) -> None:
        from tqdm import tqdm

        t = event.get("type")
        if t == "step":
            if self.bar is None:
                self.bar = tqdm(total=event["total_steps"], unit="step", file=sys.stderr, mininterval=0.1,
                                dynamic_ncols=True)
            self.bar.set_postfix_str(f"loss {event['loss']:.3f} {event['tokens_per_s']:.0f} tok/s", refresh=False)
            self.bar.update(event["step"] - self.bar.n)
        elif t == "eval":
            acc = f" acc {event['accuracy']:.3f}" if "accuracy" in event else ""
            note = " (still on the unigram plateau)" if event.get("plateau") else ""
            tqdm.write(f"  held-out loss {event['loss']:.3f} ppl {event['perplexity']:.2f}{acc} "
                       f"(unigram ppl {event['unigram_perplexity']:.1f}){note}", file=sys.stderr)
        elif t in ("done", "stopped", "error"):
            self.close()
            sys.stderr.write(f"{event.get('message', t)}\n")

    def close(self) -> None:
        """End the bar's line (also when the run ends by an exception, before its error line is printed)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


progress_bar = ProgressBar()
_console_bar = progress_bar  # the instance run_train closes, even when a caller wraps progress_bar


def run_train(cfg: TrainConfig, *, quiet: bool = False) -> int:
    """Train as the config says; 0 when done or stopped on request (resume with resume=True).
    ValueErrors (bad corpus, bad settings, a diverging run) propagate for the CLI to print."""
    try:
        record = train(cfg, callbacks=[] if quiet else [progress_bar])
    finally:
        _console_bar.close()
    if os.environ.get("RANK", "0") == "0":
        print(f"{record['status']}: {cfg.out_dir} ({record['steps']} steps)")
    return 0


def exit_worker(status: int) -> None:
    """End a torchrun worker without interpreter finalization, where torch's C++ side (gloo's threads,
    the store client) is torn down by static destructors racing Python's own teardown. A worker was
    once killed by SIGABRT in CI ("terminate called without an active exception", no Python traceback;
    40 repeats here did not reproduce it), and the teardown is the one stretch of a worker's life that
    is not our code. Nothing of ours is left to finalize by then: the event log is closed, checkpoints
    and the model are renamed into place, the process group is destroyed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
