"""The training loop: AdamW with linear warm-up and decay, gradient clipping, events for the CLI and the
app, atomic checkpoints, exact resume, and DistributedDataParallel when started by torchrun.

    >>> cfg = TrainConfig(arch="gpt2", corpus="toyworld", out_dir="runs/gpt2-tiny", preset="tiny")  # doctest: +SKIP
    >>> record = train(cfg, callbacks=[print])   # every event also goes to runs/gpt2-tiny/events.jsonl  # doctest: +SKIP
    >>> record["heldout"]["perplexity"]                                                             # doctest: +SKIP
    9.7

Events (dicts, one JSON line each in OUT/events.jsonl, also passed to callbacks on rank 0):
    start | resume   step, total_steps, config, corpus, fingerprint, baselines, world_size
    step             step, loss, lr, tokens_per_s, elapsed_s, eta_s
    eval             step, loss, perplexity, unigram_loss, plateau, accuracy (MLM), pair_accuracy, ...
    checkpoint       step, path
    done | stopped | error   step, message

Exactness: the examples and masks of step s are a pure function of (seed, s) (dataset.batch_for_step);
a checkpoint holds weights, optimizer, scheduler and every rank's RNG state. So a run killed at any
instant and resumed from its last checkpoint ends with bit-identical weights to one that never stopped.

Distributed: under `torchrun --nproc_per_node=N` (WORLD_SIZE > 1) the loop joins a gloo process group,
each rank takes every N-th example of the global batch, DDP averages gradients, and rank 0 alone writes
files. A stop request or a non-finite loss on any rank stops every rank at the same step.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from model import guard
from model.train.checkpoint import RunDir, load_weights, read_state, write_checkpoint, write_final
from model.train.config import ARCHS, MLM_ARCHS, TrainConfig, TrainingError
from model.train.prepare import Prepared, batch_for_step, prepare
from model.train.evaluate import evaluate
from model.train.loop import StopRequest, emitter, lr_factor, optimizer_step, prepare_out
from model.train.models import Objective, build_model
from model.train.presets import PRESETS

__all__ = ["ARCHS", "PRESETS", "TrainConfig", "TrainingError", "train"]

Callback = Callable[[dict], None]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases, norms or the ELMo mix weights)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # betas / eps as in RoBERTa (beta2 = 0.98 is steadier with small batches); fused: one kernel per step
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)


class _Dist:
    """The process group when started by torchrun (WORLD_SIZE > 1), else a single process."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.owner = False
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")
            self.owner = True

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
        return t

    def gather_rng(self) -> torch.Tensor:
        """(world, state) the CPU RNG state of every rank."""
        mine = torch.get_rng_state()
        if self.world == 1:
            return mine[None]
        out = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(out, mine)
        return torch.stack(out)

    def close(self) -> None:
        """Leave the process group together: a barrier, then destroy it. Call it after the DDP wrapper is
        gone: DDP's reducer holds the group, which then outlives destroy_process_group() and is torn down
        later with gloo's threads still running."""
        if self.owner and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _check_resume(cfg: TrainConfig, state: dict, prep: Prepared, checkpoint: Path) -> None:
    import json

    saved = json.loads(state["config"])
    defaults = {k: f.default for k, f in TrainConfig.__dataclass_fields__.items()}
    # a key the checkpoint lacks was added later: such a run had its default (char_cnn: token input)
    diff = [k for k in TrainConfig.RESUME_KEYS if saved.get(k, defaults[k]) != getattr(cfg, k)]
    if diff:
        k = diff[0]
        raise TrainingError(f"cannot resume {checkpoint}: it was trained with {k}={saved.get(k)!r}, now {k}={getattr(cfg, k)!r}")
    if state["fingerprint"] != prep.corpus.fingerprint:
        raise TrainingError(f"cannot resume {checkpoint}: the corpus is not the one it was trained on")
    if int(state["step"]) > cfg.steps:
        raise TrainingError(f"cannot resume {checkpoint}: it is at step {int(state['step'])}, beyond --steps {cfg.steps}")


def train(cfg: TrainConfig, callbacks: list[Callback] = (), prepared: Prepared | None = None) -> dict:
    """Train (or resume) one model; returns the training record (also OUT/training_record.json).

    Raises ValueError subclasses with a one-line message for anything a user can fix (CorpusError for
    a bad corpus, TrainingError for a diverging run or a bad resume); nothing is written to OUT before
    the corpus, the tokenizer and the examples are known to be good.
    """
    import json

    started = time.time()
    auto_bf16 = cfg.bf16 is None
    cfg = cfg.resolved()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    run = RunDir(out)
    if not cfg.resume and run.has_results():
        raise TrainingError(f"{out} already holds a trained model or checkpoints; add --resume to continue it, "
                            "or choose another --out")
    checkpoint = run.latest_checkpoint() if cfg.resume else None
    if cfg.resume and checkpoint is None:
        raise TrainingError(f"nothing to resume in {out}: no complete checkpoint under {run.ckpt}")
    state = read_state(checkpoint) if checkpoint else None
    if state is not None and auto_bf16:  # a measured choice: keep the one the run started with
        cfg.bf16 = bool(json.loads(state["config"]).get("bf16", cfg.bf16))
    tok = None
    if checkpoint or cfg.init_from:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(checkpoint or cfg.init_from), local_files_only=True)
    prep = prepared or prepare(cfg, tok)
    if state is not None:
        _check_resume(cfg, state, prep, checkpoint)

    d = _Dist()
    if cfg.batch_size % d.world:
        raise TrainingError(f"batch size {cfg.batch_size} must be divisible by the number of processes {d.world}")
    run.rank = d.rank
    sizes = dict(vocab_size=len(prep.tok), layers=cfg.layers, hidden=cfg.hidden, heads=cfg.heads, seq_len=cfg.seq_len,
                 dropout=cfg.dropout, seed=cfg.seed, tok=prep.tok, char_cnn=cfg.char_cnn)
    with torch.device("meta"):  # the load guard's check first: shapes only, nothing allocated (counted on one
        # and two layers: every layer has the same shapes, so 400 layers cost two tiny builds)
        p1, p2 = (sum(p.numel() for p in build_model(cfg.arch, **{**sizes, "layers": n}).parameters()) for n in (1, 2))
    n_params = p1 + (cfg.layers - 1) * (p2 - p1)
    guard.check_training(n_params, f"a {cfg.layers}-layer {cfg.arch} of hidden size {cfg.hidden}")
    model = build_model(cfg.arch, **sizes)
    objective = Objective(model, cfg.arch)
    opt = make_optimizer(objective, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup, cfg.steps))
    start, prior_time = 0, 0.0
    if state is not None:
        load_weights(model, checkpoint)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng = state["rng"]
        torch.set_rng_state(rng[d.rank if d.rank < len(rng) else 0].clone())  # clone: its own storage
        start, prior_time = int(state["step"]), float(state["wall_time_s"])
    else:
        if cfg.init_from:  # continued training: the weights of a trained model (fp16 files load as fp32)
            load_weights(model, Path(cfg.init_from))
        torch.manual_seed(cfg.seed * 1000 + 1 + d.rank)  # dropout stream, independent of the init stream
    if d.rank == 0:  # the first write to OUT
        prepare_out(run, started, start if cfg.resume else None)
    step_fn = torch.nn.parallel.DistributedDataParallel(objective) if d.world > 1 else objective
    objective.train()
    params = list(objective.parameters())  # walking the module tree every step costs ~0.3 ms at tiny sizes

    emit = emitter(run, list(callbacks) if d.rank == 0 else [])

    def save(step: int) -> Path | None:
        rng = d.gather_rng()  # collective: every rank takes part
        if d.rank != 0:
            return None
        st = {"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng,
              "config": json.dumps(asdict(cfg)), "fingerprint": prep.corpus.fingerprint,
              "examples_seen": step * cfg.batch_size, "epoch": step * cfg.batch_size // prep.num_train,
              "wall_time_s": prior_time + time.time() - t0}
        path = write_checkpoint(run, model, prep.tok, st, step, cfg.keep_last)
        emit({"type": "checkpoint", "step": step, "path": str(path)})
        return path

    emit({"type": "resume" if cfg.resume else "start", "step": start, "total_steps": cfg.steps, "config": asdict(cfg),
          "corpus": prep.corpus.name, "fingerprint": prep.corpus.fingerprint, "train_examples": prep.num_train,
          "heldout_source": prep.heldout_source, "baselines": prep.baselines, "world_size": d.world,
          "parameters": sum(p.numel() for p in model.parameters())})
    t0 = time.time()
    train_time, status, step, last_eval, recent, last_parts = 0.0, "done", start, None, [], {}
    tokens = 0  # positions processed (all ranks; padding trimmed from batches is not counted)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16)
    try:
        with StopRequest(out) as stop:
            for step in range(start, cfg.steps):
                ts = time.perf_counter()
                batch = batch_for_step(prep, cfg, step, d.rank, d.world)
                with autocast:
                    parts = step_fn(batch)
                loss = parts["loss"]
                flags = d.all_sum(torch.stack([loss.detach().float(), torch.tensor(float(stop.requested))]))
                if flags[1] > 0:
                    status = "stopped"
                    break
                mean_loss = float(flags[0]) / d.world
                optimizer_step(loss, mean_loss, step=step, run=run, params=params, opt=opt, sched=sched, lr=cfg.lr,
                               grad_clip=cfg.grad_clip)
                train_time += time.perf_counter() - ts
                tokens += batch["input_ids"].numel() * d.world
                done = step + 1
                recent = (recent + [mean_loss])[-20:]
                last_parts = {k: float(v.detach()) for k, v in parts.items() if k.endswith("loss")}
                emit({"type": "step", "step": done, "loss": mean_loss, "lr": sched.get_last_lr()[0],
                      "tokens_per_s": tokens / max(train_time, 1e-9), "elapsed_s": prior_time + time.time() - t0,
                      "total_steps": cfg.steps, "eta_s": (cfg.steps - done) * train_time / (done - start),
                      **{k: v for k, v in last_parts.items() if k != "loss"}})
                if d.rank == 0 and (done % cfg.eval_every == 0 or done == cfg.steps):
                    last_eval = evaluate(objective, cfg, prep)
                    emit({"type": "eval", "step": done, **last_eval})
                if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                    save(done)
            else:
                step = cfg.steps
            if status == "stopped" and step > start and not (run.ckpt / f"step-{step:07d}").exists():
                save(step)
    except TrainingError as e:
        emit({"type": "error", "step": step, "message": str(e)})
        run.close()
        step_fn = None  # noqa: F841 -- drops the DDP wrapper (and its hold on the process group) first
        d.close()
        raise
    except BaseException:
        run.close()
        raise

    wall = prior_time + time.time() - t0
    record = {
        "status": status, "arch": cfg.arch, "config": asdict(cfg), "corpus": prep.corpus.name,
        "corpus_fingerprint": prep.corpus.fingerprint, "steps": step, "total_steps": cfg.steps,
        "final_train_loss": sum(recent) / len(recent) if recent else None,  # mean of the last 20 steps
        "final_losses": last_parts, "heldout": last_eval, "heldout_source": prep.heldout_source,
        "baselines": prep.baselines, "wall_time_s": wall,
        "tokens_per_s": tokens / max(train_time, 1e-9),
        "parameters": sum(p.numel() for p in model.parameters()), "world_size": d.world,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "objective": {"bert": "MLM + NSP", "roberta": "MLM (dynamic masking, full sentences)", "albert": "MLM + SOP",
                      "gpt2": "causal LM", "elmo": "forward LM + backward LM"}[cfg.arch],
    }
    if cfg.arch in MLM_ARCHS:
        record["masking"] = {"mlm_probability": cfg.mlm_probability, "dynamic": cfg.dynamic_masking,
                             "whole_word": cfg.whole_word, "split": "80% mask / 10% random / 10% kept"}
    if status == "done" and d.rank == 0:
        write_final(run, model, prep.tok, record)
    msg = (f"training done: {step} steps in {wall:.1f} s" if status == "done" else
           f"training stopped at step {step}; continue with --resume")
    emit({"type": status, "step": step, "message": msg})
    run.close()
    step_fn = None  # noqa: F841 -- drops the DDP wrapper (and its hold on the process group) first
    d.close()
    return record
