"""What `lmscope bench` prints and returns: a row without a target says INFO (never PASS), every row says
what both sides do, a missed target makes the command exit 1, and the bertviz baseline is the one view our
attention page does the work of, built once. Fast: fake figures and a tiny model, no timing."""
from __future__ import annotations

import sys
import types

import pytest

import bench.run
from bench.engine import Figure, bench_attention_payload
from bench.onnx_latency import Row
from app.cli import main as cli_main

SIDES = dict(ours_does="our call", baseline_does="their call")


def test_a_row_without_a_target_is_info_and_never_misses():
    info = Figure("threads", 2.0, 1.0, "ms", "(reported)", None, **SIDES)
    assert info.verdict == "INFO" and not info.missed and info.target == "(none)"
    assert " INFO " in info.line() and "PASS" not in info.line()
    ok, miss = Figure("a", 1.0, 2.0, "s", "<= 1", True, **SIDES), Figure("b", 3.0, 2.0, "s", "<= 1", False, **SIDES)
    assert (ok.verdict, ok.missed, miss.verdict, miss.missed) == ("PASS", False, "FAIL", True)
    row = Row(name="onnx 32 tok", onnx_ms=1.0, torch_ms=2.0, speedup=2.0, target="(none)", passed=None)
    assert row.verdict == "INFO" and not row.missed and " INFO " in row.line()
    assert Row(name="x", onnx_ms=1.0, torch_ms=1.0, speedup=1.0, target=">= 2x", passed=False).missed


def test_every_line_says_what_both_sides_do():
    line = Figure("inspection", 1.0, 2.0, "ms", "<= 1.15x", True, ours_does="inspect()", baseline_does="eager fwd",
                  note="load 1.0").line()
    assert "ours: inspect() | baseline: eager fwd | load 1.0" in line
    with pytest.raises(TypeError):
        Figure("no sides", 1.0, 2.0, "ms", "<= 1", True)  # noqa -- both sides are required
    with pytest.raises(ValueError, match="both sides"):
        Figure("empty side", 1.0, 2.0, "ms", "<= 1", True, ours_does="inspect()", baseline_does=" ")
    row = Row(name="onnx", onnx_ms=1.0, torch_ms=2.0, speedup=2.0, target=">= 2x", passed=True)
    assert "onnx: inspect() through onnxruntime" in row.line() and "torch: the same inspect()" in row.line()


def _fake_benchmarks(monkeypatch, figures):
    mod = types.ModuleType("fake_bench")
    mod.run = lambda full=False: list(figures)
    monkeypatch.setitem(sys.modules, "fake_bench", mod)
    monkeypatch.setattr(bench.run, "BENCHMARKS", ["fake_bench", "bench.not_in_this_build"])


def test_bench_exits_1_when_a_figure_misses_and_0_when_none_does(monkeypatch, capsys):
    passing = [Figure("a", 1.0, 2.0, "s", "<= 1", True, **SIDES), Figure("b", 1.0, 2.0, "s", "", None, **SIDES),
               Row(name="c", onnx_ms=1.0, torch_ms=2.0, speedup=2.0, target="(none)", passed=None)]
    _fake_benchmarks(monkeypatch, passing)
    assert bench.run.main() == 0
    out = capsys.readouterr()
    assert out.out.count("PASS") == 1 and out.out.count("INFO") == 2 and "skipped: not in this build" in out.out
    _fake_benchmarks(monkeypatch, [*passing, Figure("slow one", 3.0, 2.0, "s", "<= 1", False, **SIDES)])
    assert bench.run.main() == 1
    assert "1 figure(s) missed their target: slow one" in capsys.readouterr().err
    assert cli_main(["bench"]) == 1  # `lmscope bench` returns it as its exit status


def test_the_bertviz_baseline_is_head_view_built_once(tiny_models, monkeypatch):
    """Our attention page picks one layer and head (bertviz's head view); the baseline used to add a
    second head_view for "model_view" (3,421 MB = 2 x 1,710 MB)."""
    import bertviz

    calls = []
    for view in ("head_view", "model_view"):
        real = getattr(bertviz, view)
        monkeypatch.setattr(bertviz, view, lambda *a, _v=view, _f=real, **k: calls.append(_v) or _f(*a, **k))
    size, took = bench_attention_payload(tiny_models["bert-mlm"], 12)
    assert calls == ["head_view"]
    assert "bertviz head_view HTML" in size.baseline_does and "bertviz head_view HTML" in took.baseline_does
    assert size.baseline > 0 and size.ours > 0
    with pytest.raises(ValueError, match="unknown bertviz view"):
        bench_attention_payload(tiny_models["bert-mlm"], 12, view="neuron_view")
