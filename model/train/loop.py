"""What every training loop here shares (the learning-rate schedule, the stop request, preparing OUT, the
events, one optimizer update with its non-finite check), and the step loop of fine-tuning and distillation
built on it: AdamW over the trainable parameters, linear warm-up and decay, gradient clipping, the same
events, atomic checkpoints and exact resume as pretraining (model.train.trainer, model.train.checkpoint),
for any model a caller builds.

    >>> run = open_run("runs/ft", resume=False, config=cfg_dict, fingerprint=data.fingerprint)  # doctest: +SKIP
    >>> model = build(run.checkpoint)       # the caller loads the base, or the checkpoint when resuming  # doctest: +SKIP
    >>> record = run_loop(run, model, tok, settings, step_loss, evaluate, callbacks=[print])         # doctest: +SKIP

The caller supplies `step_loss(step) -> {"loss": tensor, ...}`, a pure function of (seed, step) apart
from dropout (whose RNG state the checkpoint keeps), and `evaluate() -> dict` of held-out metrics.
Events (OUT/events.jsonl): start | resume, step, eval, checkpoint, done | stopped | error, as in pretraining.
"""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model.train.checkpoint import RunDir, read_state, write_checkpoint, write_final
from model.train.config import TrainingError

Callback = Callable[[dict], None]
IGNORED_ON_RESUME = ("resume", "threads")  # config keys a resumed run may change


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based): linear warm-up over
    `warmup` steps, then linear decay to 0 at `total`.

        >>> [round(lr_factor(s, 2, 6), 2) for s in range(6)]
        [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    """
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


class StopRequest:
    """Set by SIGTERM / SIGINT (or an OUT/STOP file): finish the current step, checkpoint, stop."""

    CHECK_EVERY_S = 0.2  # look for the STOP file at most this often (a stat per step costs at tiny sizes)

    def __init__(self, out: Path):
        self.out, self.signalled, self.file = out, False, False
        self.old, self.checked = {}, 0.0

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handler) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handler(self, *_):
        self.signalled = True

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)
        return False

    @property
    def requested(self) -> bool:
        now = time.monotonic()
        if not self.file and now - self.checked >= self.CHECK_EVERY_S:
            self.checked, self.file = now, (self.out / "STOP").exists()
        return self.signalled or self.file


def prepare_out(run: RunDir, started: float, resume_from: int | None) -> None:
    """The first write to OUT: create it, remove what a crashed run left, forget a STOP file addressed to
    an earlier process (older than `started`) and, when resuming from step `resume_from`, the events logged
    after it (they will happen again)."""
    run.out.mkdir(parents=True, exist_ok=True)
    run.clean_temp()
    stop_file = run.out / "STOP"
    if stop_file.exists() and stop_file.stat().st_mtime < started:  # addressed to an earlier process
        stop_file.unlink(missing_ok=True)
    if resume_from is not None:
        run.truncate_events(resume_from)


def emitter(run: RunDir, callbacks: list[Callback]) -> Callback:
    """emit(event): stamps the time, passes the event to every callback, appends it to OUT/events.jsonl."""

    def emit(event: dict) -> None:
        event = {"type": event.pop("type"), "time": time.time(), **event}
        for cb in callbacks:
            cb(event)
        run.append_event(event)

    return emit


def optimizer_step(loss: torch.Tensor, value: float, *, step: int, run: RunDir, params: list[torch.nn.Parameter],
                   opt: torch.optim.Optimizer, sched, lr: float, grad_clip: float) -> None:
    """One update from `loss` (whose value, over every rank, is `value`): a non-finite value stops the run
    with a TrainingError naming the last good checkpoint; otherwise backward, the global gradient norm
    clipped to `grad_clip`, the optimizer and scheduler steps, gradients cleared."""
    if not math.isfinite(value):
        good = run.latest_checkpoint()
        where = f"the last good checkpoint is {good}" if good else "no checkpoint had been written"
        raise TrainingError(f"the loss became {value} at step {step + 1} (learning rate too high? it is "
                            f"{lr}); training stopped; {where}")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


@dataclass
class LoopSettings:
    steps: int
    lr: float
    warmup: int = 0
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    checkpoint_every: int = 50
    eval_every: int = 25
    keep_last: int = 3
    seed: int = 0


@dataclass
class Run:
    """An output directory about to be trained into. checkpoint/state: what a resume continues from."""

    run: RunDir
    config: dict
    fingerprint: str
    checkpoint: Path | None = None
    state: dict | None = None
    extra: dict = field(default_factory=dict)  # what the first run stored for later ones (e.g. "before" metrics)


def open_run(out: str | Path, resume: bool, config: dict, fingerprint: str) -> Run:
    """Check OUT before anything is written: a fresh run needs an unused directory, a resumed one a
    complete checkpoint made with the same settings and data. Raises TrainingError."""
    out = Path(out)
    run = RunDir(out)
    if not resume and run.has_results():
        raise TrainingError(f"{out} already holds a trained model or checkpoints; add --resume to continue it, "
                            "or choose another --out")
    if not resume:
        return Run(run, config, fingerprint)
    ck = run.latest_checkpoint()
    if ck is None:
        raise TrainingError(f"nothing to resume in {out}: no complete checkpoint under {run.ckpt}")
    state = read_state(ck)
    saved = json.loads(state["config"])
    diff = [k for k in sorted(set(saved) | set(config)) if k not in IGNORED_ON_RESUME and saved.get(k) != config.get(k)]
    if diff:
        k = diff[0]
        raise TrainingError(f"cannot resume {ck}: it was trained with {k}={saved.get(k)!r}, now {k}={config.get(k)!r}")
    if state["fingerprint"] != fingerprint:
        raise TrainingError(f"cannot resume {ck}: the data is not the one it was trained on")
    return Run(run, config, fingerprint, ck, state, json.loads(state.get("extra", "{}")))


def make_optimizer(params: list[torch.nn.Parameter], s: LoopSettings) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on matrices only."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=s.lr, betas=(0.9, 0.98), eps=1e-6)


def run_loop(run: Run, model: torch.nn.Module, tok, s: LoopSettings, step_loss: Callable[[int], dict],
             evaluate: Callable[[], dict], callbacks: list[Callback] = (), start_info: dict | None = None,
             record_extra: dict | Callable[[], dict] | None = None, unit: str = "examples", per_step: int = 1) -> dict:
    """Train `model` (its parameters with requires_grad) for s.steps steps; returns the record (also
    OUT/training_record.json, written with the finished model into OUT). per_step: `unit`s per step,
    for the speed figure. start_info goes into the start event and is kept for resumed runs (run.extra)."""
    started = time.time()
    out = run.run.out
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError("nothing to train: every parameter is frozen")
    opt = make_optimizer(params, s)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, s.warmup, s.steps))
    start, prior_time = 0, 0.0
    if run.state is not None:
        opt.load_state_dict(run.state["optimizer"])
        sched.load_state_dict(run.state["scheduler"])
        torch.set_rng_state(run.state["rng"][0].clone())
        start, prior_time = int(run.state["step"]), float(run.state["wall_time_s"])
        if start > s.steps:
            raise TrainingError(f"cannot resume {run.checkpoint}: it is at step {start}, beyond --steps {s.steps}")
    else:
        torch.manual_seed(s.seed * 1000 + 1)  # the dropout stream
    extra = run.extra if run.state is not None else dict(start_info or {})
    prepare_out(run.run, started, start if run.state is not None else None)
    emit = emitter(run.run, list(callbacks))

    def save(step: int) -> None:
        st = {"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
              "rng": torch.get_rng_state()[None], "config": json.dumps(run.config), "fingerprint": run.fingerprint,
              "wall_time_s": prior_time + time.time() - t0, "extra": json.dumps(extra)}
        path = write_checkpoint(run.run, model, tok, st, step, s.keep_last)
        emit({"type": "checkpoint", "step": step, "path": str(path)})

    n_params = sum(p.numel() for p in model.parameters())
    emit({"type": "resume" if run.state is not None else "start", "step": start, "total_steps": s.steps,
          "config": run.config, "parameters": n_params, "trainable_parameters": sum(p.numel() for p in params), **extra})
    t0 = time.time()
    train_time, status, step, last_eval, recent = 0.0, "done", start, None, []
    model.train()
    try:
        with StopRequest(out) as stop:
            for step in range(start, s.steps):
                if stop.requested:  # before the forward pass: the saved RNG state is the one step `step` starts from
                    status = "stopped"
                    break
                ts = time.perf_counter()
                parts = step_loss(step)
                loss = parts["loss"]
                value = float(loss.detach())
                optimizer_step(loss, value, step=step, run=run.run, params=params, opt=opt, sched=sched, lr=s.lr,
                               grad_clip=s.grad_clip)
                train_time += time.perf_counter() - ts
                done = step + 1
                recent = (recent + [value])[-20:]
                emit({"type": "step", "step": done, "loss": value, "lr": sched.get_last_lr()[0],
                      f"{unit}_per_s": per_step * (done - start) / max(train_time, 1e-9),
                      "elapsed_s": prior_time + time.time() - t0, "total_steps": s.steps,
                      "eta_s": (s.steps - done) * train_time / (done - start),
                      **{k: float(v.detach()) for k, v in parts.items() if k != "loss" and torch.is_tensor(v)}})
                if done % s.eval_every == 0 or done == s.steps:
                    model.eval()
                    with torch.no_grad():
                        last_eval = evaluate()
                    model.train()
                    emit({"type": "eval", "step": done, **last_eval})
                if done % s.checkpoint_every == 0 or done == s.steps:
                    save(done)
            else:
                step = s.steps
            if status == "stopped" and step > start and not (run.run.ckpt / f"step-{step:07d}").exists():
                save(step)
    except TrainingError as e:
        emit({"type": "error", "step": step, "message": str(e)})
        run.run.close()
        raise
    except BaseException:
        run.run.close()
        raise
    wall = prior_time + time.time() - t0
    if callable(record_extra):  # measured after training (e.g. the finished model's speed)
        model.eval()
        record_extra = record_extra()
    record = {"status": status, "config": run.config, "data_fingerprint": run.fingerprint, "steps": step,
              "total_steps": s.steps, "final_train_loss": sum(recent) / len(recent) if recent else None,
              "heldout": last_eval, "wall_time_s": wall, "train_time_s": train_time,
              f"{unit}_per_s": per_step * (step - start) / max(train_time, 1e-9), "parameters": n_params,
              "trainable_parameters": sum(p.numel() for p in params),
              "resumed_from": str(run.checkpoint) if run.checkpoint else None, **extra, **(record_extra or {})}
    if status == "done":
        write_final(run.run, model, tok, record)
    msg = (f"done: {step} steps in {wall:.1f} s" if status == "done" else
           f"stopped at step {step}; continue with --resume")
    emit({"type": status, "step": step, "message": msg})
    run.run.close()
    return record
