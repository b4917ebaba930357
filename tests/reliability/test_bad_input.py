"""Bad input, table-driven: one table of cases, each run through the command line and, where the case
applies to the app, through the app (Streamlit's AppTest, the real pages behind app/main.py).

Command line (in-process `app.cli.main`, stderr captured): an error case exits 2 with exactly one line,
starting `error: ` and containing the case's fragment, and no traceback; a warning case exits 0 with a
`warning: ` line containing it; an ok case exits 0 with no error (odd text must still tokenize, its spans
inside the input). App: an error/warning case shows an st.error/st.warning containing the fragment; a
clamped case shows no error and the widget holds the clamped value; never an exception element.

Around every case the whole world (demo models, broken models, runs with a finished model, corpora) is
hashed before and after: nothing already saved may change, and nothing new may appear.

Paths are written `@name` and resolved in the world (tests/reliability/conftest.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.cli import main

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
LONG = "word " * 20_000  # 100,000 characters
OVER = "the cat sat near the dog . " * 20  # ~140 tokens: over the tiny models' 64 positions
ODD = {  # text the tokenizers must survive with exact offsets
    "controls": "a\x01b\x07c\x1b[31m red\x7f",
    "nul": "before\x00after",
    "rtl": "\u202eabc \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "emoji": "\U0001F600 \U0001F44D\U0001F3FD family \U0001F468\u200d\U0001F469\u200d\U0001F467",
    "combining": "e\u0301\u0301\u0301 Z\u0334\u0321\u032aa\u0337l\u0338g\u0335o",
    "cjk": "\u6f22\u5b57\u304b\u306a \uc548\ub155 \u4e2d\u6587",
}


@dataclass(frozen=True)
class Case:
    id: str
    cli: list[str] | None  # argv for `lmscope` (`@name` = a path in the world)
    expect: str  # error | warning | ok
    needle: str = ""  # fragment of the error / warning line
    app: dict | None = None  # {"page": ..., "params": {...}, optional "path_input": str, "upload": (name, bytes)}
    app_expect: str | None = None  # error | warning | ok | clamped (default: expect)
    app_needle: str | None = None  # default: needle
    widget: tuple[str, str, Any] | None = None  # clamped: (kind, key, value the widget must hold)
    env: dict = field(default_factory=dict)  # extra environment for this case


def gen(**params) -> dict:
    return {"page": "generation", "params": {"model": "demo/gpt2", "text": "the dogs near the", **params}}


CASES: list[Case] = [
    # ---- text --------------------------------------------------------------------------------------------
    Case("empty-text", ["inspect", "@gpt2", ""], "error", "empty",
         app={"page": "attention", "params": {"model": "demo/gpt2", "text": ""}}),
    Case("whitespace-only", ["tokenize", "@bert-mlm", " \n\t  "], "error", "empty",
         app={"page": "tokenization", "params": {"model": "demo/bert-mlm", "text": " \n\t  "}}),
    Case("100k-characters", ["inspect", "@bert-mlm", LONG, "--json"], "warning", "truncated after character",
         app={"page": "attention", "params": {"model": "demo/bert-mlm", "text": LONG}}),
    Case("longer-than-positions", ["fill-mask", "@bert-mlm", "[MASK] " + OVER], "warning",
         "reads at most 64: truncated after character",
         app={"page": "masked_lm", "params": {"model": "demo/bert-mlm", "text": "[MASK] " + OVER}}),
    Case("prompt-longer-than-positions", ["generate", "@gpt2", OVER * 3], "error", "reads at most 64",
         app=gen(text=OVER * 3)),
    Case("100k-character-prompt", ["generate", "@gpt2", LONG, "--strategy", "sample"], "error", "reads at most 64",
         app=gen(text=LONG)),
    Case("no-mask-token", ["fill-mask", "@bert-mlm", "no mask here"], "error", "no mask token",
         app={"page": "masked_lm", "params": {"model": "demo/bert-mlm", "text": "no mask here"}},
         app_expect="warning", app_needle="No mask in the input"),
    Case("every-token-masked", ["fill-mask", "@bert-mlm", "[MASK] [MASK] [MASK] [MASK]", "--json"], "ok",
         app={"page": "masked_lm", "params": {"model": "demo/bert-mlm", "text": "[MASK] [MASK] [MASK] [MASK]"}}),
    Case("mask-between-typed-specials", ["fill-mask", "@roberta-mlm", "<s><mask></s>", "--json"], "ok",
         app={"page": "masked_lm", "params": {"model": "demo/roberta-mlm", "text": "<s> <mask> </s>"}}),
    Case("mask-picked-on-a-special-token", None, "ok",  # ?masked=0 is [CLS]: dropped, never masked
         app={"page": "masked_lm", "params": {"model": "demo/bert-mlm", "text": "the cat sleeps", "masked": "0"}},
         app_expect="warning", app_needle="No mask in the input"),
    *[Case(f"odd-text-{name}", ["tokenize", "@bert-mlm" if name in ("controls", "combining") else "@gpt2", text, "--json"],
           "ok", app={"page": "tokenization" if i % 2 else "attention",
                      "params": {"model": "demo/gpt2", "text": text, "models": "demo/bert-mlm,demo/gpt2,demo/roberta-mlm"}})
      for i, (name, text) in enumerate(ODD.items())],
    Case("lone-surrogate", ["inspect", "@bert-mlm", "x\ud800y [MASK]"], "error", "not valid UTF-8"),
    # (the app cannot receive one: browsers and protobuf replace lone surrogates by U+FFFD)
    Case("invalid-utf8-text-file", ["tokenize", "@gpt2", "--file", "@bad-utf8.txt"], "error", "not valid UTF-8"),
    Case("binary-text-file", ["tokenize", "@gpt2", "--file", "@bin.txt"], "error", "not valid UTF-8"),
    Case("missing-text-file", ["tokenize", "@gpt2", "--file", "@scratch/none.txt"], "error", "cannot read"),
    Case("no-text-at-all", ["inspect", "@gpt2"], "error", "no text given"),
    # ---- corpora -----------------------------------------------------------------------------------------
    Case("binary-corpus", ["train", "gpt2", "--corpus", "@bin.txt", "--out", "@scratch/o"], "error", "binary file",
         app={"page": "train", "params": {"corpus": "upload"}, "upload": ("bin.txt", "@bin.txt")}),
    Case("invalid-utf8-corpus", ["train", "gpt2", "--corpus", "@bad-utf8.txt", "--out", "@scratch/o"], "error",
         "not valid UTF-8", app={"page": "train", "params": {"corpus": "upload"}, "upload": ("c.txt", "@bad-utf8.txt")}),
    Case("control-character-corpus", ["train", "gpt2", "--corpus", "@controls.txt", "--out", "@scratch/o"], "error",
         "binary file", app={"page": "train", "params": {"corpus": "upload"}, "upload": ("c.txt", "@controls.txt")}),
    Case("empty-corpus", ["train", "gpt2", "--corpus", "@empty.txt", "--out", "@scratch/o"], "error", "empty",
         app={"page": "train", "params": {"corpus": "upload"}, "upload": ("e.txt", "@blank.txt")}),
    Case("corpus-shorter-than-a-block", ["train", "gpt2", "--corpus", "@short.txt", "--out", "@scratch/o"], "error",
         "training needs at least"),
    Case("broken-jsonl-corpus", ["train", "bert", "--corpus", "@bad.jsonl", "--out", "@scratch/o"], "error",
         "not valid JSON", app={"page": "train", "params": {"corpus": "upload"}, "upload": ("b.jsonl", "@bad.jsonl")}),
    Case("corpus-path-escapes-via-dotdot", None, "error",
         app={"page": "train", "params": {"corpus": "path", "corpus_path": "@corpora/../demo/gpt2/vocab.json"}},
         app_needle="outside the corpus folders"),
    Case("corpus-path-outside", None, "error",
         app={"page": "train", "params": {"corpus": "path", "corpus_path": "/etc/passwd"}},
         app_needle="outside the corpus folders"),
    Case("upload-over-the-size-limit", None, "error", env={"LMSCOPE_MAX_UPLOAD_MB": "0.001"},
         app={"page": "train", "params": {"corpus": "upload"}, "upload": ("big.txt", "@good.txt")},
         app_needle="this server accepts corpora up to"),
    Case("train-over-a-finished-run", ["train", "gpt2", "--out", "@saved", "--steps", "5"], "error", "already holds"),
    Case("resume-with-nothing-to-resume", ["train", "gpt2", "--out", "@scratch/o", "--resume"], "error",
         "nothing to resume"),
    Case("train-larger-than-free-memory", ["train", "gpt2", "--corpus", "@good.txt", "--out", "@scratch/o", "--layers",
                                           "400", "--hidden", "8192", "--heads", "64"], "error", "refused before allocating"),
    Case("train-zero-steps", ["train", "gpt2", "--out", "@scratch/o", "--steps", "0"], "error", "steps must be at least 1"),
    # ---- model folders and files -------------------------------------------------------------------------
    Case("no-config-json", ["inspect", "@noconfig", "hi"], "error", "no config.json",
         app={"page": "attention", "params": {"model": "@noconfig", "text": "hi"}}),
    Case("unknown-model-type", ["inspect", "@mars", "hi"], "error", "unknown model_type 'llama-from-mars'",
         app={"page": "attention", "params": {"model": "demo/mars", "text": "hi"}}),
    Case("config-not-json", ["inspect", "@badjson", "hi"], "error", "not valid JSON",
         app={"page": "attention", "params": {"model": "@badjson", "text": "hi"}}),
    Case("truncated-safetensors", ["inspect", "@trunc", "hi"], "error", "corrupt or truncated",
         app={"page": "attention", "params": {"model": "demo/trunc", "text": "hi"}}),
    Case("garbled-safetensors-header", ["fill-mask", "@garbled", "[MASK]"], "error", "corrupt or truncated",
         app={"page": "masked_lm", "params": {"model": "demo/garbled", "text": "[MASK]"}}),
    Case("tokenizer-model-vocab-mismatch", ["inspect", "@vocab", "hi"], "error", "tokenizer/model mismatch",
         app={"page": "attention", "params": {"model": "demo/vocab", "text": "hi"}}),
    Case("no-tokenizer-files", ["inspect", "@notok", "hi"], "error", "no tokenizer files",
         app={"page": "attention", "params": {"model": "demo/notok", "text": "hi"}}),
    Case("pickle-checkpoint", ["inspect", "@pickle", "hi"], "error", "never unpickles",
         app={"page": "attention", "params": {"model": "demo/pickle", "text": "hi"}}),
    Case("truncated-onnx", ["inspect", "@onnx-trunc", "hi"], "error", "corrupt or truncated",
         app={"page": "attention", "params": {"model": "@onnx-trunc", "text": "hi"}}),
    Case("random-bytes-onnx", ["generate", "@onnx-noise", "hi"], "error", "model.onnx",
         app={"page": "generation", "params": {"model": "@onnx-noise", "text": "hi"}}),
    Case("config-inflated-past-its-weights", ["inspect", "@inflated", "hi"], "error", "but no tensor of its weights",
         app={"page": "attention", "params": {"model": "demo/inflated", "text": "hi"}}),
    Case("model-larger-than-free-memory", ["inspect", "@huge", "hi"], "error", "free: refused before allocating",
         app={"page": "attention", "params": {"model": "@huge", "text": "hi"}}, env={"LMSCOPE_MODEL_ROOTS": "@scratch"}),
    Case("a-file-not-a-model", ["inspect", "@good.txt", "hi"], "error", "is a file, not a model directory"),
    Case("unknown-model-name", ["inspect", "demo/nope", "hi"], "error", "no such model",
         app={"page": "attention", "params": {"model": "demo/nope", "text": "hi"}}, app_needle="Cannot load 'demo/nope'"),
    Case("generate-with-a-masked-lm", ["generate", "@bert-mlm", "hi"], "error", "cannot generate",
         app={"page": "generation", "params": {"model": "demo/bert-mlm", "text": "hi"}}, app_expect="warning",
         app_needle="next-token predictions and generation: demo/bert-mlm (masked-lm model) has no head"),
    Case("fill-mask-with-a-causal-lm", ["fill-mask", "@gpt2", "the [MASK]"], "error", "cannot fill masks",
         app={"page": "masked_lm", "params": {"model": "demo/gpt2", "text": "the [MASK]"}}, app_expect="warning",
         app_needle="masked-token predictions: demo/gpt2 (causal-lm model) has no head"),
    # ---- paths that leave the allowed roots (the command line may read any path it is given) --------------
    Case("path-escapes-via-dotdot", ["inspect", "@demo/../outside/gpt2", "hi"], "ok",
         app={"page": "attention", "params": {"model": "@demo/../outside/gpt2", "text": "hi"}}, app_expect="error",
         app_needle="outside the model folders"),
    Case("path-escapes-via-symlink", ["inspect", "@link", "hi"], "ok",
         app={"page": "attention", "params": {"model": "@link", "text": "hi"}}, app_expect="error",
         app_needle="outside the model folders"),
    Case("system-path-in-the-url", None, "error",
         app={"page": "attention", "params": {"model": "/etc", "text": "hi"}}, app_needle="outside the model folders"),
    Case("path-typed-on-the-models-page", None, "error",
         app={"page": "models", "params": {}, "path_input": "@demo/../outside/gpt2"}, app_needle="outside the model folders"),
    # ---- sampling settings (the app's widgets clamp them; the CLI refuses them) ---------------------------
    Case("temperature-zero", ["generate", "@gpt2", "hi", "--strategy", "sample", "--temperature", "0"], "error",
         "temperature must be > 0", app=gen(temperature="0"), app_expect="clamped",
         widget=("slider", "qp_temperature", 0.05)),
    Case("temperature-negative", ["generate", "@gpt2", "hi", "--strategy", "sample", "--temperature", "-1"], "error",
         "temperature must be > 0", app=gen(temperature="-1"), app_expect="clamped", widget=("slider", "qp_temperature", 0.05)),
    Case("temperature-nan", ["generate", "@gpt2", "hi", "--strategy", "sample", "--temperature", "nan"], "error",
         "temperature must be > 0", app=gen(temperature="nan"), app_expect="clamped", widget=("slider", "qp_temperature", 1.0)),
    Case("temperature-inf", ["generate", "@gpt2", "hi", "--strategy", "sample", "--temperature", "inf"], "error",
         "temperature must be <= 100", app=gen(temperature="inf"), app_expect="clamped",
         widget=("slider", "qp_temperature", 3.0)),
    Case("top-p-zero", ["generate", "@gpt2", "hi", "--strategy", "sample", "--top-p", "0"], "error",
         "top_p must be in (0, 1]", app=gen(top_p="0"), app_expect="clamped", widget=("slider", "qp_top_p", 0.05)),
    Case("top-p-over-one", ["generate", "@gpt2", "hi", "--strategy", "sample", "--top-p", "1.5"], "error",
         "top_p must be in (0, 1]", app=gen(top_p="1.5"), app_expect="clamped", widget=("slider", "qp_top_p", 1.0)),
    Case("top-k-zero-means-off", ["generate", "@gpt2", "hi", "--strategy", "sample", "--top-k", "0", "--json"], "ok",
         app=gen(top_k="0"), app_expect="clamped", widget=("number_input", "qp_top_k", 0)),
    Case("top-k-over-the-vocabulary", ["generate", "@gpt2", "hi", "--strategy", "sample", "--top-k", "100000"], "error",
         "top_k must be between 0 (off) and the vocabulary size", app=gen(top_k="100000"), app_expect="clamped",
         widget=("number_input", "qp_top_k", 300)),
    Case("top-k-negative", ["generate", "@gpt2", "hi", "--strategy", "sample", "--top-k", "-1"], "error",
         "top_k must be between 0"),
    Case("typical-p-zero", ["generate", "@gpt2", "hi", "--strategy", "sample", "--typical-p", "0"], "error",
         "typical_p must be in (0, 1]", app=gen(typical_p="-1"), app_expect="clamped", widget=("slider", "qp_typical_p", 0.05)),
    Case("min-p-one", ["generate", "@gpt2", "hi", "--strategy", "sample", "--min-p", "1"], "error",
         "min_p must be in [0, 1)", app=gen(min_p="2"), app_expect="clamped", widget=("slider", "qp_min_p", 0.5)),
    Case("repetition-penalty-zero", ["generate", "@gpt2", "hi", "--repetition-penalty", "0"], "error",
         "repetition_penalty must be in (0, 10]", app=gen(repetition_penalty="0"), app_expect="clamped",
         widget=("slider", "qp_repetition_penalty", 1.0)),
    Case("huge-beam-count", ["generate", "@gpt2", "hi", "--strategy", "beam", "--num-beams", "100000"], "error",
         "num_beams must be between 1 and", app=gen(beams="100000"), app_expect="clamped", widget=("slider", "qp_beams", 8)),
    Case("zero-beams", ["generate", "@gpt2", "hi", "--strategy", "beam", "--num-beams", "0"], "error",
         "num_beams must be between 1 and"),
    Case("huge-max-new-tokens", ["generate", "@gpt2", "hi", "--max-new-tokens", "10000000"], "error",
         "max_new_tokens must be between 1 and 1024", app=gen(new_tokens="10000000"), app_expect="clamped",
         widget=("slider", "qp_new_tokens", 64)),
    Case("zero-max-new-tokens", ["generate", "@gpt2", "hi", "--max-new-tokens", "0"], "error",
         "max_new_tokens must be between 1 and 1024"),
    Case("negative-seed", ["generate", "@gpt2", "hi", "--strategy", "sample", "--seed", "-5"], "error",
         "seed must be a whole number", app=gen(seed="-5"), app_expect="clamped", widget=("number_input", "qp_seed", 0)),
    Case("predictions-per-mask-out-of-range", ["fill-mask", "@bert-mlm", "[MASK]", "--top-k", "5000"], "error",
         "top_k must be between 1 and 1000",
         app={"page": "masked_lm", "params": {"model": "demo/bert-mlm", "text": "[MASK]", "topk": "5000"}},
         app_expect="clamped", widget=("number_input", "qp_topk", 30)),
    # ---- layer / head / token indices ----------------------------------------------------------------------
    Case("layer-out-of-range", ["inspect", "@gpt2", "hi there", "--layer", "7"], "error", "layer 7 is out of range",
         app={"page": "attention", "params": {"model": "demo/gpt2", "text": "hi there", "layer": "7"}},
         app_expect="clamped", widget=("slider", "qp_layer", 1)),
    Case("layer-negative", ["inspect", "@gpt2", "hi there", "--layer", "-1"], "error", "layer -1 is out of range",
         app={"page": "attention", "params": {"model": "demo/gpt2", "text": "hi there", "layer": "-1"}},
         app_expect="clamped", widget=("slider", "qp_layer", 0)),
    Case("head-out-of-range", ["inspect", "@gpt2", "hi there", "--head", "99999999999999999999"], "error",
         "is out of range", app={"page": "attention", "params": {"model": "demo/gpt2", "text": "hi there",
                                                              "head": "99999999999999999999"}},
         app_expect="clamped", widget=("slider", "qp_head", 3)),
    Case("token-index-out-of-range", None, "ok",
         app={"page": "attention", "params": {"model": "demo/gpt2", "text": "hi there", "token": "999"}}),
    # ---- export ---------------------------------------------------------------------------------------------
    Case("export-to-a-non-onnx-name", ["export-onnx", "@gpt2", "--out", "@scratch/x.txt"], "error", "must end in .onnx"),
    Case("export-opset-out-of-range", ["export-onnx", "@gpt2", "--out", "@scratch/x.onnx", "--opset", "3"], "error",
         "opset must be between", app={"page": "export", "params": {"model": "demo/gpt2", "opset": "3"}},
         app_expect="clamped", widget=("number_input", "qp_opset", 14)),
    Case("export-an-onnx-file", ["export-onnx", "@onnx-trunc", "--out", "@scratch/y.onnx"], "error", "already an ONNX model"),
    Case("export-a-family-without-attention", ["export-onnx", "@mamba", "--out", "@scratch/m.onnx"], "error",
         "no attention layers", app={"page": "export", "params": {"model": "@mamba"}}, app_expect="warning",
         env={"LMSCOPE_MODEL_ROOTS": "@scratch"}),
]

CLI_CASES = [c for c in CASES if c.cli is not None]
APP_CASES = [c for c in CASES if c.app is not None]


def test_the_table_is_big_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    assert len(CLI_CASES) >= 40 and len(APP_CASES) >= 30


def _resolve(world, value: str) -> str:
    """`@name` -> the world's path for it; `@dir/rest` -> that world folder joined with rest."""
    if not value.startswith("@"):
        return value
    head, _, rest = value[1:].partition("/")
    base = world.names.get(head) or getattr(world, head)
    return str(Path(base) / rest) if rest else str(base)


@pytest.fixture
def untouched(world_env):
    """Nothing already saved may change, and nothing may appear outside `scratch`."""
    before = world_env.snapshot()
    yield world_env
    after = world_env.snapshot()
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, f"the case changed saved files: {sorted(changed)[:10]}"
    assert not world_env.marker.exists()


# ---------------------------------------------------------------------------------------------------
# Command line


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli(case: Case, untouched, capsys, monkeypatch):
    world = untouched
    for k, v in case.env.items():
        monkeypatch.setenv(k, _resolve(world, v))
    argv = [_resolve(world, a) for a in case.cli]
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if case.expect == "error":
        assert code == 2, (code, err[-500:])
        assert len(lines) == 1 and lines[0].startswith("error: "), err[-1000:]
        assert case.needle in lines[0], lines[0]
        assert not out
    else:
        assert code == 0, err[-1000:]
        assert not any(ln.startswith("error:") for ln in lines), err
        if case.expect == "warning":
            assert any(ln.startswith("warning: ") and case.needle in ln for ln in lines), err
        if "--json" in argv:
            payload = json.loads(out)
            text = argv[2]
            for t in payload.get("tokens", []):
                if "start" in t:
                    assert 0 <= t["start"] <= t["end"] <= len(text), t
                    assert t["special"] or t["end"] > t["start"] or text == "", t
            if case.id == "every-token-masked":
                assert len(payload["masks"]) == 4 and all(len(m["predictions"]) == 5 for m in payload["masks"])
    out_dir = world.scratch / "o"
    assert not out_dir.exists() or not any(out_dir.iterdir()), "a refused training run wrote files"


# ---------------------------------------------------------------------------------------------------
# App


def _open(case: Case, world):
    from streamlit.testing.v1 import AppTest

    app = case.app
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.query_params.update({k: _resolve(world, v) for k, v in app["params"].items()})
    at.switch_page(f"views/{app['page']}.py")
    at.run()
    if "path_input" in app:
        at.text_input(key="models_path").set_value(_resolve(world, app["path_input"]))  # a form: sent on submit
        next(b for b in at.button if b.label == "Use this model").click().run()
    if "upload" in app:
        name, src = app["upload"]
        at.file_uploader(key="train_upload").set_value((name, Path(_resolve(world, src)).read_bytes(), "text/plain")).run()
    return at


@pytest.mark.slow
@pytest.mark.parametrize("case", APP_CASES, ids=[c.id for c in APP_CASES])
def test_app(case: Case, untouched, monkeypatch, tmp_path):
    from model.jobs import uploads

    world = untouched
    for k, v in case.env.items():
        monkeypatch.setenv(k, _resolve(world, v))
    monkeypatch.setattr(uploads, "uploads_root", lambda: tmp_path / "uploads")
    at = _open(case, world)
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    warnings = [w.value for w in at.warning]
    expect = case.app_expect or case.expect
    needle = case.app_needle if case.app_needle is not None else case.needle
    if expect == "error":
        assert any(needle in e for e in errors), (errors, warnings)
    elif expect == "warning":
        assert any(needle in w for w in warnings), (errors, warnings)
        assert not errors, errors
    else:
        assert not errors, errors
    if expect == "clamped":
        kind, key, value = case.widget
        assert getattr(at, kind)(key=key).value == value
    if "upload" in case.app and expect == "error":
        assert at.button(key="train_start").disabled
        assert not list((tmp_path / "uploads").rglob("upload.*")), "a refused upload was kept"
