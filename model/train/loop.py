"""The step loop shared by fine-tuning and distillation: AdamW over the trainable parameters, linear
warm-up and decay, gradient clipping, the same events, atomic checkpoints and exact resume as
pretraining (model.train.trainer, model.train.checkpoint), for any model a caller builds.

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model.train.checkpoint import RunDir, read_state, write_checkpoint, write_final
from model.train.config import TrainingError
from model.train.trainer import StopRequest, lr_factor

Callback = Callable[[dict], None]
IGNORED_ON_RESUME = ("resume", "threads")  # config keys a resumed run may change


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
    out.mkdir(parents=True, exist_ok=True)
    run.run.clean_temp()
    stop_file = out / "STOP"
    if stop_file.exists() and stop_file.stat().st_mtime < started:  # addressed to an earlier process
        stop_file.unlink(missing_ok=True)
    if run.state is not None:
        run.run.truncate_events(start)

    def emit(event: dict) -> None:
        event = {"type": event.pop("type"), "time": time.time(), **event}
        for cb in callbacks:
            cb(event)
        run.run.append_event(event)

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
                if not math.isfinite(value):
                    good = run.run.latest_checkpoint()
                    where = f"the last good checkpoint is {good}" if good else "no checkpoint had been written"
                    raise TrainingError(f"the loss became {value} at step {step + 1} (learning rate too high? it is "
                                        f"{s.lr}); training stopped; {where}")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
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
