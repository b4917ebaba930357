"""bench.train_speed compares like with like: the plain loop runs lmscope's own config (the same activation
function, the same attention) on the same weights and in the same dtype as our trainer, the bf16 gain is a
row of its own, and MFU is quoted against the peak of the dtype that ran. Tiny sizes; no timing asserts
(the rates are the benchmark's business)."""
from __future__ import annotations

import pytest
import torch

from bench import train_speed as ts
from model.train.config import TrainConfig
from model.train.prepare import batch_for_step, prepare
from model.train.models import build_model

TINY = dict(layers=1, hidden=32, heads=2, seq_len=16, batch_size=4, vocab_size=200)


@pytest.fixture(scope="module")
def prepared():
    cfg = TrainConfig(arch="gpt2", out_dir="unused", corpus="pydoc", preset="tiny", steps=4, bf16=False,
                      **TINY).resolved()
    return cfg, prepare(cfg)


def test_the_plain_loop_runs_our_model_same_activation_same_outputs(prepared):
    cfg, prep = prepared
    ours = build_model("gpt2", vocab_size=len(prep.tok), layers=cfg.layers, hidden=cfg.hidden, heads=cfg.heads,
                       seq_len=cfg.seq_len, dropout=cfg.dropout, seed=cfg.seed, tok=prep.tok).eval()
    plain = ts.PlainLoop(prep, cfg).model.eval()
    assert ts.activation_of(plain) == ts.activation_of(ours) == "gelu_pytorch_tanh"  # not transformers' gelu_new
    assert plain.config._attn_implementation == ours.config._attn_implementation
    ids = batch_for_step(prep, cfg, 0)["input_ids"]
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, ours(input_ids=ids).logits)


@pytest.mark.parametrize("bf16", [False, True])
def test_the_plain_loop_runs_in_the_dtype_asked(prepared, bf16):
    cfg, prep = prepared
    loop = ts.PlainLoop(prep, cfg, bf16=bf16)
    seen = []
    loop.model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    assert loop.step(batch_for_step(prep, cfg, 0)) > 0
    assert seen == [torch.bfloat16 if bf16 else torch.float32]
    assert next(loop.model.parameters()).dtype == torch.float32  # weights stay fp32, as in the trainer


def _run(dtype, ours, plain, peaks):
    cfg = TrainConfig(arch="gpt2", out_dir="u", corpus="pydoc", preset="small", bf16=False).resolved()
    return ts.Lockstep(ours, plain, dtype, flops_per_token=1e6, peaks=peaks, activation="gelu_pytorch_tanh", cfg=cfg)


def test_the_matmul_peak_is_measured_per_dtype_within_a_budget():
    fp32, bf16 = ts.matmul_peak("float32", n=256, repeat=2), ts.matmul_peak("bfloat16", n=256, repeat=2, budget_s=0.5)
    assert fp32 > 0 and bf16 > 0


def test_mfu_uses_the_peak_of_the_dtype_that_ran_and_the_bf16_gain_is_its_own_row():
    peaks = {"fp32": 100e9, "bf16": 400e9}
    fp32, bf16 = _run("fp32", 30_000, 20_000, peaks), _run("bf16", 60_000, 40_000, peaks)
    assert fp32.mfu(30_000) == pytest.approx(30.0) and bf16.mfu(60_000) == pytest.approx(15.0)
    r32, r16 = ts.ratio_figure(fp32, "fp32", 1), ts.ratio_figure(bf16, "fp32", 1)
    assert "fp32 tokens/s" in r32.name and "bf16 tokens/s" in r16.name
    assert r16.ours_does.startswith("lmscope trainer, bf16 autocast") and "bf16 autocast" in r16.baseline_does
    assert "float32" in r32.ours_does and "float32" in r32.baseline_does and "gelu_pytorch_tanh" in r32.baseline_does
    assert "MFU ours 15% / plain 10% of the bf16 peak 400.0 GFLOP/s (fp32 peak 100.0)" in r16.note
    assert r32.passed and r16.passed  # 1.5x >= 1.2x each
    gain = ts.bf16_gain_figure(fp32, bf16)
    assert gain.verdict == "INFO" and gain.ratio == pytest.approx(2.0) and "plain loop's bf16 gain 2.00x" in gain.note
    mfu = ts.mfu_figure(bf16, 60.0)
    assert mfu.missed and mfu.ours == pytest.approx(15.0) and "bf16 peak" in mfu.target


def test_a_tiny_lockstep_run_times_both_sides_in_one_dtype(prepared, monkeypatch):
    cfg, prep = prepared
    real_peak = ts.matmul_peak
    monkeypatch.setattr(ts, "matmul_peak", lambda name: real_peak(name, n=64, repeat=2))
    run = ts.lockstep("gpt2", "tiny", steps=4, bf16=False, warmup=1, prepared=prep, **TINY)
    assert run.dtype == "fp32" and run.ours > 0 and run.plain > 0 and set(run.peaks) == {"fp32", "bf16"}
    assert run.activation == "gelu_pytorch_tanh" and run.cfg.bf16 is False


def test_bench_arch_runs_both_dtypes_where_the_trainer_may_pick_bf16(monkeypatch):
    """fp32 always; bf16 and the gain row where the trainer picks bf16 (forced here: this host may not);
    the MFU row where a target is set, in the dtype the trainer picks (lockstep runs faked)."""
    asked = []

    def fake_lockstep(arch, preset, steps, bf16, warmup=3, prepared=None, **kw):
        asked.append(bf16)
        d = "bf16" if bf16 else "fp32"
        cfg = TrainConfig(arch=arch, out_dir="u", corpus="pydoc", preset=preset, bf16=bf16, **kw).resolved()
        return ts.Lockstep(2.0, 1.0, d, 1e6, {"fp32": 1e9, "bf16": 2e9}, "gelu_pytorch_tanh", cfg)

    monkeypatch.setattr(ts, "lockstep", fake_lockstep)
    figs = ts.bench_arch("gpt2", "tiny", steps=5, trainer_bf16=True, **TINY)
    assert asked == [False, True]
    assert [f.name for f in figs] == ["train gpt2 tiny seq 16 fp32 tokens/s", "train gpt2 tiny seq 16 bf16 tokens/s",
                                      "train gpt2 tiny seq 16 bf16 gain"]
    assert [f.verdict for f in figs] == ["PASS", "PASS", "INFO"]
    monkeypatch.setitem(ts.MFU_TARGETS, ("gpt2", "tiny", 16), 99.0)
    asked.clear()
    figs = ts.bench_arch("gpt2", "tiny", steps=5, trainer_bf16=False, **TINY)
    assert asked == [False]
    assert [f.name for f in figs] == ["train gpt2 tiny seq 16 fp32 tokens/s", "train MFU gpt2 tiny seq 16 fp32"]
    assert figs[1].missed  # 2e6 FLOP/s of a 1 GFLOP/s peak: 0.2% < 99%
