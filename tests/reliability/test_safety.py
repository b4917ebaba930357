"""Safety: no pickle is ever loaded, no remote code ever runs, model paths stay inside the configured roots,
user text is escaped in every piece of HTML the app makes (pages, bertviz, downloaded figures), and
uploads live in a private per-session folder with a size limit that disappears when the session ends.

The world (tests/reliability/conftest.py) holds a pickle checkpoint and a config with `auto_map` whose
unpickling / import would create a marker file: it must never exist.
"""
from __future__ import annotations

import gc
import html
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAIN = str(ROOT / "app" / "main.py")
PAYLOADS = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")
PAY = " ".join(PAYLOADS)
SOURCES = [p for d in ("model", "app", "kernels", "bench") for p in (ROOT / d).rglob("*.py")]


class _EvilPickle:
    """Unpickling this creates the marker file: proof that something unpickled it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---------------------------------------------------------------------------------------------------
# No pickle, no remote code


def test_pickle_checkpoints_are_refused_without_unpickling(world_env, capsys):
    from app.cli import main
    from model.load import ModelLoadError, load_model
    from model.registry import find

    with pytest.raises(ModelLoadError, match="never unpickles"):
        load_model(world_env.path("pickle"))
    assert find("demo/pickle").note.startswith("pickled weights only")
    assert main(["inspect", "demo/pickle", "hi"]) == 2 and "never unpickles" in capsys.readouterr().err
    assert not world_env.marker.exists()


def test_a_pickle_beside_safetensors_is_never_opened(world_env, tiny_models, tmp_path):
    from model.inspect import inspect
    from model.load import load_model

    d = shutil.copytree(tiny_models["bert-mlm"], tmp_path / "both")
    with open(d / "pytorch_model.bin", "wb") as fh:
        pickle.dump(_EvilPickle(str(world_env.marker)), fh)
    assert inspect(load_model(d), "the [MASK] sleeps").masks
    from model.onnx.export import export_onnx

    export_onnx(d, tmp_path / "out" / "both.onnx")
    assert not world_env.marker.exists()


def test_an_evil_trainer_state_is_refused_on_resume(world_env, tmp_path, capsys):
    """trainer_state.pt is read with torch.load(weights_only=True): a pickle that would run code is refused."""
    from app.cli import main

    ck = tmp_path / "run" / "checkpoints" / "step-0000010"
    ck.mkdir(parents=True)
    with open(ck / "trainer_state.pt", "wb") as fh:
        pickle.dump({"step": 10, "evil": _EvilPickle(str(world_env.marker))}, fh, protocol=2)
    (ck / "config.json").write_text("{}")  # otherwise not a complete checkpoint (model.train.layout)
    code = main(["train", "gpt2", "--out", str(tmp_path / "run"), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot resume") and "never unpickles" in err and len(err.splitlines()) == 1
    assert not world_env.marker.exists()


def test_remote_code_in_a_config_is_never_run(world_env, capsys):
    """A config with `auto_map` (what `trust_remote_code=True` would import and run) loads as the plain
    architecture it names, or not at all: its code never runs."""
    from app.cli import main
    from model.load import load_model

    m = load_model(world_env.path("remote"))
    assert m.info.architecture == "BertForMaskedLM"
    assert main(["fill-mask", str(world_env.path("remote")), "the [MASK]", "--json"]) == 0
    capsys.readouterr()
    assert not world_env.marker.exists()


def test_the_source_never_unpickles_or_trusts_remote_code():
    """Grep-style: every torch.load says weights_only=True, nothing calls pickle/joblib/dill loaders,
    `trust_remote_code` is never passed, and model weights are read with use_safetensors=True."""
    assert SOURCES
    for py in SOURCES:
        src = py.read_text()
        code = "\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith("#"))
        for m in re.finditer(r"torch\.load\(([^)]*)\)", code):
            assert "weights_only=True" in m.group(1), (py, m.group(0))
        assert not re.search(r"\b(pickle|cPickle|dill|joblib)\.loads?\(", code), py
        assert not re.search(r"trust_remote_code\s*=", code), py
        assert "use_safetensors=False" not in code.replace("use_safetensors=False)\"", ""), py  # only in the hint text
    for py in (ROOT / "model" / "load.py", ROOT / "model" / "onnx" / "export.py"):
        calls = re.findall(r"\.from_pretrained\((.*?)\)\n", py.read_text(), flags=re.S)
        model_calls = [c for c in calls if "dtype" in c or "**kw" in c]  # model loads (tokenizers carry no weights)
        kw = re.search(r"\bkw = dict\((.*?)\)\n", py.read_text(), flags=re.S)  # the keywords `**kw` passes
        assert model_calls and all(("use_safetensors=True" in c and "local_files_only=True" in c) or
                                   ("**kw" in c and kw and "use_safetensors=True" in kw.group(1)
                                    and "local_files_only=True" in kw.group(1)) for c in model_calls), py


def test_the_app_and_the_cli_stay_offline_and_local():
    from app.launch import streamlit_argv

    argv = streamlit_argv("127.0.0.1", 8501)
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--browser.gatherUsageStats") + 1] == "false"
    src = (ROOT / "app" / "launch.py").read_text() + (ROOT / "app" / "cli" / "__init__.py").read_text()
    assert 'HF_HUB_OFFLINE' in src and '"--host", default="127.0.0.1"' in (ROOT / "app" / "cli" / "arguments.py").read_text()


# ---------------------------------------------------------------------------------------------------
# Model roots


def test_model_paths_are_limited_to_the_configured_roots(world_env, tmp_path, monkeypatch):
    from model.load import ModelLoadError, load_model
    from model.registry import allowed_roots
    from model.registry import ASSETS_MODELS, PROJECT_ROOT

    monkeypatch.delenv("LMSCOPE_DEMO_MODELS")
    monkeypatch.delenv("LMSCOPE_RUNS")
    assert allowed_roots() == [ASSETS_MODELS.resolve(), (PROJECT_ROOT / "runs").resolve(), world_env.hub.resolve()]
    monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(world_env.demo))
    monkeypatch.setenv("LMSCOPE_RUNS", str(world_env.runs))
    outside = world_env.path("outside")
    for bad in (outside, world_env.demo / ".." / "outside" / "gpt2", world_env.path("link"), Path("/etc"),
                world_env.runs / ".." / ".." / ".."):
        with pytest.raises(ModelLoadError, match="outside the model folders"):
            load_model(bad, restrict=True)
    # a hub-cache snapshot (its files are symlinks into blobs/, inside the cache) and LMSCOPE_MODEL_ROOTS
    snap = world_env.hub / "models--someone--tiny" / "snapshots" / "abc"
    shutil.copytree(world_env.path("gpt2"), snap)
    try:
        assert load_model(snap, restrict=True).info.task == "causal-lm"
        monkeypatch.setenv("LMSCOPE_MODEL_ROOTS", str(world_env.outside))
        assert load_model(outside, restrict=True).info.task == "causal-lm"
    finally:
        shutil.rmtree(world_env.hub / "models--someone--tiny")


# ---------------------------------------------------------------------------------------------------
# HTML escaping


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


SNIPPET_TAGS = {"div", "span", "b", "br", "small"}
PLOTLY_TAGS = {"b", "br", "i", "em", "sup", "sub", "span", "extra"}  # plotly's pseudo-HTML in labels


def assert_snippet_safe(snippet: str, must_show: bool = True) -> None:
    """Only the layout tags lmscope writes, no event-handler attributes; the payload reads as text."""
    p = _Tags()
    p.feed(snippet)
    assert set(p.tags) <= SNIPPET_TAGS, set(p.tags) - SNIPPET_TAGS
    assert not [a for a, _ in p.attrs if a.lower().startswith("on")]
    assert not [v for _, v in p.attrs if v and "javascript:" in v.lower()]
    if must_show:
        shown = "".join(p.text)
        assert any(x in shown for x in PAYLOADS), shown[:300]


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


def _strings_at(obj, path=""):
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings_at(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _strings_at(v, f"{path}[{i}]")


def assert_figure_safe(fig) -> None:
    """Every string of the figure's JSON: `<` only opens plotly's own label tags (user `<` is `&lt;`);
    and the standalone HTML download has exactly the <script> elements of an empty figure's."""
    import plotly.graph_objects as go

    from app.common import figure_html

    spec = json.loads(fig.to_json())
    for path, s in _strings_at(spec):
        for m in re.finditer(r"<\s*/?\s*([A-Za-z][\w-]*)", s):
            assert m.group(1).lower() in PLOTLY_TAGS, (path, m.group(0), s[:200])
    page, empty = figure_html(fig), figure_html(go.Figure())
    for tag in ("<script", "</script", "<img", "<iframe"):
        assert page.count(tag) == empty.count(tag), tag


def _poisoned(insp):
    """The same inspection with every token, prediction and lens name replaced by the payload."""
    from model.results import LogitLens, MaskPrediction, Prediction

    insp.tokens = [replace(t, text=f"{PAYLOADS[i % 2]}") for i, t in enumerate(insp.tokens)]
    insp.masks = [MaskPrediction(m.position, [Prediction(PAY, p.id, p.prob) for p in m.predictions]) for m in insp.masks]
    if insp.next_tokens is not None:
        insp.next_tokens = [[PAY for _ in row] for row in insp.next_tokens]
    if insp.logit_lens is not None:
        lens = insp.logit_lens
        insp.logit_lens = LogitLens(lens.ids, lens.probs, [[[PAY for _ in c] for c in r] for r in lens.tokens], lens.actual_prob)
    return insp


@pytest.fixture(scope="module")
def inspections(tiny_models):
    from model.inspect import inspect
    from model.load import load_model

    mlm = inspect(load_model(tiny_models["bert-pretraining"]), f"the [MASK] {PAY} sleeps", f"b {PAY}", pll=True,
                  logit_lens=True)
    causal = inspect(load_model(tiny_models["gpt2"]), f"the dogs {PAY} run", logit_lens=True)
    return _poisoned(mlm), _poisoned(causal)


def test_every_html_snippet_escapes_user_text(inspections, tiny_models):
    from app.figures import attention, compare, masked_lm, tokenization
    from model.load import load_model
    from model.corruption import CorruptionRow, corrupt

    mlm, causal = inspections
    row, col = attention.attends(causal, 0, 0, 1)
    assert_snippet_safe(attention.weighted_tokens_html(causal.tokens, row, 1))
    assert_snippet_safe(tokenization.tokens_html(mlm.tokens))
    demo = corrupt(load_model(tiny_models["bert-mlm"]), f"the cat {PAY} sleeps", seed=1)
    rows = [CorruptionRow(r.position, PAY, r.action, PAY, PAY) for r in demo.rows]
    assert_snippet_safe(masked_lm.corruption_html(rows))
    text = f"the dogs {PAY} run"
    assert_snippet_safe(compare.colored_tokens_html(text, causal.tokens, compare.bits_to_prob(causal.surprisal)))


def test_every_figure_escapes_user_text_and_downloads_safely(inspections):
    import numpy as np

    from app.figures import attention as A, beam_tree, compare as C, generation as G, masked_lm, tokenization, training
    from model.results import BeamNode, FilterStage, Prediction

    mlm, causal = inspections
    figs = [
        A.attention_heatmap(mlm, 1, 2, selected=1), A.rollout_heatmap(causal, 1),
        A.head_lines(mlm, 0, 1, 3, selected=2), A.head_summary_heatmaps(causal),
        A.layer_head_grid(A.layer_thumbnails(mlm), (0, 0)),
        tokenization.tokenization_figure([(PAY, PAY, mlm.tokens), ("demo/gpt2", PAY, causal.tokens)]),
        masked_lm.mask_bars(mlm.masks[0], mlm.tokens, truth=PAY),
        G.candidates_figure([Prediction(PAY, 1, 0.5), Prediction(PAYLOADS[1], 2, 0.3)], Prediction(PAY, 1, 0.5),
                            title="step 1"),  # titles are the pages' own words, never user text
        G.stage_figure([FilterStage("input", {}, np.full(50, 0.02, np.float32), 50),
                        FilterStage("top_k", {"top_k": 5}, np.r_[np.full(5, 0.2), np.zeros(45)].astype(np.float32), 5)],
                       lambda ids: [PAY for _ in ids]),
        beam_tree.beam_tree_figure([BeamNode(0, -1, 0, PAY, -1, 0.0, "kept"), BeamNode(1, 0, 1, PAYLOADS[1], 7, -0.3, "finished")],
                           best_path=[0, 1]),
        G.generated_attention_figure(causal.attention(0, 0), causal.tokens, 5, title="layer 0, head 0"),
        C.aligned_figure(f"the dogs {PAY} run", [C.ProbRow(PAY, causal.tokens, C.bits_to_prob(causal.surprisal), "causal")]),
        C.probability_bars([C.ProbRow(PAY, mlm.tokens, C.bits_to_prob(mlm.surprisal), "pll")]),
        C.logit_lens_figure(causal.logit_lens, causal.tokens, causal=True),
        C.logit_lens_figure(mlm.logit_lens, mlm.tokens, causal=False),
        training.checkpoint_predictions_figure([(10, [Prediction(PAY, 1, 0.4)]), (20, [Prediction(PAYLOADS[1], 2, 0.6)])], 20),
    ]
    for fig in figs:
        assert_figure_safe(fig)
    assert any(PAYLOADS[0].replace("<", "&lt;").replace(">", "&gt;") in s
               for f in figs for s in _strings(json.loads(f.to_json())))  # shown, escaped, not dropped


@pytest.mark.parametrize("view", ["head", "model"])
def test_bertviz_pages_keep_user_text_inside_json(inspections, view):
    from app.widgets.bertviz_view import bertviz_html

    mlm, _ = inspections
    page = bertviz_html(mlm, view)
    assert page.count("</script") == 4 and "<img" not in page  # user text cannot close a script element
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in page  # still there, as escaped JSON


def _page(page: str, **params):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=90)
    at.query_params.update(params)
    at.switch_page(f"views/{page}.py")
    return at.run()


def _assert_page_safe(at) -> int:
    """Every element the page sent: HTML bodies, iframes, plotly specs, markdown that may carry HTML."""
    assert not at.exception, [e.value for e in at.exception]
    checked = 0
    for h in at.get("html"):
        if any(x in html.unescape(h.proto.body) for x in PAYLOADS) or "&lt;" in h.proto.body:
            assert_snippet_safe(h.proto.body, must_show=False)  # tokens split the payload into pieces
            checked += 1
        else:
            assert "<script" not in h.proto.body and "<img" not in h.proto.body
    for f in at.get("iframe"):
        src = f.proto.srcdoc
        assert src.count("</script") == 4 and "<img" not in src
        checked += 1
    for c in at.get("plotly_chart"):
        for s in _strings(json.loads(c.proto.spec)):
            for m in re.finditer(r"<\s*/?\s*([A-Za-z][\w-]*)", s):
                assert m.group(1).lower() in PLOTLY_TAGS, (m.group(0), s[:200])
        checked += 1
    for md in at.markdown:
        if "<" in md.proto.body and md.proto.allow_html:
            assert not any(x in md.proto.body for x in PAYLOADS), md.proto.body[:200]
    return checked


@pytest.mark.slow
def test_every_page_escapes_user_text(world_env):
    checked = 0
    for panel in ("head view", "bertviz"):
        checked += _assert_page_safe(_page("attention", model="demo/gpt2", text=PAY, panel=panel, token="2"))
    checked += _assert_page_safe(_page("tokenization", model="demo/bert-mlm", text=PAY,
                                       models="demo/bert-mlm,demo/gpt2,demo/roberta-mlm"))
    checked += _assert_page_safe(_page("masked_lm", model="demo/bert-pretraining", text=f"[MASK] {PAY}", pair=PAY))
    checked += _assert_page_safe(_page("compare", model="demo/bert-mlm", model2="demo/gpt2", text=PAY))
    at = _page("generation", model="demo/gpt2", text=PAY)
    at.button(key="gen_next").click().run()
    at.button(key="gen_compare_btn").click().run()
    checked += _assert_page_safe(at)
    assert any(PAYLOADS[0] in html.unescape(h.proto.body) for h in at.get("html"))  # the prompt, shown as text
    assert checked >= 15


# ---------------------------------------------------------------------------------------------------
# Uploads


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    from model.jobs import uploads as upload_files

    root = tmp_path / "uploads"
    monkeypatch.setattr(upload_files, "uploads_root", lambda: root)
    return root


def test_uploads_are_private_per_session_and_size_limited(uploads, monkeypatch):
    from model import jobs

    a = jobs.save_upload("alice", "../../notes.txt", b"the cat sat.\n")
    b = jobs.save_upload("bob", "notes.txt", b"the dog ran.\n")
    assert a.parent != b.parent and a.parent.parent == b.parent.parent == uploads
    assert a.parent.stat().st_mode & 0o777 == 0o700 and a.name == "upload.txt"
    with pytest.raises(jobs.JobError, match="outside the corpus folders"):
        jobs.check_corpus_path(a, "bob")  # bob cannot train on alice's upload
    monkeypatch.setenv("LMSCOPE_MAX_UPLOAD_MB", "0.01")
    with pytest.raises(jobs.JobError, match="accepts corpora up to 10 KB"):
        jobs.save_upload("alice", "big.txt", b"the cat sat.\n" * 2000)
    assert a.read_bytes() == b"the cat sat.\n"  # the refused upload did not replace the earlier one


def test_the_uploads_folder_is_named_for_this_user():
    from model import jobs

    assert jobs.uploads_root().name == f"lmscope-uploads-{os.getuid()}"


def test_the_uploads_folder_must_be_private(uploads, tmp_path):
    from model import jobs

    uploads.mkdir(mode=0o777)
    uploads.chmod(0o777)  # as a folder someone else could write to
    with pytest.raises(jobs.JobError, match="not a private folder"):
        jobs.save_upload("mallory", "a.txt", b"the cat sat.\n")
    (uploads / "someone").mkdir()
    assert jobs.sweep_uploads(None, now=time.time() + 10**6) == [] and (uploads / "someone").is_dir()  # not swept
    shutil.rmtree(uploads)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    uploads.symlink_to(elsewhere)  # a link put in its place
    with pytest.raises(jobs.JobError, match="not a private folder"):
        jobs.save_upload("mallory", "a.txt", b"the cat sat.\n")
    assert not any(elsewhere.iterdir())


def test_an_upload_guard_removes_the_folder_when_the_session_state_goes(uploads):
    from model import jobs

    state = {"_upload_guard": jobs.UploadGuard("carol", "server-session-1")}
    path = jobs.save_upload("carol", "c.txt", b"the cat sat.\n")
    assert path.is_file() and json.loads((path.parent / jobs.UPLOAD_MARKER).read_text())["session"] == "server-session-1"
    state.clear()  # what happens when the server drops the session
    gc.collect()
    assert not path.parent.exists()
    g = jobs.UploadGuard("dave")
    g.close()
    g.close()  # idempotent
    assert not g.alive and not jobs.upload_dir("dave").exists()


def test_sweep_removes_the_uploads_of_ended_sessions(uploads):
    from model import jobs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def make(name, pid=None, session=None, age_s=0):
        d = uploads / name
        d.mkdir(parents=True)
        (d / "upload.txt").write_text("x")
        if pid is not None:
            (d / jobs.UPLOAD_MARKER).write_text(json.dumps({"pid": pid, "session": session}))
        os.utime(d, (time.time() - age_s, time.time() - age_s))
        return d

    live = make("live", os.getpid(), "s-live")
    ended = make("ended", os.getpid(), "s-gone")
    other = make("other-server", os.getppid(), "s-x")  # another server process that is still running
    crashed = make("crashed-server", dead.pid, "s-y")
    fresh = make("unmarked-fresh")
    old = make("unmarked-old", age_s=2 * jobs.ORPHAN_UPLOAD_S)
    assert set(jobs.sweep_uploads(None)) == {crashed, old}  # live sessions unknown: only the certain ones
    assert set(jobs.sweep_uploads({"s-live"})) == {ended}
    assert live.exists() and other.exists() and fresh.exists()


def test_the_frame_sweeps_with_the_servers_live_sessions(uploads, monkeypatch):
    """app.common asks Streamlit's session manager which sessions are alive (a private API: checked here
    against the installed Streamlit, then exercised through a stand-in runtime)."""
    from types import SimpleNamespace

    from streamlit.runtime import Runtime
    from streamlit.runtime.session_manager import SessionInfo
    from streamlit.runtime.websocket_session_manager import WebsocketSessionManager

    from app import frame
    from model import jobs

    assert hasattr(WebsocketSessionManager, "list_sessions") and "session" in SessionInfo.__dataclass_fields__
    assert frame.live_server_sessions() is None  # no server here
    keep = jobs.UploadGuard("erin", "s-keep")
    gone = jobs.UploadGuard("frank", "s-gone")
    gone._finalizer.detach()  # as if its session object were still somewhere in memory
    mgr = SimpleNamespace(list_sessions=lambda: [SimpleNamespace(session=SimpleNamespace(id="s-keep"))])
    monkeypatch.setattr(Runtime, "exists", classmethod(lambda cls: True))
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: SimpleNamespace(_session_mgr=mgr)))
    frame.sweep_uploads(force=True)
    assert keep.path.exists() and not gone.path.exists()


@pytest.mark.slow
def test_an_app_upload_goes_when_its_session_ends(world_env, uploads):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params.update(corpus="upload")
    at.switch_page("views/train.py")
    at.run()
    at.file_uploader(key="train_upload").set_value(("mine.txt", world_env.path("good.txt").read_bytes(), "text/plain")).run()
    assert not at.exception and not at.error and not at.button(key="train_start").disabled
    (d,) = [p for p in uploads.iterdir()]
    assert (d / "upload.txt").read_bytes() == world_env.path("good.txt").read_bytes()
    assert json.loads((d / ".owner.json").read_text())["pid"] == os.getpid()
    del at  # the session ends: its state (and the guard in it) is dropped
    gc.collect()
    assert not d.exists()
