"""Training speed: our trainer against a plain transformers training loop, same model, activation, dtype,
data and batches, measured in the same run; plus model-FLOPs utilisation (MFU) against the matmul peak of
the dtype each side ran, measured here.

    python -m bench.train_speed            # GPT-2 and BERT at the tiny preset (float32)
    python -m bench.train_speed --full     # also the small preset (and bf16 autocast where the trainer uses it)

"Ours" is the real `model.train.trainer.train` loop (batch building, masking, events file and all),
timed between its step events. The plain loop is what a tutorial writes: `model(**batch, labels=...)`
on the same weights and the same config (so the same activation: GPT-2's tanh GELU as
"gelu_pytorch_tanh", as lmscope builds it), torch AdamW, linear schedule, gradient clipping, on batches
built beforehand (so it pays nothing for data). Both sides run the same dtype: float32, or both in bf16
autocast (weights, optimizer and loss float32, as the trainer does). Each ratio compares one dtype; what
bf16 itself buys is a separate INFO row (ours in bf16 against ours in float32, the plain loop's gain in its
note). The trainer switches bf16 on by itself where hidden >= BF16_MIN_HIDDEN (the small preset) and bf16
matmuls measure fast: bf16 rows are measured where it picks bf16 on this host, and each row says which dtype
it picks (a host without fast bf16 gets float32 rows only: its bf16 matmuls run at a few % of float32's).

Model FLOPs per token (fwd + bwd, Kaplan et al.): 6 x (non-embedding weights) + 6 x hidden x vocab x
(share of positions predicted) + 6 x layers x seq x hidden (attention scores and mixing). MFU is achieved
FLOPs / the peak of the dtype that row ran: the best of several (1024 x 1024) @ (1024 x 1024) matmuls in
float32 or bfloat16 (smaller where bf16 is too slow for that), both measured right after that row with the
same thread count.
"""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.engine import NO_TARGET, Figure

TARGET_RATIO = 1.2
# (arch, preset, seq_len) -> MFU target in % of the peak of the dtype the trainer picks by itself
MFU_TARGETS = {("gpt2", "small", 128): 60.0}
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
DTYPE_DOES = {"fp32": "float32", "bf16": "bf16 autocast (weights, optimizer, loss fp32)"}


def matmul_peak(dtype_name: str = "float32", n: int = 1024, repeat: int = 10, budget_s: float = 5.0) -> float:
    """Best FLOP/s of an n x n matmul in this process (torch's thread count). Where `repeat` of them would
    take longer than budget_s (bf16 on a CPU without bf16 instructions runs ~40x slower than float32: 16 s
    for one 1024 x 1024 product here), n is halved until they fit: the rate of a slow path is all we need."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(128, 128).to(dtype), torch.randn(128, 128).to(dtype)
    a @ b
    t = time.perf_counter()
    a @ b
    per_flop = (time.perf_counter() - t) / 128**3
    while n > 128 and per_flop * n**3 * repeat > budget_s:
        n //= 2
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def flops_per_token(model, cfg) -> float:
    emb = sum(p.numel() for n, p in model.named_parameters() if "embed" in n or n.endswith(("wte.weight", "wpe.weight")))
    dense = sum(p.numel() for p in model.parameters()) - emb
    predicted = 1.0 if cfg.arch in ("gpt2", "elmo") else cfg.mlm_probability
    vocab = model.config.vocab_size
    return 6 * dense + 6 * cfg.hidden * vocab * predicted + 6 * cfg.layers * cfg.seq_len * cfg.hidden


def activation_of(model) -> str:
    """The activation function a transformers model's config names (GPT-2: activation_function, BERT: hidden_act)."""
    c = model.config
    return str(getattr(c, "activation_function", None) or getattr(c, "hidden_act", "?"))


class PlainLoop:
    """What a tutorial writes: model(**batch, labels=...).loss, torch AdamW, linear schedule, clipping; on the
    weights and config lmscope builds (same activation), in float32 or, with bf16, in bf16 autocast."""

    def __init__(self, prep, cfg, bf16: bool = False):
        import torch
        from transformers import get_linear_schedule_with_warmup

        from model.train.models import build_model

        ours = build_model(cfg.arch, vocab_size=len(prep.tok), layers=cfg.layers, hidden=cfg.hidden, heads=cfg.heads,
                           seq_len=cfg.seq_len, dropout=cfg.dropout, seed=cfg.seed, tok=prep.tok)
        self.model = type(ours)(ours.config)  # the same config: activation, attention implementation, dropout
        self.model.load_state_dict(ours.state_dict())  # the same weights
        self.model.train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = get_linear_schedule_with_warmup(self.opt, cfg.warmup, cfg.steps)
        self.cfg, self.bf16 = cfg, bf16
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def loss(self, b: dict):
        with self.autocast:
            if self.cfg.arch == "gpt2":
                return self.model(input_ids=b["input_ids"], labels=b["input_ids"]).loss
            return self.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                              token_type_ids=b["token_type_ids"], labels=b["labels"],
                              next_sentence_label=b["pair_labels"]).loss

    def step(self, b: dict) -> float:
        """One optimizer step; returns its duration in seconds."""
        import torch

        t = time.perf_counter()
        self.loss(b).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad()
        return time.perf_counter() - t


@dataclass
class Lockstep:
    """One lockstep run: tokens/s of each side (median over steps), in one dtype."""

    ours: float
    plain: float
    dtype: str  # fp32 | bf16
    flops_per_token: float
    peaks: dict  # dtype -> FLOP/s, measured right after the run
    activation: str
    cfg: object  # the resolved TrainConfig

    def mfu(self, rate: float) -> float:
        """% of the peak of the dtype this run used."""
        return 100 * rate * self.flops_per_token / self.peaks[self.dtype]


def lockstep(arch: str, preset: str, steps: int, bf16: bool, warmup: int = 3, prepared=None, **overrides) -> Lockstep:
    """Ours and the plain loop step by step in lockstep, both in one dtype: after each of our steps (inside
    our step event) the plain loop takes the same batch. Whatever else the machine does hits both alike;
    each side's rate is the median over steps of tokens / step time. `prepared`: model.train.prepare.prepare's
    result for this config, when the caller has it."""
    import statistics
    from dataclasses import replace

    from model.train.config import TrainConfig
    from model.train.prepare import batch_for_step, prepare
    from model.train.trainer import train

    cfg = TrainConfig(arch=arch, out_dir="unused", corpus="pydoc", preset=preset, steps=steps, bf16=bf16,
                      **overrides).resolved()
    prep = prepared or prepare(cfg)
    batches = [batch_for_step(prep, cfg, s) for s in range(steps)]
    plain = PlainLoop(prep, cfg, bf16=bf16)
    stamps, plain_s = [], []

    def on_event(event):
        if event["type"] == "step":
            stamps.append(time.perf_counter())
            plain_s.append(plain.step(batches[event["step"] - 1]))

    with tempfile.TemporaryDirectory() as d:
        c = replace(cfg, out_dir=str(Path(d) / "run"), checkpoint_every=10**6, eval_every=10**6, eval_batches=1)
        train(c, callbacks=[on_event], prepared=prep)
    tokens = [b["input_ids"].numel() for b in batches]
    ours_s = [stamps[i] - stamps[i - 1] - plain_s[i - 1] for i in range(1, steps)]  # step i, minus plain's turn
    ours = statistics.median(tokens[i] / ours_s[i - 1] for i in range(warmup, steps))
    base = statistics.median(tokens[i] / plain_s[i] for i in range(warmup, steps))
    peaks = {k: matmul_peak(v) for k, v in DTYPES.items()}
    return Lockstep(ours, base, "bf16" if bf16 else "fp32", flops_per_token(plain.model, cfg), peaks,
                    activation_of(plain.model), cfg)


def ratio_figure(run: Lockstep, picks: str, threads: int) -> Figure:
    """Ours against the plain loop, both in run.dtype; MFU of each against that dtype's peak."""
    cfg, d = run.cfg, run.dtype
    other = "bf16" if d == "fp32" else "fp32"
    note = (f"MFU ours {run.mfu(run.ours):.0f}% / plain {run.mfu(run.plain):.0f}% of the {d} peak "
            f"{run.peaks[d] / 1e9:.1f} GFLOP/s ({other} peak {run.peaks[other] / 1e9:.1f}); "
            f"trainer picks {picks} here; "
            f"threads={threads}")
    return Figure(f"train {cfg.arch} {cfg.preset} seq {cfg.seq_len} {d} tokens/s", run.ours, run.plain, "t/s",
                  f">= {TARGET_RATIO}x plain loop", run.ours >= TARGET_RATIO * run.plain,
                  ours_does=f"lmscope trainer, {DTYPE_DOES[d]}, {run.activation}",
                  baseline_does=f"plain transformers loop, same weights/config/batches, {DTYPE_DOES[d]}, "
                                f"{run.activation}",
                  note=note)


def bf16_gain_figure(fp32: Lockstep, bf16: Lockstep) -> Figure:
    """What bf16 autocast buys by itself: ours in bf16 against ours in float32 (INFO)."""
    cfg = fp32.cfg
    return Figure(f"train {cfg.arch} {cfg.preset} seq {cfg.seq_len} bf16 gain", bf16.ours, fp32.ours, "t/s",
                  NO_TARGET, None, ours_does="lmscope trainer, bf16 autocast",
                  baseline_does="lmscope trainer, float32 (the fp32 lockstep pass just before, same batches)",
                  note=f"plain loop's bf16 gain {bf16.plain / fp32.plain:.2f}x; bf16 / fp32 matmul peak "
                       f"{bf16.peaks['bf16'] / bf16.peaks['fp32']:.2f}x")


def mfu_figure(run: Lockstep, target: float) -> Figure:
    cfg, d = run.cfg, run.dtype
    ours, plain = run.mfu(run.ours), run.mfu(run.plain)
    return Figure(f"train MFU {cfg.arch} {cfg.preset} seq {cfg.seq_len} {d}", ours, plain, "%",
                  f">= {target:g}% of {d} peak", ours >= target,
                  ours_does=f"lmscope trainer, model FLOP/s / {d} matmul peak measured in this run",
                  baseline_does="plain transformers loop, same run and dtype",
                  note=f"{d} peak {run.peaks[d] / 1e9:.1f} GFLOP/s (the dtype the trainer picks on this host)")


def bench_arch(arch: str, preset: str, steps: int, warmup: int = 3, trainer_bf16: bool | None = None,
               **overrides) -> list[Figure]:
    """Float32 on both sides; where the trainer picks bf16 autocast by itself (hidden >= BF16_MIN_HIDDEN and
    bf16 matmuls measured fast on this host; `trainer_bf16` overrides that choice) also bf16 on both sides
    and bf16's own gain; the MFU target where one is set (MFU_TARGETS), in the dtype the trainer picks."""
    import torch

    from model.train.config import TrainConfig

    auto = TrainConfig(arch=arch, out_dir="unused", corpus="pydoc", preset=preset, steps=steps, bf16=trainer_bf16,
                       **overrides).resolved()
    picks = "bf16" if auto.bf16 else "fp32"
    runs = {"fp32": lockstep(arch, preset, steps, False, warmup, **overrides)}
    if auto.bf16:
        runs["bf16"] = lockstep(arch, preset, steps, True, warmup, **overrides)
    threads = torch.get_num_threads()
    figs = [ratio_figure(r, picks, threads) for r in runs.values()]
    if "bf16" in runs:
        figs.append(bf16_gain_figure(runs["fp32"], runs["bf16"]))
    target = MFU_TARGETS.get((arch, preset, auto.seq_len))
    if target is not None:
        figs.append(mfu_figure(runs[picks], target))
    return figs


def run(full: bool = False) -> list[Figure]:
    figs = []
    for arch in ("gpt2", "bert"):
        figs += bench_arch(arch, "tiny", steps=80 if full else 40)
    if full:
        for arch in ("gpt2", "bert"):
            figs += bench_arch(arch, "small", steps=20)
        figs += bench_arch("gpt2", "small", steps=20, seq_len=128)
    return figs


if __name__ == "__main__":
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    for f in run(full="--full" in sys.argv):
        print(f.line(), flush=True)
