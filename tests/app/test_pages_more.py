"""AppTest runs of the Generation, Compare, Train and Export pages against tiny models (and a tiny ELMo),
through app/main.py's navigation, as a browser session would reach them."""
from __future__ import annotations

import shutil
import time

import pytest

from app_helpers import chart, open_page, texts

@pytest.fixture(scope="module")
def demo(tiny_models, tmp_path_factory):
    """A demo folder of its own: copies of tiny GPT-2 and BERT, plus a tiny random ELMo."""
    import torch

    from model.train.elmo import ElmoConfig, ElmoLM
    from model.train.tokenizer import train_tokenizer
    from tiny_models import SENTENCES

    root = tmp_path_factory.mktemp("demo_more")
    for arch in ("gpt2", "bert-mlm"):
        shutil.copytree(tiny_models[arch], root / arch)
    torch.manual_seed(0)
    tok = train_tokenizer("elmo", SENTENCES, 300, max_length=64)
    ElmoLM(ElmoConfig(vocab_size=len(tok), embed_dim=16, hidden_dim=32, num_layers=2, max_positions=64)).save_pretrained(root / "elmo")
    tok.save_pretrained(root / "elmo")
    return root


def values(v) -> list:
    """A plotly JSON array: plain list, or numpy's base64 typed array {"dtype", "bdata"}."""
    import base64

    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


# ---------------------------------------------------------------------------------------------------


def test_generation_stage_chart_follows_temperature(env):
    at = open_page("generation", model="demo/gpt2", text="the dogs near the")
    assert at.title[0].value == "Generation" and not texts(at, "error")
    default = chart(at, "sampling-stages")  # top-p 0.9 is on by default: greedy loops, plain sampling wanders
    assert [a["text"].split(":")[0].split(" (")[0] for a in default["layout"]["annotations"]] == ["model distribution", "top-p"]
    at.slider(key="qp_top_p").set_value(1.0).run()
    before = chart(at, "sampling-stages")
    assert [a["text"].split(":")[0] for a in before["layout"]["annotations"]] == ["model distribution"]
    at.slider(key="qp_temperature").set_value(0.5).run()
    at.number_input(key="qp_top_k").set_value(5).run()
    assert not at.exception
    after = chart(at, "sampling-stages")
    titles = [a["text"] for a in after["layout"]["annotations"]]
    assert titles[1].startswith("temperature (temperature=0.5)") and "5 of 300 tokens kept" in titles[2]
    assert values(after["data"][0]["y"]) == values(before["data"][0]["y"])  # the model's own distribution is unchanged
    temp_row = next(t for t in after["data"] if t.get("xaxis") == "x2")
    assert max(values(temp_row["y"])) > max(values(before["data"][0]["y"]))  # colder: the best token gains
    assert (at.query_params["temperature"], at.query_params["top_k"]) == ("0.5", "5")


def test_generation_step_by_step_adds_one_token_per_click(env):
    at = open_page("generation", model="demo/gpt2", text="the dogs near the", mode="greedy")
    assert any(m.value == "**0 tokens generated**" for m in at.markdown)
    at.button(key="gen_next").click().run()
    at.button(key="gen_next").click().run()
    assert not at.exception and not texts(at, "error")
    assert any(m.value == "**2 tokens generated**" for m in at.markdown)
    steps = at.session_state["gen_steps"]["steps"]
    assert len(steps) == 2 and all(s.pick.id == s.candidates[0].id for s in steps)  # greedy picks the best
    pick = chart(at, "step-candidates")
    assert pick["data"][0]["marker"]["color"][0] == "#d62728"
    from model.generate import generate
    from model.load import load_model

    ref = generate(load_model("demo/gpt2"), "the dogs near the", strategy="greedy", max_new_tokens=2)
    assert "".join(at.session_state["gen_steps"]["pieces"]) == ref.text
    at.button(key="gen_undo").click().run()
    assert any(m.value == "**1 tokens generated**" for m in at.markdown)


def test_generation_strategies_beam_tree_and_attention(env):
    at = open_page("generation", model="demo/gpt2", text="the cat", new_tokens="4", beams="3")
    at.button(key="gen_compare_btn").click().run()
    assert not at.exception and not texts(at, "error")
    results = at.session_state["gen_compare"]["results"]
    assert set(results) == {"greedy", "sample", "beam"}
    tree = chart(at, "beam-tree")
    statuses = {t["name"] for t in tree["data"] if t.get("mode") == "markers+text"}
    assert "finished" in statuses
    shown = lambda fig: sum(len(values(t["x"])) for t in fig["data"] if t.get("mode") == "markers+text")  # noqa: E731
    assert shown(tree) < len(results["beam"].beam_tree)  # by default the final beams' ancestry only
    at.toggle(key="gen_full_tree").set_value(True).run()  # the full tree: one click
    assert shown(chart(at, "beam-tree")) == len(results["beam"].beam_tree)
    at.radio(key="qp_source").set_value("beam").run()
    attn = chart(at, "generated-attention")["data"][0]
    from model.inspect import inspect
    from model.load import load_model

    n = len(inspect(load_model("demo/gpt2"), results["beam"].prompt + results["beam"].text).tokens)
    assert attn["z"]["shape"] == f"{n}, {n}" and len(attn["x"]) == n > 2


def test_generation_refuses_a_masked_lm_politely(env):
    at = open_page("generation", model="demo/bert-mlm")
    assert not at.exception
    assert any("cannot" in w.value or "has no head or output" in w.value for w in at.warning)
    assert not at.get("plotly_chart")


def test_generation_empty_prompt_is_an_error_message(env):
    at = open_page("generation", model="demo/gpt2", text="the")
    at.text_area(key="qp_text").set_value("   ").run()
    assert not at.exception and any("empty" in e for e in texts(at, "error"))


def test_compare_shows_both_models_and_elmo_directions(env):
    at = open_page("compare", model="demo/bert-mlm", model2="demo/gpt2", text="the dogs near the cat run.")
    assert not texts(at, "error")
    aligned = chart(at, "compare-aligned")
    assert [t["name"] for t in aligned["data"]] == ["demo/bert-mlm (masked LM, PLL)", "demo/gpt2 (causal LM)"]
    table = at.dataframe[0].value
    assert list(table["reading"]) == ["demo/bert-mlm (masked LM, PLL)", "demo/gpt2 (causal LM)"]
    assert (table["scored"] > 0).all()
    lens = chart(at, "logit-lens")
    assert len(lens["data"][0]["y"]) == 3  # embeddings + 2 layers
    at.selectbox(key="qp_model2").set_value("demo/elmo").run()
    assert not at.exception
    readings = list(at.dataframe[0].value["reading"])
    assert readings[1:] == ["demo/elmo (ELMo forward LM)", "demo/elmo (ELMo backward LM)"]
    assert [r.options for r in at.radio if r.key == "qp_lens"][0] == ["demo/bert-mlm (masked LM)"]  # ELMo has no lens


def test_train_page_submits_runs_and_scrubs_checkpoints(env):
    at = open_page("train", model="demo/gpt2")
    assert not texts(at, "error") and any("None yet" in c.value for c in at.caption)
    at.radio(key="qp_corpus").set_value("pydoc").run()
    at.number_input(key="qp_steps").set_value(4).run()
    at.button(key="train_start").click().run()
    assert not at.exception and not texts(at, "error")
    table = at.dataframe[0].value
    job_id = table["job"][0]
    assert (env / "runs" / job_id / "job.json").is_file()  # the queue lives in the temp runs folder
    assert table["status"][0].startswith(("running", "queued"))
    owner = at.session_state["train_owner"]
    other = open_page("train")  # another browser session sees none of it
    assert not other.dataframe and other.session_state["train_owner"] != owner
    end = time.time() + 240  # a busy machine takes over a minute to start the training process
    while time.time() < end and not any("Finished" in s.value for s in at.success):
        time.sleep(0.5)
        at.run()
    assert any(f"runs/{job_id}" in s.value for s in at.success), [e.value for e in at.error]
    assert chart(at, f"loss-{job_id}")["data"][0]["name"] == "train loss"
    probe = chart(at, f"probe-{job_id}")
    assert len(values(probe["data"][0]["y"])) == 10
    steps = at.select_slider(key=f"train_ckpt_{job_id}").options
    at.select_slider(key=f"train_ckpt_{job_id}").set_value(steps[0]).run()
    assert not at.exception and values(chart(at, f"probe-{job_id}")["data"][0]["y"]) != values(probe["data"][0]["y"])
    from app import common

    assert f"runs/{job_id}" in common.model_names()


def test_train_page_offers_character_input_for_elmo_only(env, monkeypatch):
    from model import jobs as J

    submitted = []
    monkeypatch.setattr(J.JobQueue, "submit", lambda self, owner, request: submitted.append(request) or "job-x")
    at = open_page("train")
    assert not [t for t in at.toggle if t.key == "qp_chars"]  # GPT-2 by default: no such option
    at.selectbox(key="qp_arch").set_value("elmo").run()
    at.toggle(key="qp_chars").set_value(True).run()
    at.button(key="train_start").click().run()
    assert not at.exception and submitted[-1]["arch"] == "elmo" and submitted[-1]["char_cnn"] is True
    assert str(at.query_params["chars"]).lower() in ("true", "1")  # in the link, like every setting


def test_train_page_rejects_paths_outside_the_corpus_folders(env):
    at = open_page("train")
    at.radio(key="qp_corpus").set_value("path").run()
    at.text_input(key="qp_corpus_path").set_value("/etc/passwd").run()
    assert not at.exception and any("outside the corpus folders" in e for e in texts(at, "error"))
    assert at.button(key="train_start").disabled


def test_export_page_exports_and_loads_back(env):
    at = open_page("export", model="demo/bert-mlm", text="the dogs near the [MASK] run.")
    assert [b.label for b in at.button if b.key == "export_btn"] == ["Export"]
    at.button(key="export_btn").click().run()
    assert not at.exception and not texts(at, "error")
    parity, checks = at.dataframe[0].value, at.dataframe[1].value
    assert {"logits", "attentions"} <= set(parity["output"]) and (parity["max |onnx - torch| (relative)"] <= 1e-4).all()
    assert checks["result"][0] == "yes" and checks["result"].iloc[-1] == "same"
    assert list(checks.columns) == ["check", "result", "torch", "onnx"]  # the verdict in view, not after long text
    assert chart(at, "onnx-attention")["data"][0]["type"] == "heatmap"
    assert list((env / "runs" / "onnx").glob("demo-bert-mlm-opset17-*/model.onnx"))
    at.selectbox(key="qp_model").set_value("demo/elmo").run()
    assert not at.exception and any("only transformers models" in w.value for w in at.warning)


def test_export_page_exports_a_llama_family_decoder(env, tmp_path, monkeypatch):
    """A Llama-family decoder (grouped-query attention, rotary positions) exports with its generation graph and
    loads back beside torch; a family that cannot export says why before anything runs."""
    from app import common
    from tiny_families import build_family, build_state_space

    build_family("llama", tmp_path / "families")
    build_state_space(tmp_path / "families")
    monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(tmp_path / "families"))
    common.listed_models.clear()
    at = open_page("export", model="demo/llama", text="the quick brown fox jumps over the lazy dog")
    at.button(key="export_btn").click().run()
    assert not at.exception and not texts(at, "error")
    parity, checks = at.dataframe[0].value, at.dataframe[1].value
    assert {"logits", "attentions", "decoder"} <= set(parity["output"])
    assert (parity["max |onnx - torch| (relative)"] <= 1e-4).all()
    assert checks["result"][0] == "yes" and checks["result"].iloc[-1] == "same"
    assert chart(at, "onnx-attention")["data"][0]["type"] == "heatmap"
    at.selectbox(key="qp_model").set_value("demo/mamba").run()
    assert not at.exception and any("cannot be exported to ONNX" in w.value and "no attention" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "export_btn"]
