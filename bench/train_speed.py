"""Training speed: our trainer against a plain transformers training loop, same model, data and batches,
measured in the same run; plus model-FLOPs utilisation against a matmul peak measured here.

    python -m bench.train_speed            # GPT-2 and BERT at the tiny preset
    python -m bench.train_speed --full     # also the small preset (where bf16 autocast pays off)

"Ours" is the real `model.train.trainer.train` loop (batch building, masking, events file and all),
timed between its step events. The plain loop is what a tutorial writes: `model(**batch, labels=...)`
on the same weights with transformers' default config, torch AdamW, linear schedule, gradient clipping,
float32, on batches built beforehand (so it pays nothing for data). Rounds alternate plain / ours and the best round of each counts, which keeps other
processes on the machine from deciding the ratio.

Model FLOPs per token (fwd + bwd, Kaplan et al.): 6 x (non-embedding weights) + 6 x hidden x vocab x
(share of positions predicted) + 6 x layers x seq x hidden (attention scores and mixing). MFU is
achieved FLOPs / peak, where peak is the best of several (1024 x 1024) @ (1024 x 1024) float32 matmuls
with the same thread count. With bf16 autocast MFU can pass 100% of the *fp32* peak; the bf16 peak is
printed beside it.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from bench.engine import Figure

TARGET_RATIO = 1.2


def matmul_peak(dtype_name: str = "float32", n: int = 1024, repeat: int = 10) -> float:
    """Best FLOP/s of an n x n matmul in this process (torch's thread count)."""
    import torch

    dtype = getattr(torch, dtype_name)
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


class PlainLoop:
    """What a tutorial writes: model(**batch, labels=...).loss, torch AdamW, linear schedule, clipping, fp32."""

    def __init__(self, prep, cfg):
        import torch
        from transformers import get_linear_schedule_with_warmup

        from model.train.models import build_model

        ours = build_model(cfg.arch, vocab_size=len(prep.tok), layers=cfg.layers, hidden=cfg.hidden, heads=cfg.heads,
                           seq_len=cfg.seq_len, dropout=cfg.dropout, seed=cfg.seed, tok=prep.tok)
        config = ours.config
        if cfg.arch == "gpt2":
            config.activation_function = "gelu_new"  # transformers' GPT-2 default (ours runs it as one fused kernel)
        self.model = type(ours)(config)
        self.model.load_state_dict(ours.state_dict())  # the same weights
        self.model.train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = get_linear_schedule_with_warmup(self.opt, cfg.warmup, cfg.steps)
        self.cfg = cfg

    def step(self, b: dict) -> float:
        """One optimizer step; returns its duration in seconds."""
        import torch

        t = time.perf_counter()
        if self.cfg.arch == "gpt2":
            loss = self.model(input_ids=b["input_ids"], labels=b["input_ids"]).loss
        else:
            loss = self.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                              token_type_ids=b["token_type_ids"], labels=b["labels"],
                              next_sentence_label=b["pair_labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad()
        return time.perf_counter() - t


def bench_arch(arch: str, preset: str, steps: int, warmup: int = 3, **overrides) -> list[Figure]:
    """Ours and the plain loop step by step in lockstep: after each of our steps (inside our step
    event) the plain loop takes the same batch. Whatever else the machine does hits both alike; each
    side's rate is the median over steps of tokens / step time."""
    import statistics
    from dataclasses import replace

    import torch

    from model.train.config import TrainConfig
    from model.train.prepare import batch_for_step, prepare
    from model.train.trainer import train

    cfg = TrainConfig(arch=arch, out_dir="unused", corpus="pydoc", preset=preset, steps=steps, **overrides).resolved()
    prep = prepare(cfg)
    batches = [batch_for_step(prep, cfg, s) for s in range(steps)]
    plain = PlainLoop(prep, cfg)
    stamps, plain_s = [], []

    def lockstep(event):
        if event["type"] == "step":
            stamps.append(time.perf_counter())
            plain_s.append(plain.step(batches[event["step"] - 1]))

    with tempfile.TemporaryDirectory() as d:
        c = replace(cfg, out_dir=str(Path(d) / "run"), checkpoint_every=10**6, eval_every=10**6, eval_batches=1)
        train(c, callbacks=[lockstep], prepared=prep)
    tokens = [b["input_ids"].numel() for b in batches]
    ours_s = [stamps[i] - stamps[i - 1] - plain_s[i - 1] for i in range(1, steps)]  # step i, minus plain's turn
    ours = statistics.median(tokens[i] / ours_s[i - 1] for i in range(warmup, steps))
    base = statistics.median(tokens[i] / plain_s[i] for i in range(warmup, steps))
    fpt = flops_per_token(plain.model, cfg)
    peak32, peak16 = matmul_peak("float32"), matmul_peak("bfloat16")
    note = (f"MFU ours {100 * ours * fpt / peak32:.0f}% / plain {100 * base * fpt / peak32:.0f}% of fp32 peak "
            f"{peak32 / 1e9:.0f} GFLOP/s (bf16 peak {peak16 / 1e9:.0f}); bf16={'on' if cfg.bf16 else 'off'}, "
            f"threads={torch.get_num_threads()}")
    name = f"train {arch} {preset} seq {cfg.seq_len} tokens/s"
    return [Figure(name, ours, base, "t/s", f">= {TARGET_RATIO}x plain loop", ours >= TARGET_RATIO * base, note)]


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
