"""Generation against transformers' generate(): greedy, seeded sampling and beam search, token for token."""
import json

import pytest
import torch
from transformers import GPT2LMHeadModel

from model.cli import main
from model.generate import SamplingConfig, generate, next_token_distribution
from model.load import load_model

PROMPTS = ["the dogs", "hello world, this"]


@pytest.fixture(scope="module")
def pair(tiny_models):
    m = load_model(tiny_models["gpt2"])
    ref = GPT2LMHeadModel.from_pretrained(str(tiny_models["gpt2"]), attn_implementation="eager").eval()
    return m, ref


def _hf(ref, m, prompt, **kw):
    ids = torch.tensor([m.tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        out = ref.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=m.tokenizer.eos_token_id, **kw)
    return out[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_transformers(pair, prompt):
    m, ref = pair
    r = generate(m, prompt, strategy="greedy", max_new_tokens=12)
    assert [i for _, i in r.tokens] == _hf(ref, m, prompt, do_sample=False, max_new_tokens=12)
    assert r.text == m.tokenizer.decode([i for _, i in r.tokens])


SAMPLE_SETTINGS = [
    dict(temperature=1.0, top_k=0, top_p=1.0),
    dict(temperature=0.8, top_k=20, top_p=1.0),
    dict(temperature=1.5, top_k=0, top_p=0.9),
    dict(temperature=1.0, top_k=0, top_p=1.0, typical_p=0.8, repetition_penalty=1.3),
    dict(temperature=0.7, top_k=50, top_p=0.95, min_p=0.05),
]


@pytest.mark.parametrize("seed", [0, 1, 42])
@pytest.mark.parametrize("kw", SAMPLE_SETTINGS)
def test_seeded_sampling_equals_transformers(pair, kw, seed):
    m, ref = pair
    r = generate(m, "the dogs", strategy="sample", max_new_tokens=10, seed=seed, **kw)
    torch.manual_seed(seed)
    want = _hf(ref, m, "the dogs", do_sample=True, max_new_tokens=10, **kw)
    assert [i for _, i in r.tokens] == want


def test_sampling_leaves_the_global_rng_alone(pair):
    m, _ = pair
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    generate(m, "the dogs", strategy="sample", max_new_tokens=3, seed=9)
    assert torch.equal(torch.rand(1), before)


BEAM_SETTINGS = [
    dict(num_beams=2, length_penalty=1.0, early_stopping=False),
    dict(num_beams=3, length_penalty=0.5, early_stopping=True),
    dict(num_beams=4, length_penalty=2.0, early_stopping=False),
    dict(num_beams=5, length_penalty=1.0, early_stopping=True, repetition_penalty=1.4),
]


@pytest.mark.parametrize("kw", BEAM_SETTINGS)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_beam_equals_transformers(pair, prompt, kw):
    m, ref = pair
    r = generate(m, prompt, strategy="beam", max_new_tokens=8, **kw)
    want = _hf(ref, m, prompt, do_sample=False, max_new_tokens=8, **kw)
    eos = m.tokenizer.eos_token_id
    got = [i for _, i in r.tokens]
    assert got == want[:len(got)] and all(t == eos for t in want[len(got):])
    # the tree contains the returned sequence as a path from the root
    nodes = {n.id: n for n in r.beam_tree}
    leaf = [n for n in r.beam_tree if n.status == "finished"]
    assert len(leaf) == 1
    path, n = [], leaf[0]
    while n.parent != -1:
        path.append(n.token_id)
        n = nodes[n.parent]
    assert path[::-1] == got
    assert any(n.status == "pruned" for n in r.beam_tree)


def test_beam_scores_match_transformers(pair):
    m, ref = pair
    r = generate(m, "the dogs", strategy="beam", max_new_tokens=6, num_beams=3)
    ids = torch.tensor([m.tokenizer("the dogs")["input_ids"]])
    with torch.no_grad():
        out = ref.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=3, max_new_tokens=6,
                           pad_token_id=m.tokenizer.eos_token_id, return_dict_in_generate=True, output_scores=True)
    assert r.settings["beam_score"] == pytest.approx(out.sequences_scores[0].item(), abs=1e-5)


def test_trace_has_full_vocabulary_stages(pair):
    m, _ = pair
    r = generate(m, "the dogs", strategy="sample", max_new_tokens=2, temperature=0.5, top_k=5, trace=True)
    st = r.steps[0].stages
    assert [s.name for s in st] == ["input", "temperature", "top_k"]
    assert all(s.probs.shape == (m.backend.vocab_size,) for s in st)
    assert st[-1].kept == 5 and abs(float(st[-1].probs.sum()) - 1) < 1e-5
    stages, cands = next_token_distribution(m, "the dogs", SamplingConfig(top_p=0.5))
    assert stages[-1].name == "top_p" and cands[0].prob >= cands[-1].prob


@pytest.mark.parametrize("kw,needle", [
    (dict(strategy="sample", temperature=0), "temperature"),
    (dict(strategy="sample", top_p=0), "top_p"),
    (dict(strategy="beam", num_beams=1000), "num_beams"),
    (dict(max_new_tokens=100000), "max_new_tokens"),
    (dict(strategy="nope"), "strategy"),
])
def test_bad_settings(pair, kw, needle):
    with pytest.raises(ValueError, match=needle):
        generate(pair[0], "the dogs", **kw)


def test_masked_lm_cannot_generate(tiny_models):
    with pytest.raises(ValueError, match="cannot generate"):
        generate(load_model(tiny_models["bert-mlm"]), "the dogs")


def test_cli_generate_json(capsys, tiny_models, pair):
    m, ref = pair
    code = main(["generate", str(tiny_models["gpt2"]), "the dogs", "--json", "--strategy", "sample",
                 "--top-p", "0.9", "--seed", "5", "--max-new-tokens", "6"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and len(d["tokens"]) == len(d["steps"]) <= 6
    assert set(d["steps"][0]) == {"candidates", "pick"} and d["steps"][0]["pick"]["id"] == d["tokens"][0]["id"]
    torch.manual_seed(5)
    assert [t["id"] for t in d["tokens"]] == _hf(ref, m, "the dogs", do_sample=True, top_p=0.9, top_k=0, max_new_tokens=6)
    code = main(["generate", str(tiny_models["gpt2"]), "x", "--strategy", "sample", "--temperature", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: temperature")
